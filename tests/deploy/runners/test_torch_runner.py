import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch not installed: the torch backend runs on the host")

from deploy.errors import BackendUnavailableError, PrecisionUnsupportedError  # noqa: E402
from deploy.runners.torch_runner import TorchRunner  # noqa: E402


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 4)).eval()


def _x():
    return np.random.RandomState(0).standard_normal((1, 3, 16, 16)).astype(np.float32)


@pytest.mark.parametrize("channels_last", [False, True])
def test_cpu_matches_eager_pytorch(channels_last):
    net = _net()
    x = _x()
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    with TorchRunner(net, (1, 3, 16, 16), device="cpu", channels_last=channels_last, threads=1) as runner:
        assert list(runner.input_metadata()) == ["input"]
        np.testing.assert_allclose(runner.infer({"input": x})["logits"], want, rtol=1e-5, atol=1e-5)
        runner.prepare({"input": x})
        out = runner.run_prepared()
        np.testing.assert_allclose(out.numpy(), want, rtol=1e-5, atol=1e-5)
        assert not runner.measures_compute
        assert runner.describe()["device"] == "cpu"


def test_registry_model_by_name():
    models = pytest.importorskip("models", reason="the model zoo is not importable")
    with TorchRunner("mobilenetv2", (1, 3, 64, 64), device="cpu", threads=1, create_model=models.create_model) as runner:
        out = runner.infer({"input": np.zeros((1, 3, 64, 64), np.float32)})["logits"]
    assert out.shape == (1, 1000) and np.all(np.isfinite(out))


def test_cpu_refuses_fp16_and_int8():
    with pytest.raises(PrecisionUnsupportedError, match="CUDA"):
        TorchRunner(_net(), (1, 3, 16, 16), device="cpu", precision="fp16").activate()
    with pytest.raises(PrecisionUnsupportedError):
        TorchRunner(_net(), (1, 3, 16, 16), device="cpu", precision="int8").activate()


def test_cuda_when_there_is_none():
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present: the fp16/CUDA-graph path is covered by test_cuda_fp16_graphs")
    with pytest.raises(BackendUnavailableError, match="CUDA"):
        TorchRunner(_net(), (1, 3, 16, 16), device="cuda").activate()


def test_cuda_fp16_graphs():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU here: FP16, channels-last and CUDA graphs need one")
    net = _net()
    x = _x()
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    with TorchRunner(net, (1, 3, 16, 16), device="cuda", precision="fp16") as runner:
        np.testing.assert_allclose(runner.infer({"input": x})["logits"], want, rtol=2e-2, atol=2e-2)
        runner.prepare({"input": x})
        compute_ms, total_ms = runner.execute_timed()
        assert 0 < compute_ms <= total_ms


def test_a_registry_name_without_the_model_zoo_says_so():
    with pytest.raises(BackendUnavailableError, match="model zoo"):
        TorchRunner("mobilenetv2", (1, 3, 16, 16), device="cpu").activate()
