"""Device-side code: bundle, targets, preprocessing, runners, engines, benchmark.

Everything in this package is Python 3.6 syntax and imports tensorrt, pycuda, onnxruntime and
torch lazily, so it runs on a Jetson Nano (JetPack 4.6) as well as on the host.
"""


def open_classifier(bundle, model=None, backend="auto", **options):
    """Classify images with a bundle's model: see deploy.predict.classifier (imported here only when called,
    so ``import deploy`` stays cheap for the CLI)."""
    from deploy.predict.classifier import open_classifier as open_it

    return open_it(bundle, model, backend=backend, **options)
