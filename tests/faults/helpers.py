"""Shared by the fault tests: tiny bundles, file hashes, and running the CLI as a user would."""
import collections
import hashlib
import json
import os

import pipeline
from deploy.bundle import LOCK_NAME
from tests.deploy.bench_tiny import tiny_bundle

SIZE = 32


def hashes(folder):
    """sha256 of every file under ``folder`` (the writer lock aside: each command rewrites its holder line)."""
    out = {}
    for root, _, files in os.walk(str(folder)):
        for name in files:
            if name == LOCK_NAME:
                continue
            path = os.path.join(root, name)
            with open(path, "rb") as handle:
                out[os.path.relpath(path, str(folder))] = hashlib.sha256(handle.read()).hexdigest()
    return out


def run(argv, capsys):
    """pipeline.main(argv) -> (exit code, the one error line, stdout). Asserts there is exactly one
    error line and no traceback."""
    code = pipeline.main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "Traceback" not in out
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) <= 1, err
    return code, errors[0] if errors else "", out


def verify_bundle_dir(root, names=("mobilenetv2",)):
    """A tiny bundle (onnx.helper CNNs, no torch) with the preprocessing verify needs."""
    from deploy.preprocess import IMAGENET_MEAN, IMAGENET_STD, PreprocessConfig, config_to_dict

    root = tiny_bundle(root, names=names, size=SIZE)
    path = os.path.join(root, "manifest.json")
    with open(path) as handle:
        manifest = json.load(handle, object_pairs_hook=collections.OrderedDict)
    for record in manifest["models"].values():
        record["preprocessing"] = config_to_dict(PreprocessConfig(SIZE, 1.0, IMAGENET_MEAN, IMAGENET_STD, "bilinear"))
        record["num_classes"] = 5
    with open(path, "w") as handle:
        json.dump(manifest, handle)
    return root


def edit_manifest(root, change):
    """Change the manifest of bundle ``root`` in place, as a hostile or careless hand would."""
    path = os.path.join(str(root), "manifest.json")
    with open(path) as handle:
        manifest = json.load(handle, object_pairs_hook=collections.OrderedDict)
    replaced = change(manifest)   # edits in place, or returns a whole new document (a list, say)
    if isinstance(replaced, (list, dict)):
        manifest = replaced
    with open(path, "w") as handle:
        json.dump(manifest, handle)


def write_images(folder, count, size=40):
    from tests.calibration.helpers import write_images as write

    return write(folder, count, size=(size, size))


def disk_full_after(monkeypatch, good_writes):
    """os.fsync in deploy.atomic fails with ENOSPC after ``good_writes`` calls, as a full disk does."""
    import errno

    from deploy import atomic

    calls = []
    real = os.fsync

    def fsync(fd):
        calls.append(fd)
        if len(calls) > good_writes:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
