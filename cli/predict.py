"""`predict` (device or host): classify images, video or a camera with a bundle's model."""
import sys

from cli.common import EXIT_FAILURE, EXIT_OK
from deploy.errors import UsageError


def add_parsers(sub):
    p = sub.add_parser(
        "predict", help="classify images, folders, video files or a camera with a bundle's model",
        description="Per image: the top-k labels (the manifest's class names, else the class index) with "
                    "probabilities, and where the time goes (decode, preprocess, network, postprocess, total). "
                    "Per video or camera: frames per second and the same breakdown averaged. A bad image or "
                    "frame is reported and skipped. Video and --camera need OpenCV.")
    p.add_argument("bundle", help="bundle folder (e.g. build/jetson-nano)")
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="image files, folders (recursive) or video files")
    p.add_argument("--model", default=None, metavar="NAME", help="model of the bundle (default: its only model)")
    p.add_argument("--backend", choices=("auto", "tensorrt", "onnxruntime", "openvino"), default="auto",
                   help="auto (default): the model's current TensorRT engine where TensorRT imports, else ONNX Runtime")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8", "best"), default=None,
                   help="default: the target's default on TensorRT, fp32 on the CPU")
    p.add_argument("--input", dest="input_kind", choices=("auto", "float32", "uint8"), default="auto",
                   help="auto (default): the bundle's uint8-input graph (build --input uint8) where the backend runs it")
    p.add_argument("--decoder", choices=("auto", "pillow", "opencv", "pillow+opencv", "reference"), default="auto",
                   help="auto (default): pillow+opencv (Pillow's DCT-scaled JPEG decode, OpenCV's resize) where "
                        "OpenCV is installed, else pillow; reference: the exact preprocessing of verify (slower)")
    p.add_argument("--topk", type=int, default=5, metavar="K", help="labels per image (default 5)")
    p.add_argument("--max-frames", type=int, default=None, metavar="N", help="video/camera: stop after N frames")
    p.add_argument("--camera", default=None, metavar="SRC",
                   help="camera index (0) or a GStreamer pipeline ending in appsink (needs OpenCV)")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="CPU threads for ONNX Runtime/OpenVINO")
    p.add_argument("--json", action="store_true", help="print one JSON record per input instead of text")
    p.set_defaults(func=run_predict)


def run_predict(args):
    import json

    from deploy.predict.classifier import open_classifier
    from deploy.predict.run import expand_inputs, record_lines, run_predict, summary_line

    if args.topk < 1:
        raise UsageError("--topk must be at least 1, not {}".format(args.topk), hint="e.g. --topk 5")
    items = expand_inputs(args.inputs, camera=args.camera)
    with open_classifier(args.bundle, args.model, backend=args.backend, precision=args.precision,
                         input_kind=args.input_kind, decoder=args.decoder, threads=args.threads) as clf:
        if not args.json:
            print("{model} on {backend} ({precision}, {input} input, {decoder} decoder) from {bundle}".format(
                **clf.describe()))

        def show(record):
            if args.json:
                print(json.dumps(record))
            else:
                print("\n".join(record_lines(record)))
            sys.stdout.flush()

        records = run_predict(clf, items, topk=args.topk, max_frames=args.max_frames, on_record=show)
    if not args.json:
        print(summary_line(records))
    return EXIT_FAILURE if any("error" in r and not r.get("frames") for r in records) else EXIT_OK
