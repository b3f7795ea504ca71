"""Hostile layouts of a bundle (review 12, N3 and N4): a bundle folder that is a symbolic link to a
folder elsewhere, a bench.png bench did not draw, and manifest model names that are not plain file
names. Each test: the exit code, the one-line message, and the sha256 of the files inside and outside
the bundle before and after (nothing outside changed, nothing inside lost)."""
import hashlib
import json
import logging
import os
import shutil

import pytest

from deploy.bench import protocol as bench
from deploy.bundle import MODEL_NAME_RULE, Bundle, check_bundle_folders, is_model_name
from deploy.errors import BundleError
from export.build import remove_leftovers
from tests.faults.helpers import edit_manifest, hashes, run, verify_bundle_dir, write_images

BENCH = ["--backend", "onnxruntime", "--iterations", "3", "--warmup", "0", "--threads", "1"]


def _link_out(root, folder, outside):
    """Move bundle ``root``'s ``folder`` (made if missing) to ``outside`` and leave a symbolic link in its place,
    with a file of the user's there that looks like one of our temporaries."""
    path = os.path.join(root, *folder.split("/"))
    os.makedirs(path, exist_ok=True)
    shutil.move(path, outside)
    os.symlink(outside, path)
    with open(os.path.join(outside, ".notes.abcdefgh.tmp"), "w") as handle:   # is_temp_name() matches it
        handle.write("the user's notes")
    return path


def _png_sha256(folder):
    with open(os.path.join(folder, "bench.png"), "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


# ------------------------------------------------------------------------------------------------
# N3: a bundle folder that is a symbolic link is never written through
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command, folder", [
    ("build", "models"), ("build", "calibration"), ("build", "engines"), ("verify", "reports"),
    ("engines", "engines"), ("engines", "reports/engines"), ("device-run", "reports"), ("analyze", "reports")])
def test_a_writer_refuses_a_bundle_folder_that_is_a_symbolic_link(tmp_path, capsys, command, folder):
    root = verify_bundle_dir(tmp_path / "b")
    outside = str(tmp_path / "elsewhere")
    link = _link_out(root, folder, outside)
    write_images(tmp_path / "imgs", 2)
    before_in, before_out = hashes(root), hashes(outside)
    argv = {"build": ["build", "--target", "cpu", "--models", "mobilenetv2", "--size", "32", "--out", root],
            "verify": ["verify", root, "--images", str(tmp_path / "imgs"), "--count", "2"],
            "engines": ["engines", root], "device-run": ["device-run", root], "analyze": ["analyze", root]}[command]
    code, err, _ = run(["-q"] + argv, capsys)
    assert code == 1
    assert err == "error: {} is a symbolic link to {}: a bundle's folders must be inside it (fix: replace the link " \
                  "with a real folder (copy its files in if you need them), or use another bundle folder " \
                  "(--out))".format(link, outside)
    assert hashes(outside) == before_out   # the user's .notes.abcdefgh.tmp too: build's cleanup never ran there
    assert hashes(root) == before_in
    assert not os.path.exists(os.path.join(root, "trtexec.sh"))


def test_build_cleanup_through_a_linked_folder_is_refused_and_removes_nothing(tmp_path):
    root = verify_bundle_dir(tmp_path / "b")
    outside = str(tmp_path / "elsewhere")
    _link_out(root, "models", outside)
    before = hashes(outside)
    with pytest.raises(BundleError, match="models is a symbolic link"):
        remove_leftovers(root)
    assert hashes(outside) == before


def test_a_linked_folder_deeper_down_or_inside_the_bundle_is_refused_too(tmp_path):
    root = verify_bundle_dir(tmp_path / "b")
    os.makedirs(os.path.join(root, "real"))
    os.symlink(os.path.join(root, "real"), os.path.join(root, "reports"))   # inside, but still a link
    with pytest.raises(BundleError, match="reports is a symbolic link"):
        check_bundle_folders(root, ("reports/engines",))
    check_bundle_folders(root, ("models", "cache/onnxruntime"))   # a real folder, and one not made yet: fine


def test_a_bundle_reached_through_a_link_to_it_is_accepted(tmp_path, capsys):
    """The bundle folder itself may be a link (build/jetson-nano -> /data/bundle); only its insides may not."""
    root = verify_bundle_dir(tmp_path / "b")
    alias = str(tmp_path / "alias")
    os.symlink(root, alias)
    code, err, _ = run(["-q", "bench", alias, "--no-png"] + BENCH, capsys)
    assert code == 0 and err == ""
    assert sorted(os.listdir(os.path.join(root, "reports"))) == ["bench.json", "bench.md"]


@pytest.mark.parametrize("folder, out", [("reports", None), ("reports", "reports"), ("cache", None)])
def test_bench_refuses_a_linked_report_or_cache_folder_before_the_timed_run(tmp_path, monkeypatch, capsys,
                                                                           folder, out):
    root = verify_bundle_dir(tmp_path / "b")
    outside = str(tmp_path / "elsewhere")
    link = _link_out(root, folder, outside)
    for name in ("bench.json", "bench.png"):   # the user's own report and picture there
        with open(os.path.join(outside, name), "w") as handle:
            handle.write("the user's " + name)
    monkeypatch.setattr(bench, "run_bench", lambda *a, **k: pytest.fail("timed before checking the folders"))
    before_in, before_out = hashes(root), hashes(outside)
    argv = ["-q", "bench", root, "--no-png"] + BENCH + (["--out", os.path.join(root, out)] if out else [])
    code, err, _ = run(argv, capsys)
    assert code == 1 and err.startswith("error: {} is a symbolic link to {}: ".format(link, outside)) and "fix:" in err
    assert hashes(outside) == before_out and sorted(os.listdir(outside)) == [".notes.abcdefgh.tmp", "bench.json",
                                                                               "bench.png"]
    assert hashes(root) == before_in


def test_predict_refuses_a_linked_cache_folder(tmp_path, capsys):
    root = verify_bundle_dir(tmp_path / "b")
    outside = str(tmp_path / "elsewhere")
    link = _link_out(root, "cache", outside)
    image = write_images(tmp_path / "imgs", 1)
    image = image[0] if isinstance(image, list) else next(
        os.path.join(d, f) for d, _, files in os.walk(str(tmp_path / "imgs")) for f in files)
    before_in, before_out = hashes(root), hashes(outside)
    code, err, _ = run(["-q", "predict", root, str(image), "--backend", "onnxruntime"], capsys)
    assert code == 1 and err.startswith("error: {} is a symbolic link to {}: ".format(link, outside))
    assert hashes(outside) == before_out and hashes(root) == before_in


def test_doctor_reports_a_linked_reports_folder_as_not_writable_and_writes_nothing_there(tmp_path):
    from deploy.device import doctor

    root = verify_bundle_dir(tmp_path / "b")
    outside = str(tmp_path / "elsewhere")
    _link_out(root, "reports", outside)
    before = hashes(outside)
    check = doctor.check_writable(Bundle.open(root))
    assert check.status == doctor.FAIL and "is a symbolic link to" in check.detail and check.required
    assert hashes(outside) == before and sorted(os.listdir(outside)) == [".notes.abcdefgh.tmp"]


# ------------------------------------------------------------------------------------------------
# N3: bench --no-png removes only the bench.png it drew, as its earlier bench.json records
# ------------------------------------------------------------------------------------------------
def test_bench_json_records_the_chart_it_drew_and_no_png_removes_only_that(tmp_path, capsys):
    root = verify_bundle_dir(tmp_path / "b")
    reports = os.path.join(root, "reports")
    assert run(["-q", "bench", root] + BENCH, capsys)[0] == 0
    with open(os.path.join(reports, "bench.json")) as handle:
        assert json.load(handle)["chart"] == {"path": "bench.png", "sha256": _png_sha256(reports)}
    code, err, _ = run(["-q", "bench", root, "--no-png"] + BENCH, capsys)
    assert code == 0 and err == ""
    assert sorted(os.listdir(reports)) == ["bench.json", "bench.md"]   # the set is this run's, no stale chart
    with open(os.path.join(reports, "bench.json")) as handle:
        assert json.load(handle)["chart"] is None


@pytest.mark.parametrize("whose", ["replaced", "foreign json", "old json"])
def test_no_png_keeps_a_bench_png_bench_did_not_draw_for_the_json_there(tmp_path, capsys, caplog, whose):
    """replaced: the user drew over bench's chart; foreign json: an --out folder holding someone else's
    bench.json and bench.png; old json: a bench.json without a chart record (an earlier pipeline's)."""
    root = verify_bundle_dir(tmp_path / "b")
    out = str(tmp_path / "charts")
    if whose == "replaced":
        assert run(["-q", "bench", root, "--out", out] + BENCH, capsys)[0] == 0
    else:
        os.makedirs(out)
        document = {"results": []} if whose == "old json" else {"mine": True, "chart": {"sha256": "0" * 64}}
        with open(os.path.join(out, "bench.json"), "w") as handle:
            json.dump(document, handle)
    with open(os.path.join(out, "bench.png"), "wb") as handle:
        handle.write(b"the user's own picture")
    caplog.set_level(logging.WARNING, logger="deploy.bench.report")
    code, err, _ = run(["-q", "bench", root, "--no-png", "--out", out] + BENCH, capsys)
    assert code == 0 and err == ""
    with open(os.path.join(out, "bench.png"), "rb") as handle:
        assert handle.read() == b"the user's own picture"
    assert any("kept {}".format(os.path.join(out, "bench.png")) in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------------------------------------------
# N4: model names are plain file names
# ------------------------------------------------------------------------------------------------
BAD_NAMES = ["../../../evil", "a/b", "a\\b", ".hidden", "a\x00b", "two\nlines", "", "x" * 101]


@pytest.mark.parametrize("name", BAD_NAMES)
@pytest.mark.parametrize("command", ["bench", "verify", "build", "engines"])
def test_a_manifest_model_name_that_is_not_a_file_name_is_refused(tmp_path, capsys, name, command):
    root = verify_bundle_dir(tmp_path / "b")
    edit_manifest(root, lambda m: m["models"].__setitem__(name, dict(m["models"]["mobilenetv2"])))
    write_images(tmp_path / "imgs", 2)
    before = hashes(tmp_path)
    argv = {"bench": ["bench", root] + BENCH,
            "verify": ["verify", root, "--images", str(tmp_path / "imgs"), "--count", "2"],
            "build": ["build", "--target", "cpu", "--models", "mobilenetv2", "--size", "32", "--out", root],
            "engines": ["engines", root]}[command]
    code, err, _ = run(["-q"] + argv, capsys)
    assert code == 1
    problem = "error: {} names a model {!r}, which is not a plain file name ({}) (fix: ".format(
        os.path.join(root, "manifest.json"), name, MODEL_NAME_RULE)
    fix = "pass --force to start a new manifest in {}, or choose another --out)".format(root) if command == "build" \
        else "remove that record from the manifest, or build a new bundle into another --out folder)"
    assert err == problem + fix
    assert hashes(tmp_path) == before   # no trtexec.sh, no engine, no report anywhere
    assert not os.path.exists(os.path.join(root, "trtexec.sh"))


@pytest.mark.parametrize("name", ["../../evil", "a/b", ".hidden"])
def test_build_refuses_a_models_name_that_is_not_a_file_name_before_writing(tmp_path, capsys, name):
    out = str(tmp_path / "new")
    code, err, _ = run(["-q", "build", "--target", "cpu", "--models", name, "--size", "32", "--out", out], capsys)
    assert code == 2 and err.startswith("error: model name {!r} is not a plain file name ({})".format(
        name, MODEL_NAME_RULE)) and "fix:" in err
    assert not os.path.exists(out) and os.listdir(str(tmp_path)) == []


def test_the_registry_names_and_user_model_names_pass_the_rule(tmp_path):
    from export.sources import user_model_name
    from models.registry import list_models

    assert all(is_model_name(n) for n in list_models())
    assert is_model_name(user_model_name("mypkg.nets:build_net")) and is_model_name("hardnet39ds-v2.1")
    assert not any(is_model_name(n) for n in BAD_NAMES)
    bundle = Bundle.new(str(tmp_path / "b"), {"name": "cpu"})
    with pytest.raises(BundleError, match="not a plain file name"):
        bundle.set_model("../evil", {})
