"""Engine file names and build options (no TensorRT, no fakes needed)."""
import pytest

from deploy.errors import UsageError
from deploy.tensorrt import engine_files


# -- names and staleness (pure) ------------------------------------------------------------------
def test_engine_names_carry_model_precision_version_and_device():
    rel = engine_files.engine_relpath("hardnet39ds", "fp16", "8.2.1.8", "NVIDIA Tegra X1")
    assert rel == "engines/hardnet39ds.fp16.8.2.1.8.nvidia-tegra-x1.engine"
    assert engine_files.timing_cache_relpath("8.2.1.8", "NVIDIA Tegra X1") == "engines/timing.8.2.1.8.nvidia-tegra-x1.cache"
    assert engine_files.calibration_cache_relpath("m", "minmax", "10.0", "RTX 4090") == "engines/m.int8-minmax.10.0.rtx-4090.calib"
    assert engine_files.slug("  ") == "unknown"


def test_make_options_rejects_tiny_workspace():
    from deploy.targets import get_target
    nano = get_target("jetson-nano")
    assert engine_files.make_options(nano, "fp16").workspace_mib == 256
    with pytest.raises(UsageError):
        engine_files.make_options(nano, "fp16", workspace_mib=1)


def test_dynamic_batch_profile_shapes():
    record = {"input": {"name": "x", "shape": [1, 3, 8, 8], "dynamic_batch": True}}
    assert engine_files.input_shapes(record, 4) == ("x", (1, 3, 8, 8), (4, 3, 8, 8), (4, 3, 8, 8))
    assert engine_files.input_shapes({"input": {"shape": [1, 3, 8, 8]}}, 4) is None
