"""The writer lock file itself as hostile input (review finding N1), and the commands that write
reports into a bundle (bench, doctor, analyze) holding the lock like build, engines and verify."""
import os
import sys

import pytest

from deploy.bundle import LOCK_NAME, writer_lock
from tests.faults.helpers import SIZE, hashes, run, verify_bundle_dir, write_images

BENCH = ["-q", "bench", "--iterations", "2", "--warmup", "0", "--size", str(SIZE), "--no-png"]


@pytest.fixture
def no_tensorrt(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)   # the CPU fallback, as on this host


@pytest.fixture
def victim(tmp_path):
    path = tmp_path / "victim.txt"
    path.write_text("the user's notes\n")
    return path


def _verify(root, tmp_path):
    images = tmp_path / "imgs"
    if not images.exists():
        write_images(images, 2)
    return ["-q", "verify", root, "--images", str(images), "--count", "2"]


def test_a_lock_that_is_a_symbolic_link_is_refused_and_its_target_kept(tmp_path, victim, capsys, no_tensorrt):
    root = verify_bundle_dir(tmp_path / "b")
    os.symlink(str(victim), os.path.join(root, LOCK_NAME))
    before = hashes(root)
    for argv in (_verify(root, tmp_path), BENCH[:2] + [root] + BENCH[2:]):
        code, err, _ = run(argv, capsys)
        assert code == 1 and "is a symbolic link: the writer lock would overwrite the file it points to" in err
        assert "(fix: remove " in err
    assert victim.read_text() == "the user's notes\n" and hashes(root) == before


def test_a_lock_that_is_a_hard_link_is_refused_and_the_other_name_kept(tmp_path, victim, capsys):
    root = verify_bundle_dir(tmp_path / "b")
    os.link(str(victim), os.path.join(root, LOCK_NAME))
    code, err, _ = run(_verify(root, tmp_path), capsys)
    assert code == 1 and "is a hard link (2 names)" in err
    assert victim.read_text() == "the user's notes\n"


@pytest.mark.parametrize("kind", ["folder", "fifo"])
def test_a_lock_that_is_not_a_file_is_refused_not_ignored(tmp_path, capsys, kind):
    root = verify_bundle_dir(tmp_path / "b")
    path = os.path.join(root, LOCK_NAME)
    os.mkdir(path) if kind == "folder" else os.mkfifo(path)
    before = hashes(root)
    code, err, _ = run(_verify(root, tmp_path), capsys)   # before the fix: ran unlocked, silently
    assert code == 1 and "is not a regular file" in err and hashes(root) == before


def test_an_ordinary_lock_file_still_works(tmp_path):
    root = verify_bundle_dir(tmp_path / "b")
    with writer_lock(root, "pipeline.py build"):
        assert "pipeline.py build" in open(os.path.join(root, LOCK_NAME)).read()
    with writer_lock(root, "pipeline.py verify"):   # released, and reusable
        pass


def test_bench_refuses_a_bundle_being_written(tmp_path, capsys, no_tensorrt):
    root = verify_bundle_dir(tmp_path / "b")
    before = hashes(root)
    with writer_lock(root, "pipeline.py build"):   # another writer (a separate open file: flock conflicts)
        code, err, _ = run(BENCH[:2] + [root] + BENCH[2:], capsys)
    assert code == 1 and "is being written by `pipeline.py build`" in err
    assert hashes(root) == before   # no report, no cache written
    code, err, _ = run(BENCH[:2] + [root] + BENCH[2:], capsys)   # once the writer is done, bench runs
    assert code == 0 and os.path.isfile(os.path.join(root, "reports", "bench.json"))


def test_doctor_and_analyze_refuse_a_bundle_being_written(tmp_path, capsys):
    root = verify_bundle_dir(tmp_path / "b")
    with writer_lock(root, "pipeline.py build"):
        for argv in (["doctor", root], ["analyze", root, "--no-plots"]):
            code, err, _ = run(argv, capsys)
            assert code == 1 and "is being written by `pipeline.py build`" in err, argv
    assert not os.path.exists(os.path.join(root, "reports", "doctor.json"))


def test_a_child_forked_while_the_lock_was_held_does_not_keep_it(tmp_path):
    # a library's helper process (or a subprocess before its exec) shares the lock's open file:
    # the lock is released explicitly, not only by closing our descriptor
    root = verify_bundle_dir(tmp_path / "b")
    with writer_lock(root, "pipeline.py doctor"):
        child = os.fork()
        if child == 0:   # pragma: no cover - the child only waits, holding its copy of the descriptor
            import time
            time.sleep(3)
            os._exit(0)
    try:
        with writer_lock(root, "pipeline.py engines"):   # at once, while the child still lives
            assert os.waitpid(child, os.WNOHANG) == (0, 0)
    finally:
        os.kill(child, 9)
        os.waitpid(child, 0)


def test_build_holds_the_lock_while_it_writes_trtexec_and_engines(tmp_path, capsys, monkeypatch):
    from cli import build as cli_build
    from deploy.errors import BundleError

    refused = []

    def engines_after_build(args, bundle_dir, precision):   # what a second writer sees meanwhile
        try:
            with writer_lock(bundle_dir, "pipeline.py engines"):
                pass
        except BundleError as exc:
            refused.append(exc.one_line())
        return 0

    monkeypatch.setattr(cli_build, "engines_after_build", engines_after_build)
    code, err, _ = run(["-q", "build", "--models", "mobilenetv2", "--size", "32", "--out", str(tmp_path / "b")], capsys)
    assert code == 0, err
    assert refused and "is being written by `pipeline.py build`" in refused[0]
