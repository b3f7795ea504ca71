"""`targets` and `models`: the target profiles and the model zoo, with what this machine runs."""
from cli.common import EXIT_OK


def add_parsers(sub):
    _add_targets(sub)
    _add_models(sub)


def _add_targets(sub):
    p = sub.add_parser("targets", help="list the target profiles and what each can run")
    p.set_defaults(func=run_targets)


def run_targets(args):
    from deploy.cpu_isa import cpu_target_precisions, local_cpu_isa
    from deploy.tables import format_table
    from deploy.targets import list_targets, supported_precisions

    rows = []
    for t in list_targets():
        precisions = cpu_target_precisions(local_cpu_isa()) if t.backend == "onnxruntime" else supported_precisions(t)
        rows.append([
            t.name, t.backend, t.compute_capability or "local", t.tensorrt or "installed",
            str(t.max_opset), ",".join(precisions), t.default_precision,
            "{} GB".format(t.memory_gb) if t.memory_gb else "-",
            "{} MiB".format(t.workspace_mib) if t.workspace_mib else "-",
        ])
    print(format_table(
        ["target", "backend", "sm", "TensorRT", "opset<=", "precisions", "default", "memory", "workspace"],
        rows))
    for t in list_targets():
        print("  {:<17} {}. {}".format(t.name, t.description, t.notes))
    _print_local_gpu()
    _print_local_cpu()
    return EXIT_OK


def _print_local_cpu():
    """What the cpu target means on this machine: its vector ISA and the precisions it runs natively."""
    from deploy.cpu_isa import choose_cpu_precision, local_cpu_isa, precision_support

    isa = local_cpu_isa()
    print("  this CPU: {} ({}): {}".format(isa.model, isa.arch, ", ".join(isa.features) or "no vector extensions found"))
    print("    cpu precisions: {}".format("; ".join(
        "{} {} ({})".format(p, "fast" if native else "slow" if p == "int8" else "no", why)
        for p, native, why in precision_support(isa))))
    best = choose_cpu_precision(isa, "best", backend="openvino")
    print("    --precision best on the cpu target: {} ({})".format(best.precision, best.reason))


def _print_local_gpu():
    """What x86-gpu means on this machine: the local GPU as TensorRT reports it (when it imports)."""
    from deploy.errors import BackendUnavailableError
    from deploy.targets import get_target, local_profile, supported_precisions
    from deploy.tensorrt.compat import probe_local_device, tensorrt_available

    if not tensorrt_available():
        print("  (no TensorRT here: x86-gpu's capabilities are read from the GPU when engines are built)")
        return
    try:
        device = probe_local_device()
    except BackendUnavailableError as exc:
        print("  (TensorRT imports but the GPU could not be read: {})".format(exc.one_line()))
        return
    here = local_profile(get_target("x86-gpu"), device)
    print("  this machine: {} (sm {}), TensorRT {}: fast precisions {}".format(
        device.name, device.compute_capability, device.tensorrt, ",".join(supported_precisions(here))))


def _add_models(sub):
    p = sub.add_parser("models", help="list the registered models and their model cards")
    p.set_defaults(func=run_models, host_only=True)


def run_models(args):
    from deploy.tables import format_table
    from models import get_model_card, list_models

    rows = []
    for name in list_models():
        card = get_model_card(name)
        rows.append([name, card.family, "x".join(str(v) for v in card.input_size), str(card.num_classes),
                     card.description])
    print(format_table(["model", "family", "input", "classes", "description"], rows))
    return EXIT_OK
