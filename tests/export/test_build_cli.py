"""`python pipeline.py build` through pipeline.main: summary, and bad input (one line, exit code,
nothing in the output folder damaged)."""
from __future__ import annotations

import logging
import os

import pytest
import torch
from torch import nn

import pipeline
from deploy.bundle import LOCK_NAME

SIZE = "64"


def snapshot(folder) -> dict[str, bytes]:
    """Every file of the bundle but the writer lock (bookkeeping: each build rewrites its holder line)."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            if name == LOCK_NAME and root == str(folder):
                continue
            path = os.path.join(root, name)
            with open(path, "rb") as handle:
                out[os.path.relpath(path, folder)] = handle.read()
    return out


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "bundle"
    code = pipeline.main(["-q", "build", "--target", "jetson-nano", "--models", "mobilenetv2", "--size", SIZE,
                          "--out", str(out)])
    assert code == 0
    return out


def test_summary_and_reuse(bundle_dir, capsys):
    code = pipeline.main(["-q", "build", "--models", "mobilenetv2", "--size", SIZE, "--out", str(bundle_dir)])
    out = capsys.readouterr().out
    assert code == 0
    header = next(line for line in out.splitlines() if line.startswith("model"))
    for column in ("params", "GMACs", "nodes", "BN folded", "parity"):
        assert column in header
    row = next(line for line in out.splitlines() if line.startswith("mobilenetv2"))
    assert "3.50M" in row and "reused" in row and "52" in row
    assert "random weights: latency artifacts only" in out
    assert "pipeline.py bench {}".format(bundle_dir) in out


def _run_bad(argv, capsys):
    code = pipeline.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    return code, err[-1] if err else ""


def _tiny_other_arch(path):
    torch.save(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Linear(4, 2)).state_dict(), path)


BAD = {
    "unknown model": (["--models", "nosuchnet"], 2, "unknown model 'nosuchnet'"),
    "unknown target": (["--target", "nosuchboard"], 2, "unknown target 'nosuchboard'"),
    "missing weights": (["--weights", "{tmp}/missing.pth"], 1, "does not exist"),
    "corrupt weights": (["--weights", "{tmp}/corrupt.pth"], 1, "corrupt"),
    "other architecture": (["--weights", "{tmp}/other.pth"], 1, "does not fit mobilenetv2"),
    "weights for a model not built": (["--weights", "hardnet39ds={tmp}/other.pth"], 2, "not one of the models"),
    "size too small": (["--models", "densenet121", "--size", "16"], 2, "cannot take a 16x16 input"),
    "bad batch": (["--batch", "0"], 2, "--batch must be from 1 to"),
    "int8 on the nano": (["--precision", "int8"], 2, "no fast INT8"),
    "bf16 on the nano": (["--precision", "bf16"], 2, "bf16 is a CPU precision"),
    "empty --models": (["--models", ""], 2, "--models is empty"),
    "user model import": (["--model", "nosuchpkg.mod:fn", "--models", "mobilenetv2"], 2, "nosuchpkg"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input(case, bundle_dir, tmp_path, capsys):
    (tmp_path / "corrupt.pth").write_bytes(b"PK\x03\x04 this is not a checkpoint")
    _tiny_other_arch(tmp_path / "other.pth")
    extra, want_code, want_text = BAD[case]
    extra = [arg.replace("{tmp}", str(tmp_path)) for arg in extra]
    argv = ["build", "--models", "mobilenetv2", "--size", SIZE, "--out", str(bundle_dir)]
    before = snapshot(bundle_dir)
    code, last = _run_bad(argv + extra, capsys)
    assert code == want_code, last
    assert last.startswith("error: ") and want_text in last
    assert "(fix: " in last                       # every error names the fix
    assert snapshot(bundle_dir) == before         # nothing in the bundle changed


def test_bf16_cpu_bundle_records_why_and_points_to_openvino(tmp_path, capsys, monkeypatch):
    import json

    from deploy import cpu_isa
    from tests.deploy.test_cpu_isa import EPYC_ZEN2, EPYC_ZEN4

    monkeypatch.setattr(cpu_isa, "local_cpu_isa", lambda: cpu_isa.parse_cpu_isa(EPYC_ZEN2, "x86_64"))
    code, last = _run_bad(["build", "--target", "cpu", "--models", "mobilenetv2", "--size", SIZE, "--precision",
                           "bf16", "--out", str(tmp_path / "no")], capsys)
    assert code == 2 and "lacks AVX512_BF16 and AMX-BF16" in last and not (tmp_path / "no").exists()
    monkeypatch.setattr(cpu_isa, "local_cpu_isa", lambda: cpu_isa.parse_cpu_isa(EPYC_ZEN4, "x86_64"))
    out_dir = tmp_path / "bf16"
    assert pipeline.main(["-q", "build", "--target", "cpu", "--models", "mobilenetv2", "--size", SIZE,
                          "--precision", "bf16", "--out", str(out_dir)]) == 0
    out = capsys.readouterr().out
    assert "--backend openvino --precision bf16" in out
    manifest = json.loads((out_dir / "manifest.json").read_text())
    assert manifest["precision"] == "bf16"
    choice = manifest["precision_choice"]
    assert choice["requested"] == "bf16" and "AVX512_BF16" in choice["reason"] and choice["cpu"] == "AMD EPYC 9B14"
    assert not (out_dir / "models" / "mobilenetv2.int8.onnx").exists()     # BF16 is a runtime setting


def test_unwritable_output_folder(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    code, last = _run_bad(["build", "--models", "mobilenetv2", "--size", SIZE, "--out", str(blocker / "sub")],
                          capsys)
    assert code == 1 and "cannot be written" in last and "(fix: " in last
    assert blocker.read_text() == "not a folder"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0,
                    reason="root ignores folder permissions, so a read-only folder cannot be simulated")
def test_read_only_output_folder(bundle_dir, capsys):
    before = snapshot(bundle_dir)
    os.chmod(bundle_dir, 0o555)
    try:
        code, last = _run_bad(["build", "--models", "mobilenetv2", "--size", SIZE, "--out", str(bundle_dir),
                               "--force"], capsys)
    finally:
        os.chmod(bundle_dir, 0o755)
    assert code == 1 and "cannot write" in last
    assert snapshot(bundle_dir) == before


def test_manifest_of_another_target_is_refused(bundle_dir, capsys):
    before = snapshot(bundle_dir)
    code, last = _run_bad(["build", "--target", "cpu", "--models", "mobilenetv2", "--size", SIZE,
                           "--out", str(bundle_dir)], capsys)
    assert code == 1 and "built for target 'jetson-nano'" in last
    assert snapshot(bundle_dir) == before


def test_fine_tuned_checkpoint(tmp_path, capsys):
    from deploy.atomic import sha256_file
    from deploy.bundle import Bundle
    from models.registry import create_model

    torch.manual_seed(3)
    ckpt = tmp_path / "mbv2_10.pth"
    torch.save({"state_dict": create_model("mobilenetv2", num_classes=10).state_dict()}, ckpt)
    out = tmp_path / "bundle"
    code = pipeline.main(["-q", "build", "--models", "mobilenetv2", "--size", SIZE, "--out", str(out),
                          "--weights", "mobilenetv2={}".format(ckpt)])
    printed = capsys.readouterr().out
    assert code == 0
    rec = Bundle.open(str(out)).model("mobilenetv2")
    assert rec["num_classes"] == 10 and rec["output"]["shape"] == [1, 10] and rec["labels"] is None
    assert rec["weights"]["random"] is False and rec["weights"]["sha256"] == sha256_file(str(ckpt))
    assert rec["weights"]["source"] == str(ckpt)
    assert "random weights" not in printed


def test_corrupt_manifest_needs_force(tmp_path, capsys):
    out = tmp_path / "bundle"
    (out / "models").mkdir(parents=True)
    (out / "manifest.json").write_text("{ not json")
    argv = ["-q", "build", "--models", "mobilenetv2", "--size", SIZE, "--out", str(out)]
    code, last = _run_bad(argv, capsys)
    assert code == 1 and "not valid JSON" in last and "--force" in last
    assert (out / "manifest.json").read_text() == "{ not json"
    assert pipeline.main(argv + ["--force"]) == 0
    from deploy.bundle import Bundle

    Bundle.open(str(out)).verify()


def test_preprocess_override_is_recorded_and_invalidates_reuse(bundle_dir, tmp_path, capsys):
    import json

    sidecar = tmp_path / "digits.pt.card.json"
    sidecar.write_text(json.dumps({"preprocessing": {"mean": [0.2, 0.2, 0.2], "std": [0.3, 0.3, 0.3],
                                                     "crop_pct": 1.0}}))
    code = pipeline.main(["-q", "build", "--models", "mobilenetv2", "--size", SIZE, "--out", str(bundle_dir),
                          "--preprocess", str(sidecar)])
    out = capsys.readouterr().out
    assert code == 0
    row = next(line for line in out.splitlines() if line.startswith("mobilenetv2"))
    assert "reused" not in row  # preprocessing is part of the cache key
    record = json.loads((bundle_dir / "manifest.json").read_text())["models"]["mobilenetv2"]["preprocessing"]
    assert record["mean"] == [0.2, 0.2, 0.2] and record["std"] == [0.3, 0.3, 0.3]
    assert record["crop_pct"] == 1.0 and record["resize_shorter_side"] == int(SIZE)
    assert record["source"] == "--preprocess override"


@pytest.mark.parametrize("content, expected", [
    ("not json", "not valid JSON"),
    ('{"foo": 1}', "sets none of"),
    ('{"mean": [1, 2]}', "three numbers"),
    ('{"std": [1, 0, 1]}', "positive"),
    ('{"crop_pct": 1.5}', "crop_pct must be in"),
])
def test_bad_preprocess_file(bundle_dir, tmp_path, capsys, content, expected):
    bad = tmp_path / "pre.json"
    bad.write_text(content)
    before = snapshot(bundle_dir)
    code, line = _run_bad(["-q", "build", "--models", "mobilenetv2", "--size", SIZE, "--out", str(bundle_dir),
                           "--preprocess", str(bad)], capsys)
    assert code == 2 and expected in line and "fix:" in line
    assert snapshot(bundle_dir) == before


def test_leftovers_of_a_killed_build_are_removed_by_the_next(bundle_dir, caplog):
    work = bundle_dir / ".pipeline-build-k1ll3d00"
    work.mkdir()
    (work / "mobilenetv2.onnx").write_bytes(b"half an export")
    half = bundle_dir / "models" / ".mobilenetv2.onnx.k1ll3d00.tmp"
    half.write_bytes(b"half a file")
    report = bundle_dir / "reports" / ".bench.json.x1234567.tmp"   # not the build's: bench may be writing it right now
    report.parent.mkdir(exist_ok=True)
    report.write_text("{")
    before = snapshot(bundle_dir)
    with caplog.at_level(logging.INFO, logger="export.build"):
        assert pipeline.main(["build", "--models", "mobilenetv2", "--size", SIZE, "--out", str(bundle_dir)]) == 0
    assert "removed 2 leftover(s) of an interrupted build" in caplog.text
    assert not work.exists() and not half.exists() and report.exists()
    assert snapshot(bundle_dir)["models/mobilenetv2.onnx"] == before["models/mobilenetv2.onnx"]   # reused as is
    report.unlink()
