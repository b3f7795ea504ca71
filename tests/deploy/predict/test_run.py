"""pipeline.py predict: images, folders with bad files, --json, video files and cameras (OpenCV)."""
import json

import numpy as np
import pytest

import pipeline
from deploy.predict import decode
from deploy.predict.run import expand_inputs
from tests.deploy.predict_helpers import classifier_bundle, photo, write_photo

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
needs_cv2 = pytest.mark.skipif(not decode.opencv_available(),
                               reason="OpenCV (opencv-python-headless) is not installed here: video and camera untested")


@pytest.fixture
def bundle(tmp_path):
    return classifier_bundle(str(tmp_path / "bundle"))


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    write_photo(root / "a.jpg", 120, 90, seed=1)
    write_photo(root / "sub" / "b.png", 60, 70, seed=2)
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


def test_folder_with_a_bad_file_goes_on_and_exits_1(bundle, folder, capsys):
    code = pipeline.main(["predict", bundle, str(folder), "--topk", "2"])
    out = capsys.readouterr().out
    assert code == 1
    assert "broken.jpg: error: cannot read image" in out
    assert out.count("  time: decode ") == 2          # a.jpg and sub/b.png were classified
    assert "2 image(s) classified, 1 input(s) failed" in out
    assert "hardnet39ds on onnxruntime (fp32, float32 input" in out


def test_json_is_one_record_per_input(bundle, folder, tmp_path, capsys):
    good = str(folder / "a.jpg")
    assert pipeline.main(["predict", bundle, good, str(tmp_path / "nope.png"), "--json", "--topk", "3"]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["input"] for r in records] == [good, str(tmp_path / "nope.png")]
    first = records[0]
    assert len(first["top"]) == 3 and set(first["timing_ms"]) == {
        "decode_ms", "preprocess_ms", "network_ms", "postprocess_ms", "total_ms"}
    assert records[1]["error"] == "no such file or folder"


def test_random_weights_are_marked(tmp_path, capsys):
    root = classifier_bundle(str(tmp_path / "r"), random=True)
    path = write_photo(tmp_path / "x.jpg", 50, 50)
    assert pipeline.main(["predict", root, path, "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["random_weights"] is True
    assert "RANDOM weights" in captured.err


def test_usage_errors_exit_2(bundle, tmp_path, capsys):
    assert pipeline.main(["predict", bundle]) == 2
    assert "nothing to classify" in capsys.readouterr().err
    assert pipeline.main(["predict", bundle, "x.jpg", "--topk", "0"]) == 2
    assert pipeline.main(["predict", str(tmp_path / "none"), "x.jpg"]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_expand_inputs_sorts_kinds(folder, tmp_path):
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"")
    items = expand_inputs([str(folder), str(video), str(tmp_path / "empty_dir_missing")], camera="0")
    kinds = [item.kind for item in items]
    assert kinds == ["image", "image", "image", "video", "missing", "camera"]


def test_video_without_opencv_is_one_line(bundle, tmp_path, monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def no_cv2(name, *args, **kwargs):
        if name == "cv2":
            raise ImportError("No module named 'cv2'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_cv2)
    video = tmp_path / "clip.avi"
    video.write_bytes(b"RIFF")
    assert pipeline.main(["predict", bundle, str(video), "--decoder", "pillow"]) == 2
    assert "video input needs OpenCV" in capsys.readouterr().err


def _write_video(path, frames, size=(96, 64), fps=10.0):
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    assert writer.isOpened(), "this OpenCV cannot write MJPEG AVI"
    for i in range(frames):
        writer.write(np.ascontiguousarray(photo(size[0], size[1], seed=i)[:, :, ::-1]))
    writer.release()
    return str(path)


@needs_cv2
def test_video_reports_fps_consistent_with_the_timing(bundle, tmp_path, capsys):
    video = _write_video(tmp_path / "clip.avi", 12)
    assert pipeline.main(["predict", bundle, video, "--json", "--max-frames", "8"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["kind"] == "video" and record["frames"] == 8 and record["skipped_frames"] == 0
    assert sum(record["top1_counts"].values()) == 8
    # frames / wall time of the loop and 1000 / mean total ms measure the same thing
    assert record["fps"] == pytest.approx(record["fps_from_mean_total"], rel=0.25)


@needs_cv2
def test_unreadable_video_and_absent_camera_are_reported(bundle, tmp_path, capsys):
    video = tmp_path / "bad.mp4"
    video.write_bytes(b"this is not a video")
    code = pipeline.main(["predict", bundle, str(video), "--camera", "/dev/video-absent-for-test"])
    out = capsys.readouterr().out
    assert code == 1
    assert "OpenCV cannot open video" in out and "camera /dev/video-absent-for-test cannot be opened" in out


def test_bench_e2e_reports_side_by_side(bundle, folder, tmp_path, capsys):
    out = tmp_path / "reports"
    code = pipeline.main(["bench", bundle, "--backend", "onnxruntime", "--iterations", "6", "--warmup", "1",
                          "--e2e", "--images", str(folder), "--out", str(out), "--no-png"])
    text = capsys.readouterr().out
    assert code == 0 and "end to end on image files" in text
    report = json.loads((out / "bench.json").read_text())
    e2e = report["results"][0]["e2e"]
    assert e2e["iterations"] == 6 and e2e["skipped_images"] == 1 and e2e["images"] == 3   # broken.jpg skipped
    med = e2e["median_ms"]
    assert med["total_ms"] > med["network_ms"] > 0 and e2e["decode_preprocess_share"] > 0
    assert "End to end on image files" in (out / "bench.md").read_text()


def test_bench_e2e_needs_an_image_folder(bundle, tmp_path, capsys):
    assert pipeline.main(["bench", bundle, "--backend", "onnxruntime", "--e2e"]) == 2
    assert "--e2e needs --images DIR" in capsys.readouterr().err
    assert pipeline.main(["bench", bundle, "--backend", "onnxruntime", "--e2e", "--images", str(tmp_path)]) == 2
    assert "no JPEG/PNG images" in capsys.readouterr().err
