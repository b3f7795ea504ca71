"""Safe checkpoint loading for the zoo and for users' own models.

* Only ``torch.load(path, map_location="cpu", weights_only=True)``: a pickle that needs code to
  load (a whole pickled model, a custom class) is refused with a ``WeightsError`` that says how to
  re-save it.
* Accepts a bare state_dict or one wrapped as ``{"state_dict": ...}``, ``{"model": ...}`` or
  ``{"model_state_dict": ...}``, and strips the ``module.`` prefix left by ``DataParallel`` /
  ``DistributedDataParallel``.
* Takes the number of classes from the checkpoint's classifier when the caller did not fix it.
* On a mismatch (another architecture, another class count) names the missing and unexpected keys
  and the shape mismatches.
* Records the checkpoint's sha256 so the bundle manifest can name exactly what was built.
"""
from __future__ import annotations

import logging
import pickle
import re
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeGuard

import torch
from torch import nn

from deploy.atomic import sha256_file
from deploy.errors import WeightsError

LOG = logging.getLogger(__name__)

__all__ = [
    "RANDOM_NOTE",
    "Checkpoint",
    "WeightsRecord",
    "read_checkpoint",
    "classifier_key",
    "infer_num_classes",
    "load_state_dict_checked",
    "load_weights_into",
    "load_weights_into_factory",
    "load_weights_info",
    "random_weights_record",
]

RANDOM_NOTE = "random weights: latency artifacts only"
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")
_PREFIX = "module."
_SHOW = 5
_UNSAFE_GLOBAL = re.compile(r"[Uu]nsupported (?:global: )?GLOBAL (\S+)")  # keys named per category in a mismatch message


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint file read safely: its tensors, hash and how it was wrapped."""

    path: Path
    sha256: str
    state_dict: dict[str, torch.Tensor]
    wrapper: str | None      # the wrapper key the tensors were found under, None for a bare state_dict
    stripped_prefix: bool    # whether "module." was removed from every key


@dataclass(frozen=True)
class WeightsRecord:
    """Where a built model's weights came from: the bundle manifest's ``"weights"`` record."""

    source: str              # "random" or the checkpoint path
    sha256: str | None
    random: bool
    num_classes: int
    num_classes_from: str    # "card", "argument" or "checkpoint"

    @property
    def note(self) -> str | None:
        return RANDOM_NOTE if self.random else None

    def to_manifest(self) -> dict[str, Any]:
        record: dict[str, Any] = {"source": self.source, "sha256": self.sha256, "random": self.random}
        if self.random:
            record["note"] = RANDOM_NOTE
        return record


def random_weights_record(num_classes: int = 1000, num_classes_from: str = "card") -> WeightsRecord:
    return WeightsRecord(source="random", sha256=None, random=True, num_classes=num_classes,
                         num_classes_from=num_classes_from)


# ------------------------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------------------------
def _is_tensor_mapping(obj: object) -> TypeGuard[Mapping[str, torch.Tensor]]:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _unwrap(obj: object, path: Path) -> tuple[dict[str, torch.Tensor], str | None]:
    if _is_tensor_mapping(obj):
        return dict(obj), None
    if isinstance(obj, Mapping):
        for key in WRAPPER_KEYS:
            if key in obj and _is_tensor_mapping(obj[key]):
                return dict(obj[key]), key
        keys = ", ".join(repr(k) for k in list(obj)[:_SHOW])
        raise WeightsError(
            f"checkpoint {path} holds no state_dict (top-level keys: {keys or 'none'})",
            hint="save model.state_dict(), bare or as {'state_dict': model.state_dict()}",
        )
    raise WeightsError(
        f"checkpoint {path} holds a {type(obj).__name__}, not a state_dict",
        hint="save model.state_dict(), bare or as {'state_dict': model.state_dict()}",
    )


def _first_line(exc: BaseException) -> str:
    """A one-line summary of a loader exception (torch's messages run over many lines). torch's
    advice to retry with ``weights_only=False`` is never passed on: that runs the file's code."""
    text = str(exc)
    if "Unsupported operand" in text:
        return "not a valid pickle stream (" + text[text.index("Unsupported operand"):].split("\n")[0] + ")"
    if isinstance(exc, EOFError):
        return "the file is empty or truncated"
    lines = [line.strip() for line in text.splitlines() if line.strip()
             and not line.strip().startswith(("Weights only load failed", "Please file an issue", "Check the doc"))
             and "weights_only" not in line]
    return lines[0] if lines else type(exc).__name__


_SAFE_GLOBAL_PREFIXES = ("torch.", "collections.OrderedDict", "_codecs.encode", "numpy.")


def _code_globals(path: Path) -> str | None:
    """The first function or class a pickle would import that is not a tensor's own (``os.system``,
    ``builtins.eval``...), read with pickletools, which runs nothing; None when there is none."""
    import pickletools

    try:
        if zipfile.is_zipfile(str(path)):
            with zipfile.ZipFile(str(path)) as archive:
                name = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
                data = archive.read(name) if name else b""
        else:
            with open(str(path), "rb") as handle:
                data = handle.read(64 << 20)
        strings: list[str] = []
        for opcode, arg, _ in pickletools.genops(data):
            if opcode.name == "GLOBAL":
                found = str(arg).replace(" ", ".")
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                found = ".".join(strings[-2:])
            else:
                if isinstance(arg, str):
                    strings.append(arg)
                continue
            if not found.startswith(_SAFE_GLOBAL_PREFIXES):
                return found
    except Exception:  # noqa: BLE001 - a damaged stream: then it is damage, not code
        return None
    return None


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read ``path`` with ``weights_only=True`` and return its state_dict (unwrapped, unprefixed).

    Raises ``WeightsError`` when the file is missing, unreadable, corrupt, needs code to unpickle,
    or holds no state_dict.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(
            f"weights file {path} does not exist" if not path.exists() else f"weights path {path} is not a file",
            hint="check the path given to --weights",
        )
    try:
        digest = sha256_file(str(path))
    except OSError as exc:
        raise WeightsError(f"cannot read weights file {path}: {exc.strerror or exc}",
                           hint="check the file's permissions") from exc
    try:
        with warnings.catch_warnings():   # torch's multi-line note on a plain pickle's protocol: ours says more
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refuses a pickle that names a class or function ("Unsupported global: GLOBAL
        # pkg.Name ..."); any other unpickling failure is damage (e.g. "Unsupported operand 110").
        found = _UNSAFE_GLOBAL.search(str(exc))
        code_needed = found.group(1) if found else _code_globals(path)
        if code_needed:
            raise WeightsError(
                f"weights file {path} is a pickle that needs code to load ({code_needed}), refused for safety",
                hint="re-save it as tensors only: torch.save(model.state_dict(), path) "
                     "(never torch.save(model)), from a source you trust",
            ) from exc
        raise WeightsError(f"weights file {path} is corrupt or not a PyTorch checkpoint: {_first_line(exc)}",
                           hint="re-download or re-save the checkpoint") from exc
    except (RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile, AttributeError, KeyError,
            IndexError, TypeError, UnicodeDecodeError) as exc:
        # torch raises many types for damaged files (zip reader RuntimeError, EOFError, ...).
        raise WeightsError(f"weights file {path} is corrupt or not a PyTorch checkpoint: {_first_line(exc)}",
                           hint="re-download or re-save the checkpoint") from exc
    state_dict, wrapper = _unwrap(obj, path)
    stripped = all(k.startswith(_PREFIX) for k in state_dict)
    if stripped:
        state_dict = {k[len(_PREFIX):]: v for k, v in state_dict.items()}
    LOG.debug("read %s: %d tensors, wrapper %s, module. prefix %s", path, len(state_dict), wrapper, stripped)
    return Checkpoint(path=path, sha256=digest, state_dict=state_dict, wrapper=wrapper, stripped_prefix=stripped)


def load_weights_info(path: str | Path) -> tuple[dict[str, torch.Tensor], str]:
    """``(state_dict, sha256)`` of a checkpoint read safely (see ``read_checkpoint``)."""
    ckpt = read_checkpoint(path)
    return ckpt.state_dict, ckpt.sha256


# ------------------------------------------------------------------------------------------------
# Classes and matching
# ------------------------------------------------------------------------------------------------
def classifier_key(model: nn.Module) -> str | None:
    """State-dict key of the weight of ``model``'s last ``nn.Linear`` (its classifier), if any."""
    name = None
    for module_name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            name = module_name
    return None if name is None else f"{name}.weight"


def infer_num_classes(state_dict: Mapping[str, torch.Tensor], key: str | None = None) -> int | None:
    """Output count of the classifier in ``state_dict``.

    ``key`` names the classifier weight (see ``classifier_key``); without it, the last 2-D
    ``*.weight`` tensor in the checkpoint's order is taken as the classifier.
    """
    if key is not None:
        tensor = state_dict.get(key)
        return int(tensor.shape[0]) if tensor is not None and tensor.dim() == 2 else None
    candidates = [v for k, v in state_dict.items() if k.endswith(".weight") and v.dim() == 2]
    return int(candidates[-1].shape[0]) if candidates else None


def _sample(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOW])
    return shown + (f", ... (+{len(keys) - _SHOW} more)" if len(keys) > _SHOW else "")


def _shape(t: torch.Tensor) -> str:
    return "x".join(str(d) for d in t.shape) or "scalar"


def load_state_dict_checked(model: nn.Module, state_dict: Mapping[str, torch.Tensor], *,
                            model_name: str, source: str | Path,
                            hint: str | None = None) -> None:
    """Load ``state_dict`` into ``model`` only if keys and shapes match exactly.

    Missing ``num_batches_tracked`` buffers (checkpoints from PyTorch < 0.4.1) are tolerated.
    Otherwise raises ``WeightsError`` naming the missing and unexpected keys (first few and counts)
    and the shape mismatches.
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [k for k in expected if k in state_dict and tuple(state_dict[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys ({_sample(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys ({_sample(unexpected)})")
        if mismatched:
            shown = [f"{k}: checkpoint {_shape(state_dict[k])} vs model {_shape(expected[k])}"
                     for k in mismatched]
            parts.append(f"{len(mismatched)} shape mismatches ({_sample(shown)})")
        raise WeightsError(
            f"checkpoint {source} does not fit {model_name}: " + "; ".join(parts),
            hint=hint or f"give a checkpoint saved from {model_name} (see `python pipeline.py models`)",
        )
    model.load_state_dict(dict(state_dict), strict=False)


def load_weights_into(model: nn.Module, path: str | Path, *, model_name: str = "the model") -> WeightsRecord:
    """Load checkpoint ``path`` into an already built ``model`` (e.g. a user's model)."""
    ckpt = read_checkpoint(path)
    load_state_dict_checked(model, ckpt.state_dict, model_name=model_name, source=ckpt.path)
    key = classifier_key(model)
    classes = infer_num_classes(ckpt.state_dict, key) or 0
    LOG.info("loaded %s into %s (sha256 %s)", ckpt.path, model_name, ckpt.sha256[:12])
    return WeightsRecord(source=str(ckpt.path), sha256=ckpt.sha256, random=False, num_classes=classes,
                         num_classes_from="checkpoint")


def load_weights_into_factory(name: str, factory: Callable[..., nn.Module], path: str | Path,
                              num_classes: int | None = None) -> tuple[nn.Module, WeightsRecord]:
    """Build ``factory(num_classes=...)`` and load checkpoint ``path`` into it.

    With ``num_classes=None`` the class count is the checkpoint classifier's (a fine-tuned head
    loads without ``--num-classes``); an explicit count that differs from the checkpoint's fails
    with a shape mismatch and a hint.
    """
    ckpt = read_checkpoint(path)
    classes_from = "argument"
    if num_classes is None:
        probe = factory(num_classes=1000)
        found = infer_num_classes(ckpt.state_dict, classifier_key(probe))
        if found is None or found == 1000:
            model, num_classes, classes_from = probe, 1000, "checkpoint" if found else "card"
        else:
            del probe
            num_classes, classes_from = found, "checkpoint"
            LOG.info("%s: %d classes, from the checkpoint's classifier", name, found)
            model = factory(num_classes=found)
    else:
        model = factory(num_classes=num_classes)
    found = infer_num_classes(ckpt.state_dict, classifier_key(model))
    hint = None
    if classes_from == "argument" and found is not None and found != num_classes:
        hint = (f"the checkpoint's classifier has {found} classes: pass --num-classes {found} "
                f"or leave --num-classes out")
    load_state_dict_checked(model, ckpt.state_dict, model_name=name, source=ckpt.path, hint=hint)
    LOG.info("loaded %s into %s (sha256 %s, %d classes)", ckpt.path, name, ckpt.sha256[:12], num_classes)
    record = WeightsRecord(source=str(ckpt.path), sha256=ckpt.sha256, random=False, num_classes=num_classes,
                           num_classes_from=classes_from)
    return model, record
