"""The mutation test of the device code (scripts/trt_mutants.py): every mutant still applies, and a
fixed small sample is killed by the device tests. The full run is the script itself (docs/device.md)."""
import io
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import trt_mutants  # noqa: E402

SAMPLE = ["M22", "M30", "M37", "M54"]   # missing synchronize, missing pop, memoryview, unquoted shell (stable ids)
SAMPLE_TESTS = ["tests/deploy/tensorrt/test_runner.py", "tests/deploy/tensorrt/test_calibrator.py",
                "tests/deploy/tensorrt/test_trtexec.py"]


def test_every_mutant_applies_to_the_current_code():
    assert len(trt_mutants.MUTANTS) >= 40
    assert trt_mutants.check_applicable() == []
    assert len({m.id for m in trt_mutants.MUTANTS}) == len(trt_mutants.MUTANTS)


def test_a_fixed_sample_of_mutants_is_killed():
    chosen = [m for m in trt_mutants.MUTANTS if m.id in SAMPLE]
    assert [m.id for m in chosen] == SAMPLE
    out = io.StringIO()
    killed, survived = trt_mutants.run(chosen, tests=SAMPLE_TESTS, timeout=300, out=out)
    assert survived == [], out.getvalue()
    assert killed == SAMPLE
