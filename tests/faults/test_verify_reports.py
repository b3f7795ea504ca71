"""verify's reports and the manifest's fidelity records are written as one set (review finding N8:
a full disk wrote the new reports and kept the old manifest, so they disagreed)."""
import json
import os

import pytest

from deploy import atomic
from tests.faults.helpers import disk_full_after, hashes, run, verify_bundle_dir, write_images

REAL_FSYNC = os.fsync   # disk_full_after replaces it


@pytest.fixture
def no_torch_stages(monkeypatch):
    monkeypatch.setattr("calibration.torch_stages.torch_stages", lambda record, name: ([], []))   # cli/verify.py passes it in


@pytest.mark.parametrize("good_writes", [0, 1, 2])   # the disk fills at the json, the md or the manifest
def test_a_full_disk_keeps_the_reports_and_the_manifest_in_step(tmp_path, no_torch_stages, monkeypatch, capsys,
                                                               good_writes):
    root = verify_bundle_dir(tmp_path / "b")
    write_images(tmp_path / "imgs", 4)
    argv = ["-q", "verify", root, "--images", str(tmp_path / "imgs")]
    assert run(argv + ["--count", "2"], capsys)[0] == 0
    before = hashes(root)
    disk_full_after(monkeypatch, good_writes)
    code, err, _ = run(argv + ["--count", "4"], capsys)
    assert code == 1 and err.startswith("error: no space left on the device")
    assert hashes(root) == before   # the 2-image reports and the 2-image fidelity, together
    monkeypatch.setattr(atomic.os, "fsync", REAL_FSYNC)   # space again
    assert run(argv + ["--count", "4"], capsys)[0] == 0
    with open(os.path.join(root, "reports", "verify.json")) as handle:
        images = json.load(handle)["models"]["mobilenetv2"]["images"]
    with open(os.path.join(root, "manifest.json")) as handle:
        assert json.load(handle)["models"]["mobilenetv2"]["fidelity"]["images"] == images == 4
