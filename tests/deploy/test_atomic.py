"""deploy.atomic: a failed write leaves the old file intact and no temporary file behind."""
import os
import stat

import pytest

from deploy.atomic import atomic_path, is_temp_name, sha256_file, write_bytes, write_json, write_text


def test_write_replaces_whole_file(tmp_path):
    target = tmp_path / "a.txt"
    write_text(str(target), "old")
    write_text(str(target), "new")
    assert target.read_text() == "new"
    assert os.listdir(str(tmp_path)) == ["a.txt"]


def test_failure_keeps_old_file_and_removes_temp(tmp_path):
    target = tmp_path / "model.onnx"
    write_bytes(str(target), b"good")
    with pytest.raises(RuntimeError):
        with atomic_path(str(target)) as tmp:
            with open(tmp, "wb") as handle:
                handle.write(b"half")
            raise RuntimeError("export crashed")
    assert target.read_bytes() == b"good"
    assert os.listdir(str(tmp_path)) == ["model.onnx"]


def test_new_file_gets_umask_mode_and_existing_mode_is_kept(tmp_path):
    fresh = tmp_path / "fresh.json"
    write_json(str(fresh), {"a": 1})
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(str(fresh)).st_mode) == 0o666 & ~umask
    os.chmod(str(fresh), 0o640)
    write_json(str(fresh), {"a": 2})
    assert stat.S_IMODE(os.stat(str(fresh)).st_mode) == 0o640


def test_sha256_matches_hashlib(tmp_path):
    import hashlib

    target = tmp_path / "b.bin"
    data = os.urandom(3 << 20)
    write_bytes(str(target), data)
    assert sha256_file(str(target)) == hashlib.sha256(data).hexdigest()


def test_its_temporary_files_are_recognised_as_such(tmp_path):
    with atomic_path(str(tmp_path / "model.onnx")) as tmp:
        assert is_temp_name(os.path.basename(tmp))
    assert not is_temp_name("model.onnx") and not is_temp_name("notes.tmp")
