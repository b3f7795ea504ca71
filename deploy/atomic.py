"""Atomic file writes: write to a temporary file in the same folder, then rename.

A reader never sees half a file, and an interrupted or failed write leaves the old file intact.
Python 3.6-compatible.
"""
import collections
import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile

_TEMP_SUFFIX = ".tmp"

# a value for write_files: the bytes of the file at ``path``, streamed rather than held in memory
CopyOf = collections.namedtuple("CopyOf", ["path"])


# mkstemp's names: "." + the final name + "." + 8 random characters + ".tmp"; a user's own
# ".draft.tmp" does not match, so cleanup never takes it for one of ours.
_TEMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}" + re.escape(_TEMP_SUFFIX) + "$")


def is_temp_name(name):
    # type: (str) -> bool
    """Whether a file name is one of atomic_path's temporary files (a leftover if its writer died)."""
    return bool(_TEMP_NAME.match(name))


def scratch_path(path):
    # type: (str) -> str
    """A new, empty scratch file beside ``path`` named as atomic_path's temporaries are, so the
    cleanup of an interrupted writer (is_temp_name) finds it. The caller removes it."""
    folder = os.path.dirname(os.path.abspath(str(path))) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(str(path)) + ".scratch.", suffix=_TEMP_SUFFIX,
                               dir=folder)
    os.close(fd)
    return tmp


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    On any exception the temporary file is removed and ``path`` is untouched.
    """
    path = str(path)
    folder = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=_TEMP_SUFFIX, dir=folder)
    os.close(fd)
    try:
        yield tmp
        # mkstemp creates 0600 files; give the result the mode a plain open() would have had.
        os.chmod(tmp, _mode_for(path))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _mode_for(path):
    # type: (str) -> int
    if os.path.exists(path):
        return os.stat(path).st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_bytes(path, data):
    # type: (str, bytes) -> None
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())


def write_files(contents):
    # type: (dict) -> None
    """Write several files as a set: {path: bytes or CopyOf(source path)}. Every file is written to
    its temporary first; only when all are complete are they renamed into place, so a failure (a
    full disk, an interrupt) leaves the previous set whole, never new files beside old ones."""
    temps = []
    try:
        for path, data in contents.items():
            folder = os.path.dirname(os.path.abspath(str(path))) or "."
            os.makedirs(folder, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(str(path)) + ".", suffix=_TEMP_SUFFIX,
                                       dir=folder)
            temps.append((tmp, str(path)))
            with os.fdopen(fd, "wb") as handle:
                if isinstance(data, CopyOf):
                    with open(data.path, "rb") as source:
                        shutil.copyfileobj(source, handle)
                else:
                    handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        for tmp, path in temps:
            os.chmod(tmp, _mode_for(path))
        for tmp, path in temps:   # renames need no space: these do not fail where the writes did not
            os.replace(tmp, path)
    finally:
        for tmp, _ in temps:
            if os.path.exists(tmp):
                os.unlink(tmp)


def write_text(path, text):
    # type: (str, str) -> None
    write_bytes(path, text.encode("utf-8"))


def json_bytes(obj):
    # type: (object) -> bytes
    """The bytes write_json writes (for write_files)."""
    return (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode("utf-8")


def write_json(path, obj):
    # type: (str, object) -> None
    write_bytes(path, json_bytes(obj))


def folder_write_problem(folder):
    # type: (str) -> object
    """None when ``folder`` exists or can be made, and a file can be created in it; else why not."""
    folder = str(folder)
    if os.path.exists(folder) and not os.path.isdir(folder):
        return "exists and is not a folder"
    try:
        os.makedirs(folder, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return "cannot be written: {}".format(exc.strerror or exc)
    return None


def sha256_file(path, chunk_size=1 << 20):
    # type: (str, int) -> str
    digest = hashlib.sha256()
    with open(str(path), "rb") as handle:
        while True:
            block = handle.read(chunk_size)
            if not block:
                break
            digest.update(block)
    return digest.hexdigest()
