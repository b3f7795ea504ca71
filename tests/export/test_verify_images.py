"""build --verify-images: held-out images packed into the bundle, each with its sha256, and used by
verify and device-run when no --images is given."""
import json
import os

import pytest

from deploy import atomic
from deploy.bundle import Bundle
from deploy.device import device_run
from deploy.errors import BundleError
from deploy.preprocess import list_image_files, pick_order
from export.verify_images import pack_verify_images
from tests.calibration.helpers import write_images
from tests.faults.helpers import disk_full_after, hashes, run, verify_bundle_dir


@pytest.fixture
def labelled(tmp_path):
    """Two classes named by index (the tiny models have 5 outputs), five images each."""
    root = tmp_path / "heldout"
    for label in ("0", "3"):
        write_images(root / label, 5, size=(40, 40), seed=int(label))
    return root


@pytest.fixture
def bundle(tmp_path):
    return Bundle.open(verify_bundle_dir(tmp_path / "b"))


@pytest.fixture
def no_torch_stages(monkeypatch):
    monkeypatch.setattr("calibration.torch_stages.torch_stages", lambda record, name: ([], []))


def _bytes(path):
    with open(str(path), "rb") as handle:
        return handle.read()


def test_the_pick_is_copied_byte_for_byte_with_its_labels_and_sha256(bundle, labelled):
    entry = pack_verify_images(bundle, str(labelled), count=6)
    expected = pick_order(list_image_files(str(labelled)))[:6]   # the pick verify --images --count 6 makes
    paths = Bundle.open(bundle.root).verify_image_paths()
    assert entry["count"] == 6 and entry["source"] == os.path.abspath(str(labelled))
    assert [os.path.basename(p).split("-", 1)[1] for p in paths] == [os.path.basename(p) for p in expected]
    for packed, source in zip(paths, expected):
        assert _bytes(packed) == _bytes(source)
        assert os.path.basename(os.path.dirname(packed)) == os.path.basename(os.path.dirname(source))   # label
        assert entry["files"][os.path.relpath(packed, bundle.root)] == atomic.sha256_file(source)


def test_a_repack_reuses_keeps_the_users_files_and_removes_only_its_own(bundle, labelled):
    pack_verify_images(bundle, str(labelled), count=6)
    folder = bundle.path("verify_images")
    with open(os.path.join(folder, "mine.txt"), "w") as handle:
        handle.write("the user's note")
    before = hashes(bundle.root)
    pack_verify_images(bundle, str(labelled), count=6)
    assert hashes(bundle.root) == before                       # reused: nothing rewritten
    entry = pack_verify_images(bundle, str(labelled), count=2)
    on_disk = sorted(os.path.relpath(os.path.join(r, f), bundle.root) for r, _, fs in os.walk(folder) for f in fs)
    assert on_disk == sorted(list(entry["files"]) + ["verify_images/mine.txt"])


def test_a_changed_image_is_refused(bundle, labelled):
    pack_verify_images(bundle, str(labelled), count=3)
    path = Bundle.open(bundle.root).verify_image_paths()[0]
    with open(path, "ab") as handle:
        handle.write(b"x")
    with pytest.raises(BundleError, match="does not match the manifest"):
        Bundle.open(bundle.root).verify_image_paths()


def test_a_full_disk_keeps_the_earlier_images_and_manifest(bundle, labelled, monkeypatch):
    pack_verify_images(bundle, str(labelled), count=2)
    before = hashes(bundle.root)
    disk_full_after(monkeypatch, 3)   # the disk fills before the last image or the manifest
    with pytest.raises(OSError):
        pack_verify_images(bundle, str(labelled), count=8)
    assert hashes(bundle.root) == before


def test_bad_input_is_refused_before_the_export(tmp_path, labelled, capsys):
    base = ["-q", "build", "--target", "cpu", "--models", "mobilenetv2", "--size", "32", "--out", str(tmp_path / "o")]
    (tmp_path / "empty").mkdir()
    for extra, expected in ((["--verify-images", str(tmp_path / "absent")], "is not a folder"),
                            (["--verify-images", str(tmp_path / "empty")], "no JPEG/PNG images found"),
                            (["--verify-count", "5"], "--verify-count applies to --verify-images"),
                            (["--verify-images", str(labelled), "--verify-count", "0"], "--verify-count must be")):
        code, err, _ = run(base + extra, capsys)
        assert code == 2 and expected in err and "(fix: " in err
        assert not (tmp_path / "o").exists()


def test_verify_uses_the_packed_images_without_images(bundle, labelled, no_torch_stages, capsys):
    pack_verify_images(bundle, str(labelled), count=10)
    code, err, _ = run(["-q", "verify", bundle.root], capsys)
    assert code == 0, err
    with open(bundle.path("reports/verify.json")) as handle:
        report = json.load(handle)
    assert report["images"]["source"].startswith("the bundle's verify_images/ (packed by build from ")
    model = report["models"]["mobilenetv2"]
    assert model["images"] == 10 and model["labelled_images"] == 10   # class folders 0 and 3 are labels


def test_device_run_verifies_with_the_packed_images(bundle, labelled):
    assert device_run.packed_images_key(bundle) is None
    pack_verify_images(bundle, str(labelled), count=4)
    key = device_run.packed_images_key(bundle)
    assert key.startswith("packed:")
    pack_verify_images(bundle, str(labelled), count=5)
    assert device_run.packed_images_key(bundle) not in (None, key)   # other images: verify runs again


def test_build_packs_the_images_after_the_models(tmp_path, labelled, capsys):
    out = tmp_path / "o"
    code, err, stdout = run(["-q", "build", "--target", "cpu", "--models", "mobilenetv2", "--size", "32", "--out",
                             str(out), "--verify-images", str(labelled), "--verify-count", "4"], capsys)
    assert code == 0, err
    assert "verify images: 4 packed from {}".format(os.path.abspath(str(labelled))) in stdout
    assert len(Bundle.open(str(out)).verify_image_paths()) == 4


def test_a_killed_pack_leaves_temporaries_the_next_build_removes(bundle, labelled):
    from export.build import remove_leftovers

    pack_verify_images(bundle, str(labelled), count=2)
    class_folder = os.path.dirname(Bundle.open(bundle.root).verify_image_paths()[0])
    half = os.path.join(class_folder, ".0001-img001.png.abcd1234.tmp")   # write_files' temporary name
    mine = os.path.join(class_folder, "notes.tmp")                      # not one of ours: kept
    for path in (half, mine):
        with open(path, "wb") as handle:
            handle.write(b"half")
    assert remove_leftovers(bundle.root) == 1
    assert not os.path.exists(half) and os.path.exists(mine)


def test_a_repack_repairs_a_changed_or_replaced_image(bundle, labelled, tmp_path):
    pack_verify_images(bundle, str(labelled), count=3)
    first, second = Bundle.open(bundle.root).verify_image_paths()[:2]
    with open(first, "ab") as handle:                          # changed in transit
        handle.write(b"x")
    os.unlink(second)
    os.symlink(str(tmp_path / "elsewhere.png"), second)        # replaced by a link
    pack_verify_images(bundle, str(labelled), count=3)
    paths = Bundle.open(bundle.root).verify_image_paths()      # every sha256 matches again
    assert paths[:2] == [first, second] and not os.path.islink(second)
    assert not (tmp_path / "elsewhere.png").exists()


def test_a_class_folder_that_is_a_link_is_refused_and_nothing_outside_is_touched(bundle, labelled, tmp_path, capsys):
    pack_verify_images(bundle, str(labelled), count=6)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.png").write_bytes(b"the user's")
    class_folder = os.path.dirname(Bundle.open(bundle.root).verify_image_paths()[0])
    for name in os.listdir(class_folder):
        os.rename(os.path.join(class_folder, name), str(outside / name))
    os.rmdir(class_folder)
    os.symlink(str(outside), class_folder)
    before = hashes(str(outside))
    with pytest.raises(BundleError, match="is a symbolic link"):
        pack_verify_images(bundle, str(labelled), count=2)    # would remove files over there
    assert hashes(str(outside)) == before
    code, err, _ = run(["-q", "build", "--target", "cpu", "--models", "mobilenetv2", "--size", "32", "--out",
                        bundle.root, "--verify-images", str(labelled)], capsys)
    assert code == 1 and "is a symbolic link" in err and hashes(str(outside)) == before


def test_a_file_in_the_way_that_the_bundle_did_not_pack_is_refused(bundle, labelled):
    entry = pack_verify_images(bundle, str(labelled), count=2)
    rel = "verify_images/{}/0002-{}".format(*_third_pick(labelled))
    mine = bundle.path(rel)
    os.makedirs(os.path.dirname(mine), exist_ok=True)
    with open(mine, "wb") as handle:
        handle.write(b"the user's own file")
    assert rel not in entry["files"]
    with pytest.raises(BundleError, match="is in the way: the bundle did not pack it"):
        pack_verify_images(bundle, str(labelled), count=3)
    assert _bytes(mine) == b"the user's own file"


def _third_pick(labelled):
    path = pick_order(list_image_files(str(labelled)))[2]
    return os.path.basename(os.path.dirname(path)), os.path.basename(path)


def test_a_destination_that_cannot_hold_the_images_is_refused_before_the_export(tmp_path, labelled, capsys):
    out = verify_bundle_dir(tmp_path / "b")
    with open(os.path.join(out, "verify_images"), "w") as handle:   # a file where the folder goes
        handle.write("not a folder")
    before = hashes(out)
    code, err, _ = run(["-q", "build", "--target", "cpu", "--models", "mobilenetv2", "--size", "32", "--out",
                        out, "--verify-images", str(labelled)], capsys)
    assert code == 1 and "verify_images is not a folder" in err and "(fix: move " in err
    assert hashes(out) == before
    long_name = tmp_path / "long" / "0"
    write_images(long_name, 1)
    os.rename(str(long_name / "img000.png"), str(long_name / ("x" * 251 + ".png")))
    code, err, _ = run(["-q", "build", "--target", "cpu", "--models", "mobilenetv2", "--size", "32", "--out",
                        str(tmp_path / "new"), "--verify-images", str(tmp_path / "long")], capsys)
    assert code == 2 and "image file name too long to pack" in err and not (tmp_path / "new").exists()


def test_a_hand_edited_earlier_record_is_never_followed(bundle, labelled, tmp_path):
    victim = tmp_path / "victim.png"
    victim.write_bytes(b"not the bundle's")
    pack_verify_images(bundle, str(labelled), count=2)
    manifest = Bundle.open(bundle.root).manifest
    manifest["verify_images"]["files"]["verify_images/../../victim.png"] = "0" * 64
    bundle.manifest = manifest
    pack_verify_images(bundle, str(labelled), count=2)        # a new record replaces the damaged one
    assert victim.read_bytes() == b"not the bundle's"
    assert len(Bundle.open(bundle.root).verify_image_paths()) == 2
