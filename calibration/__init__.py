"""Calibration data and ONNX Runtime INT8 (host only): see calibration.stage and docs/int8.md."""
