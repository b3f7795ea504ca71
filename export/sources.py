"""Which models a host build makes and from what: registry names or a user's ``pkg.mod:fn``, with their
weights files checked (and hashed for the cache key) before any work. The loading itself is deferred
(``Source.load``) until the build's cache says the model must be rebuilt.
"""
from __future__ import annotations

import hashlib
import inspect
import os
from dataclasses import dataclass
from typing import Any, Callable

from deploy.atomic import sha256_file
from deploy.bundle import MODEL_NAME_RULE, is_model_name
from deploy.errors import UsageError
from export.options import BuildOptions, check_shape_options

TORCH_SEED = 0  # random weights are seeded, so a rebuild of a random model gives the same ONNX


@dataclass
class Source:
    """A model to build: its name and how to load it (deferred until the cache says so)."""

    name: str
    card: Any
    weights_path: str | None
    weights_sha256: str | None
    code_hash: str | None                         # user models: hash of the defining source file
    load: Callable[[], tuple[Any, Any, dict[str, Any]]]   # -> (nn.Module, card as built, weights record)


def _file_sha256(path: str) -> str:
    from deploy.errors import WeightsError

    if not os.path.isfile(path):
        raise WeightsError(f"weights file {path} does not exist" if not os.path.exists(path)
                           else f"weights path {path} is not a file", hint="check the path given to --weights")
    try:
        return sha256_file(path)
    except OSError as exc:
        raise WeightsError(f"cannot read weights file {path}: {exc.strerror or exc}",
                           hint="check the file's permissions") from None


def _registry_source(name: str, options: BuildOptions) -> Source:
    from models.registry import get_model_card, load_model

    card = get_model_card(name)  # UnknownNameError (exit 2) for an unknown name
    path = options.weights.get(name)
    sha = _file_sha256(path) if path else None

    def load():
        import torch

        torch.manual_seed(TORCH_SEED)
        loaded = load_model(name, num_classes=options.num_classes, weights=path)
        return loaded.model, loaded.card, loaded.weights.to_manifest()

    return Source(name=name, card=card, weights_path=path, weights_sha256=sha, code_hash=None, load=load)


def _source_file_hash(*objects: Any) -> str:
    """Hash of the source files defining ``objects`` (a user model's code is part of its cache key)."""
    digest = hashlib.sha256()
    for obj in objects:
        try:
            path = inspect.getsourcefile(obj)
        except TypeError:
            path = None
        digest.update((path or "?").encode())
        if path and os.path.isfile(path):
            digest.update(sha256_file(path).encode())
    return digest.hexdigest()


def user_model_name(spec: str) -> str:
    """Bundle name of a user model: the spec with ':' made file-name safe ("pkg.mod:fn" -> "pkg.mod.fn")."""
    return spec.strip().replace(":", ".")


def _user_source(spec: str, options: BuildOptions) -> Source:
    import dataclasses
    import importlib

    import torch

    from models.user import load_user_model, parse_spec, user_model_card

    torch.manual_seed(TORCH_SEED)
    model = load_user_model(spec)   # UsageError for a bad spec, import error or non-module
    name = user_model_name(spec)
    card = dataclasses.replace(user_model_card(spec, model, input_size=options.size), name=name)
    if options.num_classes is not None and options.num_classes != card.num_classes:
        raise UsageError(f"--num-classes {options.num_classes} does not match {spec}, whose classifier has "
                         f"{card.num_classes} outputs",
                         hint="leave --num-classes out for --model; the model defines its own classes")
    path = options.weights.get(spec) or options.weights.get(name)
    sha = _file_sha256(path) if path else None
    code_hash = _source_file_hash(importlib.import_module(parse_spec(spec)[0]), type(model))

    def load():
        from models.weights import load_weights_into, random_weights_record

        record = load_weights_into(model, path, model_name=name) if path else random_weights_record(card.num_classes)
        return model, card, record.to_manifest()

    return Source(name=name, card=card, weights_path=path, weights_sha256=sha, code_hash=code_hash, load=load)


def resolve_sources(options: BuildOptions) -> list[Source]:
    """Check every name, weights file and the input size before any work; return what to build."""
    from models.registry import check_input_size

    check_shape_options(options)
    for name in list(options.models) + ([user_model_name(options.user_model)] if options.user_model else []):
        if not is_model_name(name):   # it becomes a file name in the bundle: models/NAME.onnx, engines/NAME...
            raise UsageError(f"model name {name!r} is not a plain file name ({MODEL_NAME_RULE})",
                             hint="name a registered model (see `python pipeline.py models`), e.g. --models hardnet39ds")
    sources = [_registry_source(name, options) for name in options.models]
    if options.user_model:
        sources.append(_user_source(options.user_model, options))
    if not sources:
        raise UsageError("no models to build", hint="pass --models a,b or --model package.module:function")
    names = [s.name for s in sources]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UsageError(f"model {', '.join(dupes)} given twice", hint="name each model once in --models")
    unknown = sorted(set(options.weights) - set(names) - {options.user_model})
    if unknown:
        raise UsageError(f"--weights names {', '.join(unknown)}, which is not being built",
                         hint=f"the models being built are {', '.join(names)}")
    for source in sources:
        check_input_size(source.card, options.size)  # UsageError naming the sizes that work
    return sources
