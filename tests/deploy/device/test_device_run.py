"""device-run's bookkeeping: which steps a re-run skips, and the archive it leaves to send back.
The whole sequence through the CLI, with fake TensorRT, is in test_doctor_device.py."""
import json
import os
import tarfile

import pytest

from deploy.atomic import write_json
from deploy.device import device_run
from tests.deploy import trt_fakes


@pytest.fixture
def bundle(tmp_path):
    return trt_fakes.make_bundle(tmp_path / "b", calib_count=0)


def _fake_engine(bundle, name, sha):
    os.makedirs(bundle.path("engines"), exist_ok=True)
    rel = "engines/{}.fp16.8.2.1.8.nvidia-tegra-x1.engine".format(name)
    with open(bundle.path(rel), "wb") as handle:
        handle.write(b"engine")
    write_json(bundle.path(rel + ".json"), {"model": name, "engine_sha256": sha})


def test_a_step_is_current_only_with_the_same_engines_and_its_report(bundle):
    _fake_engine(bundle, "tiny", "a" * 64)
    state = {}
    key = device_run.step_key(bundle, "fp16", 500)
    assert not device_run.is_current(bundle, state, "bench", key)
    device_run.record_step(bundle, state, "bench", key)
    assert not device_run.is_current(bundle, device_run.read_state(bundle), "bench", key)   # no bench.json yet
    write_json(bundle.path("reports/bench.json"), {})
    assert device_run.is_current(bundle, device_run.read_state(bundle), "bench", key)
    assert device_run.step_key(bundle, "fp32", 500) != key                   # another precision
    assert device_run.step_key(bundle, "fp16", 100) != key                   # another protocol
    _fake_engine(bundle, "tiny", "b" * 64)                                    # a rebuilt engine
    assert not device_run.is_current(bundle, device_run.read_state(bundle), "bench",
                                     device_run.step_key(bundle, "fp16", 500))


def test_unreadable_state_means_run_everything_again(bundle):
    os.makedirs(bundle.path("reports"))
    with open(bundle.path(device_run.STATE_RELPATH), "w") as handle:
        handle.write("{half")
    assert device_run.read_state(bundle) == {}


def test_archive_holds_reports_logs_and_environment_but_not_old_archives(bundle):
    write_json(bundle.path("reports/bench.json"), {"x": 1})
    os.makedirs(bundle.path("reports/engines"))
    with open(bundle.path("reports/engines/tiny.fp16.build.log"), "w") as handle:
        handle.write("log")
    with open(bundle.path("reports/device-run-old.tar.gz"), "wb") as handle:
        handle.write(b"old")
    with open(bundle.path("reports/.bench.json.tmp"), "w") as handle:
        handle.write("half")
    rel, members = device_run.write_archive(bundle, {"board": "NVIDIA Jetson Nano"}, "NVIDIA Jetson Nano",
                                            when=0)
    assert rel.startswith("reports/device-run-nvidia-jetson-nano-19700101")
    with tarfile.open(bundle.path(rel)) as tar:
        names = tar.getnames()
        env = json.load(tar.extractfile("environment.json"))
    assert names == members
    assert {"reports/bench.json", "reports/engines/tiny.fp16.build.log", "manifest.json",
            "environment.json"} <= set(names)
    assert "reports/device-run-old.tar.gz" not in names and "reports/.bench.json.tmp" not in names
    assert env == {"board": "NVIDIA Jetson Nano"}
    assert [f for f in os.listdir(bundle.path("reports")) if f.endswith(".tmp")] == [".bench.json.tmp"]
