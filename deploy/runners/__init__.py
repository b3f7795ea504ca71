"""Runners: one small contract (see ``contract.Runner``) for TensorRT, ONNX Runtime and PyTorch."""
