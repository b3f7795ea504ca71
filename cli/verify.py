"""`verify` (host or device): agreement and accuracy of every stage and precision."""
import importlib

from cli.common import EXIT_OK, bundles_under_build, only_bundle


def add_parsers(sub):
    p = sub.add_parser(
        "verify", help="measure top-1 agreement and accuracy of every stage and precision",
        description="Run every stage available here (PyTorch eager and BN-folded on the host, the FP32 "
                    "and INT8 ONNX models, TensorRT engines on a device) on held-out images; report top-1 "
                    "agreement with the FP32 reference, logit cosine similarity and, for labelled images, "
                    "accuracy. Writes BUNDLE/reports/verify.json and verify.md.")
    p.add_argument("bundle", nargs="?", default=None,
                   help="bundle folder (default: the only bundle under build/)")
    p.add_argument("--images", metavar="DIR", default=None,
                   help="held-out images, one sub-folder per class (folder names = class names or indices); "
                        "default: the images the bundle carries (build --verify-images), else generic sample "
                        "photographs, agreement only")
    p.add_argument("--count", type=int, default=200, metavar="N",
                   help="images to use, picked deterministically (default 200)")
    p.add_argument("--model", action="append", default=None, metavar="NAME",
                   help="verify only this model (repeatable; default: every model in the bundle)")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="ONNX Runtime intra-op threads")
    p.add_argument("--openvino", action="store_true",
                   help="also run OpenVINO on the CPU: fp32, bf16 (where the CPU has AVX512_BF16/AMX) and int8")
    p.set_defaults(func=run_verify)


def host_parts():
    """verify's host-only parts (deploy/ imports no host package): the PyTorch stages and the generic
    sample photographs; (None, None) where torch, scikit-image or Python >= 3.9 is missing (the device)."""
    parts = []
    for module, name in (("calibration.torch_stages", "torch_stages"), ("calibration.images", "generic_verify_images")):
        try:
            parts.append(getattr(importlib.import_module(module), name))
        except (ImportError, SyntaxError):   # SyntaxError: the host package on the device's Python 3.6
            parts.append(None)
    return tuple(parts)


def run_verify(args):
    from deploy.bundle import Bundle, writer_lock
    from deploy.verify import REPORT_JSON, REPORT_MD, text_report, verify_bundle

    root = args.bundle or only_bundle("verify", bundles_under_build())
    with writer_lock(root, "pipeline.py verify", create=False):   # verify adds to the manifest
        bundle = Bundle.open(root)
        make_torch_stages, generic_images = host_parts()
        report = verify_bundle(bundle, names=args.model, images_dir=args.images, count=args.count,
                               threads=args.threads, progress=not args.quiet, openvino=args.openvino,
                               make_torch_stages=make_torch_stages, generic_images=generic_images)
    print(text_report(report))
    print("wrote {} and {}".format(bundle.path(REPORT_JSON), bundle.path(REPORT_MD)))
    return EXIT_OK
