"""A small, stable Python API to classify images with a deployed bundle (Python 3.6, no torch).

    from deploy import open_classifier

    with open_classifier("build/jetson-nano", "hardnet39ds", backend="auto") as clf:
        top = clf.classify("cat.jpg", topk=5)        # [(label, probability), ...], best first
        tops = clf.classify_batch([pil_image, uint8_rgb_array, "dog.png"])
        prediction = clf.predict("cat.jpg")          # .top and .timing (decode/preprocess/network/...)

It is made of the pieces ``bench`` and ``verify`` use, nothing written twice: the bundle's manifest
checks and sha256 (deploy.bundle, deploy.bench.protocol.plan_models), the runners (deploy.runners: the
TensorRT engine found by deploy.tensorrt.engine_files.find_engine, or ONNX Runtime), and the preprocessing of
the manifest (deploy.preprocess, with deploy.predict.decode's fast decode and resize).

backend="auto": the current TensorRT engine of the model where TensorRT imports and one was built
for this device and TensorRT version, else ONNX Runtime on the CPU.
"""
import collections
import logging
import os
import time

import numpy as np

from deploy.bundle import check_folder_inside
from deploy.errors import BundleError, PipelineError, UsageError

LOG = logging.getLogger(__name__)

BACKENDS = ("auto", "tensorrt", "onnxruntime", "openvino")
INPUT_KINDS = ("auto", "float32", "uint8")
DEFAULT_TOPK = 5
MAX_DYNAMIC_BATCH = 32

Timing = collections.namedtuple("Timing", ["decode_ms", "preprocess_ms", "network_ms", "postprocess_ms", "total_ms"])
Prediction = collections.namedtuple("Prediction", ["top", "timing"])
# top: [(label, probability), ...] best first; timing: Timing of this image (a batch's share in a batch)
TopEntry = collections.namedtuple("TopEntry", ["label", "probability", "index"])


class Classifier(object):
    """One model of a bundle, loaded on one backend. Use as a context manager (or call close())."""

    def __init__(self, bundle, model=None, backend="auto", precision=None, input_kind="auto", decoder="auto",
                 threads=None):
        from deploy.bundle import Bundle
        from deploy.predict.decode import normalise_table, resolve_decoder
        from deploy.preprocess import config_from_dict

        if backend not in BACKENDS:
            raise UsageError("unknown backend {!r}".format(backend), hint="choose one of: " + ", ".join(BACKENDS))
        if input_kind not in INPUT_KINDS:
            raise UsageError("unknown input kind {!r}".format(input_kind), hint="choose one of: " + ", ".join(INPUT_KINDS))
        self.bundle = bundle if isinstance(bundle, Bundle) else Bundle.open(bundle)
        names = self.bundle.require_models()
        if model is None:
            if len(names) != 1:
                raise UsageError("bundle {} holds {} models: name one".format(self.bundle.root, len(names)),
                                 hint="models in it: {}".format(", ".join(names)))
            model = names[0]
        self.name = model
        self.record = self.bundle.model(model)
        if not isinstance(self.record.get("preprocessing"), dict):
            raise BundleError("model {} in {} has no preprocessing in the manifest".format(model, self.bundle.root),
                              hint="rebuild the bundle with `python pipeline.py build` (it records the model "
                                   "card's preprocessing)")
        self.cfg = config_from_dict(self.record["preprocessing"])
        self.decoder = resolve_decoder(decoder)
        self.labels = self.record.get("labels") if isinstance(self.record.get("labels"), list) else None
        self.random_weights = bool((self.record.get("weights") or {}).get("random"))
        self._table = normalise_table(self.cfg)
        self._runner = None
        self._input_name = None
        self._batch = 1
        self._dynamic = False
        self.backend, self.precision, self.input_kind, self.model_path, self.fallback_reason = \
            self._choose(backend, precision, input_kind, threads)

    # -- choosing and loading ------------------------------------------------------------------
    def _choose(self, backend, precision, input_kind, threads):
        """(backend, precision, input kind, model file, why TensorRT was not used or None)."""
        from deploy.bench import protocol as bench

        reason = None
        if backend == "auto":
            backend, reason = self._auto_backend(precision)
        choice = bench.choose_backend(backend)
        precision = bench.resolve_bench_precision(choice.name, precision, self.bundle)
        uint8 = self.record.get("uint8_onnx") if isinstance(self.record.get("uint8_onnx"), dict) else None
        if input_kind == "uint8" and (uint8 is None or choice.name not in bench.CPU_BACKENDS or precision != "fp32"):
            raise BundleError(
                "{} has no uint8-input graph for {} {}".format(self.name, choice.name, precision),
                hint="build it on the host with `python pipeline.py build ... --input uint8` (ONNX Runtime/"
                     "OpenVINO, fp32; TensorRT engines take float input), or use --input float32")
        use_uint8 = uint8 is not None and choice.name in bench.CPU_BACKENDS and precision == "fp32" and \
            input_kind in ("auto", "uint8")
        input_rec = self.record.get("input") or {}
        first = (input_rec.get("shape") or [1])[0]
        fixed = isinstance(first, int) and first > 0 and not input_rec.get("dynamic_batch")
        protocol = bench.make_protocol(iterations=1, warmup=0, size=self.cfg.size, batch=first if fixed else 1,
                                       threads=threads)
        self._plan = bench.plan_models(self.bundle, [self.name], choice.name, precision, protocol)[0]
        if use_uint8:
            path = self.bundle.verify_file(uint8["path"], uint8["sha256"])
            self._plan = self._plan._replace(path=path, input_name=uint8["input"]["name"],
                                             input_shape=tuple(uint8["input"]["shape"]))
        self._protocol = protocol
        return choice.name, precision, "uint8" if use_uint8 else "float32", self._plan.path, reason

    def _auto_backend(self, precision):
        """TensorRT when it imports and a current engine of this model exists, else ONNX Runtime."""
        from deploy.bench import protocol as bench

        problem = bench.import_problem("tensorrt")
        if problem is not None:
            return "onnxruntime", "TensorRT is not available here ({})".format(problem)
        from deploy.tensorrt.engine_files import find_engine

        try:
            wanted = bench.resolve_bench_precision("tensorrt", precision, self.bundle)
            find_engine(self.bundle, self.name, wanted)
        except PipelineError as exc:
            return "onnxruntime", "no current TensorRT engine of {}: {}".format(self.name, exc.one_line())
        return "tensorrt", None

    def open(self):
        from deploy.bench import protocol as bench

        if self._runner is not None:
            return self
        cache = os.path.join(self.bundle.root, "cache", "onnxruntime")
        cache = cache if os.access(self.bundle.root, os.W_OK) else None
        if cache is not None:
            check_folder_inside(self.bundle.root, cache)   # never write the cache through a link to elsewhere
        runner = bench.make_runner(self.backend, self._plan, self.precision, self._protocol,
                                   optimized_model_dir=cache)
        bench.activate_runner(runner, self.backend, self._plan)
        meta = runner.input_metadata()
        self._input_name = self._plan.input_name if self._plan.input_name in meta else list(meta)[0]
        shape = meta[self._input_name].shape
        self._dynamic = shape[0] is None
        self._batch = 1 if self._dynamic else int(shape[0])
        self._runner = runner
        # One inference on a blank input: the first run pays for allocations and kernel choice,
        # which would otherwise be charged to the first image's network time.
        runner.infer({self._input_name: np.zeros(tuple(d or 1 for d in shape), dtype=meta[self._input_name].dtype)})
        import PIL.Image  # noqa: F401  (the decoders' imports and first calls, likewise: not the first image's time)
        if "opencv" in self.decoder:
            import cv2  # noqa: F401
        self._input_array([np.zeros((self.cfg.size, self.cfg.size, 3), dtype=np.uint8)])
        if self.random_weights:
            LOG.warning("%s in %s has RANDOM weights: its predictions mean nothing (latency only); rebuild "
                        "with --weights for real ones", self.name, self.bundle.root)
        if self.fallback_reason:
            LOG.info("backend onnxruntime: %s", self.fallback_reason)
        return self

    def close(self):
        if self._runner is not None:
            try:
                self._runner.deactivate()
            finally:
                self._runner = None

    def __enter__(self):
        return self.open()

    def __exit__(self, exc_type, exc, tb):
        self.close()
        return False

    def describe(self):
        """What runs, as a dict for reports and --json."""
        out = collections.OrderedDict()
        out["model"] = self.name
        out["bundle"] = os.path.abspath(self.bundle.root)
        out["backend"] = self.backend
        out["precision"] = self.precision
        out["input"] = self.input_kind
        out["decoder"] = self.decoder
        out["model_file"] = self.model_path
        out["size"] = self.cfg.size
        out["random_weights"] = self.random_weights
        return out

    # -- classification ------------------------------------------------------------------------
    def classify(self, image, topk=DEFAULT_TOPK):
        """Top-k [(label, probability)] of one image: a path, a PIL image or a uint8 (H, W, 3) RGB array."""
        return [(entry.label, entry.probability) for entry in self.predict(image, topk).top]

    def classify_batch(self, images, topk=DEFAULT_TOPK):
        """classify() of every image, run in batches of the model's batch size."""
        return [[(e.label, e.probability) for e in p.top] for p in self.predict_batch(images, topk)]

    def predict(self, image, topk=DEFAULT_TOPK):
        """Prediction (top-k TopEntry list, Timing) of one image."""
        return self.predict_batch([image], topk)[0]

    def predict_batch(self, images, topk=DEFAULT_TOPK):
        """Predictions of ``images``; each Timing is its batch's divided evenly among its images."""
        if self._runner is None:
            raise PipelineError("the classifier is not open", hint="use it as `with open_classifier(...) as clf:`")
        if int(topk) < 1:
            raise UsageError("topk must be at least 1, not {}".format(topk), hint="e.g. topk=5")
        images = list(images)
        step = MAX_DYNAMIC_BATCH if self._dynamic else self._batch
        out = []
        for start in range(0, len(images), step):
            out.extend(self._run_batch(images[start:start + step], int(topk)))
        return out

    def _run_batch(self, images, topk):
        perf = time.perf_counter
        t0 = perf()
        decoded = [self._decode(image) for image in images]
        t1 = perf()
        x = self._input_array(decoded)
        t2 = perf()
        result = self._runner.infer({self._input_name: x})
        t3 = perf()
        logits = np.asarray(list(result.values())[0], dtype=np.float64).reshape(x.shape[0], -1)[:len(images)]
        tops = [self._top(row, topk) for row in logits]
        t4 = perf()
        share = 1000.0 / len(images)
        timing = Timing((t1 - t0) * share, (t2 - t1) * share, (t3 - t2) * share, (t4 - t3) * share, (t4 - t0) * share)
        return [Prediction(top, timing) for top in tops]

    def _decode(self, image):
        from deploy.predict.decode import as_rgb, decode_file
        from deploy.preprocess import load_image, resize_side

        if isinstance(image, (str, bytes)) or hasattr(image, "__fspath__"):
            path = os.fspath(image)
            if self.decoder == "reference":
                return load_image(path, min_side=resize_side(self.cfg))
            return decode_file(path, self.cfg, self.decoder).image
        if isinstance(image, np.ndarray) or hasattr(image, "mode"):
            return as_rgb(image)
        from deploy.preprocess import ImageError

        raise ImageError("cannot classify a {}".format(type(image).__name__),
                         hint="pass a file path, a PIL image or a uint8 HxWx3 RGB array")

    def _input_array(self, decoded):
        from deploy.predict.decode import reference_tensor, resize_crop, to_tensor

        count = len(decoded) if self._dynamic else self._batch
        if self.input_kind == "uint8":
            x = np.empty((count, self.cfg.size, self.cfg.size, 3), dtype=np.uint8)
            for i, image in enumerate(decoded):
                x[i] = resize_crop(image, self.cfg, self.decoder)
        else:
            x = np.empty((count, 3, self.cfg.size, self.cfg.size), dtype=np.float32)
            for i, image in enumerate(decoded):
                if self.decoder == "reference":   # deploy.preprocess exactly, as verify and calibration see it
                    x[i] = reference_tensor(image, self.cfg)
                else:
                    to_tensor(resize_crop(image, self.cfg, self.decoder), self._table, out=x[i])
        x[len(decoded):] = x[0]   # a fixed batch larger than the images: repeat the first
        return x

    def _top(self, logits, topk):
        shifted = np.exp(logits - logits.max())
        probs = shifted / shifted.sum()
        order = np.argsort(-probs, kind="stable")[:topk]
        return [TopEntry(self.label(int(i)), float(probs[i]), int(i)) for i in order]

    def label(self, index):
        """The class name of ``index``: the manifest's label, else the index as text."""
        if self.labels and 0 <= index < len(self.labels):
            return str(self.labels[index])
        return str(index)

    def logits(self, image):
        """Raw network output of one image (float64 vector); for comparisons with the reference path."""
        x = self._input_array([self._decode(image)])
        result = self._runner.infer({self._input_name: x})
        return np.asarray(list(result.values())[0], dtype=np.float64).reshape(x.shape[0], -1)[0]


def open_classifier(bundle, model=None, backend="auto", precision=None, input_kind="auto", decoder="auto",
                    threads=None):
    """A Classifier for ``model`` of ``bundle`` (folder or Bundle), to use in a ``with`` block.

    backend: "auto" (TensorRT engine if current, else ONNX Runtime), "tensorrt", "onnxruntime", "openvino".
    input_kind: "auto" (the bundle's uint8-input graph where it has one and the backend runs it),
    "float32" or "uint8". decoder: "auto" (pillow+opencv where OpenCV is installed, else pillow), "pillow",
    "opencv", "pillow+opencv" or "reference" (verify's exact preprocessing).
    """
    return Classifier(bundle, model, backend=backend, precision=precision, input_kind=input_kind,
                      decoder=decoder, threads=threads)
