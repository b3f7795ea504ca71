"""Calibration data and ONNX Runtime INT8 (host only): see calibration.stage and the README (Calibration, INT8 and fidelity)."""
