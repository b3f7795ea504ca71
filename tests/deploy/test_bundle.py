"""deploy/bundle.py's writer lock: one writer per bundle folder, released with its process."""
import os
import subprocess
import sys
import textwrap
import time

import pytest

from deploy.bundle import LOCK_NAME, writer_lock
from deploy.errors import BundleError

fcntl = pytest.importorskip("fcntl", reason="no fcntl on this platform: the writer lock is POSIX-only")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def held_lock(tmp_path):
    """Another process holding the writer lock of tmp_path/bundle until the test ends."""
    folder = tmp_path / "bundle"
    script = textwrap.dedent("""
        import sys
        sys.path.insert(0, {root!r})
        from deploy.bundle import writer_lock
        with writer_lock({folder!r}, "pipeline.py build"):
            print("locked", flush=True)
            sys.stdin.read()      # hold until the test closes our stdin
    """).format(root=ROOT, folder=str(folder))
    holder = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              universal_newlines=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield folder, holder.pid
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


def test_a_second_writer_is_refused_with_the_holder_named(held_lock):
    folder, pid = held_lock
    with pytest.raises(BundleError, match=r"is being written by `pipeline.py build` \(pid {},".format(pid)) as exc:
        with writer_lock(str(folder), "pipeline.py engines"):
            pytest.fail("two writers held the lock")
    assert "another folder" in exc.value.hint


def test_the_lock_dies_with_a_killed_holder(held_lock):
    folder, pid = held_lock
    os.kill(pid, 9)   # the way a killed build ends: no cleanup code runs
    for _ in range(100):
        try:
            with writer_lock(str(folder), "pipeline.py build"):
                break
        except BundleError:
            time.sleep(0.05)   # the kernel releases the lock once the process is gone
    else:
        pytest.fail("the lock outlived its process")


@pytest.mark.parametrize("argv", [["build", "--target", "cpu", "--models", "mobilenetv2"],
                                  ["engines", "--precision", "fp16"]], ids=["build", "engines"])
def test_build_and_engines_refuse_a_bundle_being_written(held_lock, capsys, argv):
    import pipeline

    if argv[0] == "build" and sys.version_info[:2] < pipeline.HOST_PYTHON:
        pytest.skip("build is a host command: this Python is older than the host's")
    folder, pid = held_lock
    command = argv[:1] + ([str(folder)] if argv[0] == "engines" else []) + argv[1:] + (
        ["--out", str(folder)] if argv[0] == "build" else [])
    assert pipeline.main(command) == 1
    assert "is being written by `pipeline.py build` (pid {},".format(pid) in capsys.readouterr().err
    assert os.listdir(str(folder)) == [LOCK_NAME]   # the refused command touched nothing
