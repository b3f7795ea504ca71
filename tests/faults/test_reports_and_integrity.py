"""Items 4-5 of issue 12: reports written as a set, outputs checked before timing, and every file a
bundle names inside it with a sha256 that is checked, reuse included."""
import hashlib
import logging
import os

import pytest

from deploy.atomic import write_files
from deploy.bench import protocol as bench
from tests.faults.helpers import disk_full_after, edit_manifest, hashes, run, verify_bundle_dir

pytest.importorskip("onnxruntime", reason="onnxruntime not installed: bench and verify need it")


# ------------------------------------------------------------------------------------------------
# 4. reports as a set; --out checked before timing
# ------------------------------------------------------------------------------------------------
def test_a_full_disk_leaves_the_previous_set_whole(tmp_path, monkeypatch):
    paths = [str(tmp_path / n) for n in ("bench.json", "bench.md", "bench.png")]
    write_files({p: b"old " + p.encode() for p in paths})
    before = hashes(tmp_path)
    disk_full_after(monkeypatch, 2)
    with pytest.raises(OSError):
        write_files({p: b"new " + p.encode() for p in paths})
    assert hashes(tmp_path) == before and sorted(os.listdir(str(tmp_path))) == sorted(os.path.basename(p) for p in paths)


def test_no_png_removes_the_earlier_runs_chart_but_not_a_png_bench_did_not_make(tmp_path, capsys):
    root = verify_bundle_dir(tmp_path / "b")
    argv = ["-q", "bench", root, "--backend", "onnxruntime", "--iterations", "3", "--warmup", "0", "--threads", "1"]
    assert run(argv, capsys)[0] == 0
    reports = os.path.join(root, "reports")
    assert os.path.isfile(os.path.join(reports, "bench.png"))
    assert run(argv + ["--no-png"], capsys)[0] == 0
    assert sorted(os.listdir(reports)) == ["bench.json", "bench.md"]      # json and md of this run, no old chart
    mine = tmp_path / "charts"
    mine.mkdir()
    (mine / "bench.png").write_bytes(b"the user's own picture")
    assert run(argv + ["--no-png", "--out", str(mine)], capsys)[0] == 0
    assert (mine / "bench.png").read_bytes() == b"the user's own picture"   # no bench.json before: not ours


def test_bench_on_a_full_disk_says_so_in_one_line_and_keeps_the_last_reports(tmp_path, monkeypatch, capsys):
    root = verify_bundle_dir(tmp_path / "b")
    argv = ["-q", "bench", root, "--backend", "onnxruntime", "--iterations", "3", "--warmup", "0", "--threads", "1"]
    assert run(argv, capsys)[0] == 0
    reports = os.path.join(root, "reports")
    before = hashes(reports)
    from deploy.bench import report as bench_report

    real = bench_report.write_files

    def write_on_a_full_disk(contents):
        disk_full_after(monkeypatch, 1)
        return real(contents)

    monkeypatch.setattr(bench_report, "write_files", write_on_a_full_disk)
    code, err, _ = run(argv, capsys)
    assert code == 1 and "no space left on the device" in err and "fix:" in err
    assert hashes(reports) == before


@pytest.mark.parametrize("out", ["file", "/proc/no/such/place", ""])
def test_an_unusable_bench_out_fails_before_the_timed_run(tmp_path, monkeypatch, capsys, out):
    root = verify_bundle_dir(tmp_path / "b")
    if out == "file":
        out = str(tmp_path / "a-file")
        open(out, "w").close()
    monkeypatch.setattr(bench, "run_bench", lambda *a, **k: pytest.fail("timed before checking --out"))
    before = hashes(tmp_path)
    code, err, _ = run(["-q", "bench", root, "--backend", "onnxruntime", "--out", out], capsys)
    assert code == 2 and ("--out" in err or "report folder" in err or "cannot write reports" in err)
    assert hashes(tmp_path) == before


# ------------------------------------------------------------------------------------------------
# 5. integrity: sha256 required, paths confined, reuse re-checked
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sha", [None, "missing", ""])
@pytest.mark.parametrize("command", ["bench", "verify"])
def test_a_file_without_a_sha256_is_refused(tmp_path, capsys, sha, command):
    root = verify_bundle_dir(tmp_path / "b")

    def change(manifest):
        entry = manifest["models"]["mobilenetv2"]["onnx"]
        if sha == "missing":
            del entry["sha256"]
        else:
            entry["sha256"] = sha
    edit_manifest(root, change)
    before = hashes(root)
    extra = ["--iterations", "2", "--backend", "onnxruntime"] if command == "bench" else ["--images", str(tmp_path)]
    code, err, _ = run(["-q", command, root] + extra, capsys)
    assert code == 1 and "without a sha256" in err and "fix:" in err
    assert hashes(root) == before


@pytest.mark.parametrize("where", ["relative", "absolute", "symlink"])
def test_a_file_outside_the_bundle_is_refused(tmp_path, capsys, where):
    root = verify_bundle_dir(tmp_path / "b")
    other = verify_bundle_dir(tmp_path / "other")
    outside = os.path.join(other, "models", "mobilenetv2.onnx")
    with open(outside, "rb") as handle:
        sha = hashlib.sha256(handle.read()).hexdigest()
    if where == "symlink":
        link = os.path.join(root, "models", "mobilenetv2.onnx")
        os.unlink(link)
        os.symlink(outside, link)
        path = "models/mobilenetv2.onnx"
    else:
        path = "../other/models/mobilenetv2.onnx" if where == "relative" else outside
    edit_manifest(root, lambda m: m["models"]["mobilenetv2"]["onnx"].update(path=path, sha256=sha))
    before = hashes(tmp_path)
    code, err, _ = run(["-q", "bench", root, "--iterations", "2", "--backend", "onnxruntime"], capsys)
    assert code == 1 and ("outside the bundle" in err or "leads outside" in err) and "fix:" in err
    assert hashes(tmp_path) == before


def test_reuse_rechecks_the_file_it_reuses(tmp_path, capsys, caplog):
    root = str(tmp_path / "b")
    argv = ["-q", "build", "--target", "cpu", "--models", "mobilenetv2", "--size", "32", "--out", root]
    assert run(argv, capsys)[0] == 0
    onnx_path = os.path.join(root, "models", "mobilenetv2.onnx")
    with open(onnx_path, "wb") as handle:   # a file that is no ONNX, and a manifest edited to match it
        handle.write(b"not an onnx model")
    edit_manifest(root, lambda m: m["models"]["mobilenetv2"]["onnx"].update(
        sha256=hashlib.sha256(b"not an onnx model").hexdigest()))
    with caplog.at_level(logging.WARNING, logger="export.build"):
        code, err, out = run(argv, capsys)
    assert code == 0 and err == ""
    assert "fails its checks" in caplog.text and "rebuilding it" in caplog.text
    row = next(line for line in out.splitlines() if line.startswith("mobilenetv2"))
    assert "built" in row and "reused" not in row
    with open(onnx_path, "rb") as handle:
        assert handle.read() != b"not an onnx model"
    code, err, out = run(argv, capsys)   # now reused: the row says parity is the recorded one
    row = next(line for line in out.splitlines() if line.startswith("mobilenetv2"))
    assert code == 0 and "reused" in row and "as built: ok 3 stages" in row


@pytest.mark.parametrize("option", [["--out", "/proc/no/such/place"], ["--json", "/proc/no/such/a.json"],
                                    ["--json", "FOLDER"]])
def test_unusable_analyze_outputs_fail_before_the_analysis(tmp_path, monkeypatch, capsys, option):
    from analysis import sources

    root = verify_bundle_dir(tmp_path / "b")
    monkeypatch.setattr(sources, "from_bundle", lambda *a, **k: pytest.fail("analysed before checking outputs"))
    before = hashes(tmp_path)
    option = [o.replace("FOLDER", str(tmp_path)) for o in option]
    code, err, _ = run(["-q", "analyze", root] + option, capsys)
    assert code == 2 and option[0] in err and "fix:" in err
    assert hashes(tmp_path) == before
