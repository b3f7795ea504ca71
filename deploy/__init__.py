"""Device-side code. At the top, the bundle core: bundle (manifest, lock), atomic (writes), errors,
targets (device profiles, precision policy), preprocess, cpu_isa, environment, versions, tables, and
verify. Sub-packages: tensorrt/ (engines, calibration, API compatibility, trtexec, the TensorRT
runner), runners/ (the runner contract; ONNX Runtime with its graph rewrites, OpenVINO, PyTorch),
bench/ (protocol, statistics, reports, tegrastats, end-to-end), device/ (doctor, smoke tests,
device-run) and predict/ (the Classifier API, decoders, predict's runs).

deploy/ imports no host package (models, export, calibration, analysis): the CLI (cli/) passes the
host's parts in where a command uses them; tests/test_imports.py checks it. Everything in this
package is Python 3.6 syntax and imports tensorrt, pycuda, onnxruntime and torch lazily, so it runs
on a Jetson Nano (JetPack 4.6) as well as on the host.
"""


def open_classifier(bundle, model=None, backend="auto", **options):
    """Classify images with a bundle's model: see deploy.predict.classifier (imported here only when called,
    so ``import deploy`` stays cheap for the CLI)."""
    from deploy.predict.classifier import open_classifier as open_it

    return open_it(bundle, model, backend=backend, **options)
