"""Calibration data and ONNX Runtime INT8 (host only): see calibration.stage and docs/readme/int8.md."""
