"""Runners: one small contract (see ``base.Runner``) for TensorRT, ONNX Runtime and PyTorch."""
