"""Device-side code: bundle, targets, preprocessing, runners, engines, benchmark.

Everything in this package is Python 3.6 syntax and imports tensorrt, pycuda, onnxruntime and
torch lazily, so it runs on a Jetson Nano (JetPack 4.6) as well as on the host.
"""
