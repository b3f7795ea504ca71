"""Everything TensorRT: engine builds and their cache (engines, build_log), INT8 calibration, the
API compatibility layer across TensorRT 8.2 to 10 (compat), trtexec scripts and the TensorRT runner.
tensorrt and pycuda are imported lazily, inside the functions that need them."""
