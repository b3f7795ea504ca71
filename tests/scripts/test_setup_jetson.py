"""scripts/setup-jetson.sh with stand-in commands (dpkg-query, sudo, python3, nvcc): what it runs on
a fresh JetPack 4.6, that --dry-run runs nothing, that a second run installs nothing again, that
other boards are refused; and shellcheck on it."""
import os
import shutil
import stat
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "scripts", "setup-jetson.sh")
NANO_RELEASE = ("# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t210ref, EABI: aarch64, "
                "DATE: Sat Feb 19 17:05:08 UTC 2022\n")


def _stand_in(folder, name, body):
    path = os.path.join(folder, name)
    with open(path, "w") as handle:
        handle.write("#!/bin/sh\n" + body)
    os.chmod(path, os.stat(path).st_mode | stat.S_IEXEC)


@pytest.fixture
def jetson(tmp_path):
    """A fake Jetson: release file, CUDA bin, and stand-ins that log each call to calls.log.

    State files say what is installed: apt.installed (package names), pip.version.
    """
    bin_dir, cuda = tmp_path / "bin", tmp_path / "cuda"
    bin_dir.mkdir()
    cuda.mkdir()
    log, state = tmp_path / "calls.log", tmp_path
    (tmp_path / "release").write_text(NANO_RELEASE)
    (state / "pip.version").write_text("9.0.1")
    (state / "apt.installed").write_text("python3-pip\n")
    _stand_in(str(cuda), "nvcc", "exit 0\n")
    _stand_in(str(bin_dir), "dpkg-query",
              'for pkg in "$@"; do :; done; grep -qx "$pkg" "' + str(state) + '/apt.installed" && '
              'printf "install ok installed"; exit 0\n')
    _stand_in(str(bin_dir), "sudo", 'echo "sudo $*" >> "{log}"\n'
              'if [ "$1 $2" = "apt-get install" ]; then shift 3; for p in "$@"; do echo "$p" >> "{s}/apt.installed"; '
              'done; fi\n'.format(log=log, s=state))
    _stand_in(str(bin_dir), "python3",
              'if [ "$*" = "-m pip --version" ]; then echo "pip $(cat {s}/pip.version) from /usr/lib (python 3.6)"; '
              'exit 0; fi\necho "python3 $*" >> "{log}"\n'
              'case "$*" in *pip==21.3.1*) echo 21.3.1 > "{s}/pip.version";; esac\n'
              'case "$*" in *requirements-jetson.txt*) echo "$PATH" > "{s}/path.at.install";; esac\n'.format(
                  s=state, log=log))

    def run(*args, release=True):
        env = dict(os.environ, PATH="{}:/usr/bin:/bin".format(bin_dir),
                   SETUP_JETSON_RELEASE_FILE=str(tmp_path / ("release" if release else "none")),
                   SETUP_JETSON_CUDA_BIN=str(cuda))
        proc = subprocess.run(["sh", SCRIPT] + list(args), env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
        calls = log.read_text().splitlines() if log.exists() else []
        log.write_text("")
        return proc, calls
    run.state = state
    run.cuda = cuda
    return run


def test_fresh_jetpack_gets_apt_packages_pip_numpy_requirements_then_doctor(jetson):
    proc, calls = jetson("build/jetson-nano")
    assert proc.returncode == 0, proc.stderr
    assert "found L4T R32.7.1 (JetPack 4.6.1)" in proc.stdout
    assert calls[0] == "sudo apt-get update"
    assert calls[1] == "sudo apt-get install -y python3-dev libjpeg-dev zlib1g-dev"   # pip was there already
    assert calls[2] == "python3 -m pip install --user pip==21.3.1"
    assert calls[3] == "python3 -m pip install --user numpy==1.19.4"          # before pycuda's build
    assert calls[4] == "python3 -m pip install --user -r {}/requirements-jetson.txt".format(ROOT)
    assert calls[5] == "python3 {}/pipeline.py doctor build/jetson-nano".format(ROOT)
    assert str(jetson.cuda) in (jetson.state / "path.at.install").read_text()   # nvcc on PATH for pycuda


def test_dry_run_prints_every_command_and_runs_none(jetson):
    proc, calls = jetson("--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert calls == []
    printed = [line[2:] for line in proc.stdout.splitlines() if line.startswith("+ ")]
    assert printed == ["sudo apt-get update", "sudo apt-get install -y python3-dev libjpeg-dev zlib1g-dev",
                       "python3 -m pip install --user pip==21.3.1",
                       "python3 -m pip install --user numpy==1.19.4",
                       "python3 -m pip install --user -r {}/requirements-jetson.txt".format(ROOT),
                       "python3 {}/pipeline.py doctor".format(ROOT)]


def test_second_run_installs_no_apt_package_and_no_pip_again(jetson):
    jetson()
    proc, calls = jetson()
    assert proc.returncode == 0
    assert not any(c.startswith("sudo apt-get") for c in calls)
    assert "python3 -m pip install --user pip==21.3.1" not in calls
    assert "apt packages present" in proc.stdout and "pip 21.3.1 present" in proc.stdout


def test_not_a_jetson_or_another_jetpack_is_refused(jetson):
    proc, calls = jetson(release=False)
    assert proc.returncode == 1 and "not a Jetson" in proc.stderr and calls == []
    (jetson.state / "release").write_text(NANO_RELEASE.replace("R32", "R35").replace("7.1", "4.1"))
    proc, calls = jetson()
    assert proc.returncode == 1 and "R35.4.1" in proc.stderr and "JetPack 4.6.x" in proc.stderr and calls == []


def test_missing_nvcc_is_named_before_pip_builds_pycuda(jetson):
    os.unlink(str(jetson.cuda / "nvcc"))
    proc, calls = jetson()
    assert proc.returncode == 1 and "nvcc not found" in proc.stderr
    assert not any("requirements-jetson" in c for c in calls)


@pytest.mark.skipif(shutil.which("shellcheck") is None,
                    reason="shellcheck is not installed (.ci/run installs it: apt-get install shellcheck)")
def test_shellcheck_passes():
    proc = subprocess.run(["shellcheck", "--shell=sh", SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True)
    assert proc.returncode == 0, proc.stdout
