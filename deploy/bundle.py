"""The bundle: a folder of files with one manifest, the only channel between stages.

Layout (see docs/build.md, "What the bundle holds"):
    manifest.json, models/<name>.onnx, models/<name>.int8.onnx, calibration/<name>.npy,
    engines/<name>.<precision>.<trt>.<device>.engine, reports/

Python 3.6-compatible.
"""
import collections
import contextlib
import json
import logging
import os
import re
import stat
import time

from deploy.atomic import json_bytes, sha256_file, write_files, write_json
from deploy.errors import BundleError, ModelNotInBundleError

LOG = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
SCHEMA_VERSION = 1
LOCK_NAME = ".lock"
# held-out images packed by `build --verify-images`, for verify and device-run on the device
VERIFY_IMAGES_KEY = "verify_images"
VERIFY_IMAGES_DIR = "verify_images"


def default_bundle_dir(target_name):
    # type: (str) -> str
    return os.path.join("build", target_name)


# A model name becomes part of file names (models/NAME.onnx, engines/NAME.*.engine, trtexec.sh's
# arguments): one plain file-name component, so it can never lead out of the bundle's folders.
# Letters and digits of any script: a user model is named after its Python module (export/sources.py).
MODEL_NAME_RULE = "letters, digits, '_', '-' and '.', not starting with '.', at most 100 characters"
_MODEL_NAME = re.compile(r"[\w-][\w.-]{0,99}")

# The folders inside a bundle that commands write into (see the layout above; cache/ is ONNX Runtime's
# optimised graphs). Each must be a real folder of the bundle, never a symbolic link to one elsewhere.
BUNDLE_FOLDERS = ("models", "calibration", "engines", "reports", "reports/engines", "cache", "cache/onnxruntime",
                  "smoke", VERIFY_IMAGES_DIR)


def is_model_name(name):
    # type: (object) -> bool
    """Whether ``name`` may name a model of a bundle (MODEL_NAME_RULE)."""
    return isinstance(name, str) and bool(_MODEL_NAME.fullmatch(name))   # fullmatch: not even a final newline


def check_folder_inside(root, folder):
    # type: (str, str) -> None
    """Raise BundleError if ``folder``, a folder inside bundle ``root`` (existing or not), is or lies
    under a symbolic link, or resolves outside the bundle: writing there would write, and clean up,
    somewhere else. A ``folder`` outside ``root`` (bench --out elsewhere) is not the bundle's: no check."""
    root = str(root)
    rel = os.path.relpath(os.path.abspath(str(folder)), os.path.abspath(root))
    if rel == os.curdir or rel == os.pardir or rel.startswith(os.pardir + os.sep):
        return
    real_root = os.path.realpath(root)
    path = root
    for part in rel.split(os.sep):
        path = os.path.join(path, part)
        if os.path.islink(path):
            raise BundleError(
                "{} is a symbolic link to {}: a bundle's folders must be inside it".format(path, os.readlink(path)),
                hint="replace the link with a real folder (copy its files in if you need them), or use "
                     "another bundle folder (--out)")
        if not os.path.lexists(path):
            return   # made as a real folder when its first file is written
        real = os.path.realpath(path)
        if os.path.commonpath([real_root, real]) != real_root:
            raise BundleError("{} resolves to {}, outside the bundle {}".format(path, real, root),
                              hint="make it a real folder inside the bundle, or use another bundle folder (--out)")


def check_bundle_folders(root, folders=BUNDLE_FOLDERS):
    # type: (str, tuple) -> None
    """check_folder_inside for each of the bundle's ``folders``: call it before a command writes anything."""
    for rel in folders:
        check_folder_inside(root, os.path.join(str(root), *rel.split("/")))


def onnx_relpath(model_name):
    return "models/{}.onnx".format(model_name)


def int8_onnx_relpath(model_name):
    return "models/{}.int8.onnx".format(model_name)


def calibration_relpath(model_name):
    return "calibration/{}.npy".format(model_name)


class Bundle(object):
    """A bundle folder and its manifest. Mutations are saved atomically by ``save()``."""

    def __init__(self, root, manifest):
        # type: (str, dict) -> None
        self.root = str(root)
        self.manifest = manifest

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def open(cls, root):
        # type: (str) -> Bundle
        root = str(root)
        path = os.path.join(root, MANIFEST_NAME)
        if not os.path.isdir(root):
            raise BundleError(
                "bundle folder {} does not exist".format(root),
                hint="build it on the host with: python pipeline.py build --target jetson-nano --out {}".format(root),
            )
        if not os.path.isfile(path):
            raise BundleError(
                "{} has no {}: it is not a bundle".format(root, MANIFEST_NAME),
                hint="point to the folder that `python pipeline.py build` wrote (default build/<target>)",
            )
        try:
            with open(path, "r") as handle:
                manifest = json.load(handle, object_pairs_hook=collections.OrderedDict)
        except ValueError as exc:
            raise BundleError(
                "{} is not valid JSON ({})".format(path, exc),
                hint="rebuild the bundle with `python pipeline.py build`",
            ) from exc
        _check_manifest_shape(manifest, path)
        version = manifest.get("schema_version")
        if version != SCHEMA_VERSION:
            raise BundleError(
                "{} has schema version {!r}; this pipeline reads {}".format(path, version, SCHEMA_VERSION),
                hint="rebuild the bundle with this version of the pipeline",
            )
        return cls(root, manifest)

    @classmethod
    def new(cls, root, target):
        """A new, unsaved bundle for ``target`` (a profile dict) with no models."""
        manifest = collections.OrderedDict()
        manifest["schema_version"] = SCHEMA_VERSION
        manifest["target"] = target
        manifest["models"] = collections.OrderedDict()
        return cls(root, manifest)

    @classmethod
    def open_or_new(cls, root, target):
        """Open an existing bundle for ``target`` or start a new, unsaved one."""
        if os.path.isfile(os.path.join(str(root), MANIFEST_NAME)):
            bundle = cls.open(root)
            bundle.check_target(target["name"])
            bundle.manifest["target"] = target
            return bundle
        return cls.new(root, target)

    # -- access -------------------------------------------------------------------------------
    @property
    def target_name(self):
        # type: () -> str
        return self.manifest.get("target", {}).get("name", "")

    def check_target(self, expected):
        # type: (str) -> None
        if self.target_name != expected:
            raise BundleError(
                "bundle {} was built for target {!r}, not {!r}".format(self.root, self.target_name, expected),
                hint="use --target {} or build a bundle for {} into another --out folder".format(
                    self.target_name, expected),
            )

    def model_names(self):
        return list(self.manifest.get("models", {}))

    def model(self, name):
        # type: (str) -> dict
        models = self.manifest.get("models", {})
        if name not in models:
            raise ModelNotInBundleError(
                "model {!r} is not in bundle {}".format(name, self.root),
                hint="models in it: {}".format(", ".join(models) or "none"),
            )
        return models[name]

    def set_model(self, name, record):
        # type: (str, dict) -> None
        if not is_model_name(name):
            raise BundleError("model name {!r} is not a plain file name ({})".format(name, MODEL_NAME_RULE),
                              hint="give the model a name such as my_model or resnet50")
        self.manifest.setdefault("models", collections.OrderedDict())[name] = record

    def path(self, relpath):
        # type: (str) -> str
        """The file ``relpath`` (as the manifest writes it: '/'-separated) inside the bundle.

        A path that would lead out of the bundle (absolute, or through '..') is refused: a bundle
        names only its own files."""
        if not isinstance(relpath, str) or relpath.startswith(("/", "\\")) or os.path.isabs(relpath) \
                or ".." in relpath.replace("\\", "/").split("/") or ":" in relpath.split("/")[0]:
            raise BundleError(
                "the manifest of {} names {!r}, a path outside the bundle".format(self.root, relpath),
                hint="a bundle names only its own files (e.g. models/NAME.onnx): rebuild it with "
                     "`python pipeline.py build`")
        return os.path.join(self.root, *relpath.split("/"))

    def save(self):
        write_json(self.path(MANIFEST_NAME), self.manifest)

    def require_models(self):
        names = self.model_names()
        if not names:
            raise BundleError(
                "bundle {} has no models".format(self.root),
                hint="run `python pipeline.py build --target {} --out {}` first".format(
                    self.target_name or "jetson-nano", self.root),
            )
        return names

    def verify_file(self, relpath, expected_sha256):
        """Raise BundleError unless ``relpath`` exists and hashes to ``expected_sha256``."""
        path = self.path(relpath)
        if not isinstance(expected_sha256, str) or len(expected_sha256) != 64:
            raise BundleError(
                "the manifest names {} without a sha256 (got {!r}): it cannot be checked".format(
                    relpath, expected_sha256),
                hint="rebuild the bundle with `python pipeline.py build`; every file a bundle names carries "
                     "its sha256")
        real_root = os.path.realpath(self.root)
        if os.path.commonpath([real_root, os.path.realpath(path)]) != real_root:
            raise BundleError("{} leads outside the bundle {} (a symbolic link)".format(relpath, self.root),
                              hint="copy the real file into the bundle (rsync -a, not links), or rebuild it")
        if not os.path.isfile(path):
            raise BundleError(
                "{} is listed in the manifest but missing from the bundle".format(relpath),
                hint="copy the whole bundle folder again, or rebuild it on the host",
            )
        actual = sha256_file(path)
        if actual != expected_sha256:
            raise BundleError(
                "{} does not match the manifest (sha256 {}... != {}...)".format(
                    relpath, actual[:12], str(expected_sha256)[:12]),
                hint="the file was changed or truncated in transit: copy the bundle again or rebuild it",
            )
        return path

    def verify(self, names=None):
        """Check every model's ONNX (and INT8 ONNX, calibration) file against the manifest."""
        for name in names or self.require_models():
            record = self.model(name)
            if not isinstance(record.get("onnx"), dict) or not record["onnx"].get("path"):
                raise BundleError("the manifest record of {} in {} names no ONNX file (onnx.path)".format(
                    name, self.root), hint="rebuild the bundle with `python pipeline.py build`")
            for key in FILE_KEYS:
                entry = record.get(key)
                if entry is None:
                    continue
                if not isinstance(entry, dict) or not entry.get("path"):
                    raise BundleError("the manifest record of {} has a {!r} entry without a path".format(name, key),
                                      hint="rebuild the bundle with `python pipeline.py build`")
                self.verify_file(entry["path"], entry.get("sha256"))

    def verify_image_paths(self):
        """The held-out images the bundle carries (``build --verify-images``), each checked against
        its sha256: absolute paths in the recorded order; [] when the bundle carries none. Only
        the recorded files count: anything else dropped into the folder is not used."""
        entry = self.manifest.get(VERIFY_IMAGES_KEY)
        if entry is None:
            return []
        files = entry.get("files") if isinstance(entry, dict) else None
        if not isinstance(files, dict) or not files:
            raise BundleError("the manifest's {!r} entry names no files".format(VERIFY_IMAGES_KEY),
                              hint="build again with --verify-images DIR, or pass verify --images DIR")
        paths = []
        for relpath, digest in files.items():
            if not isinstance(relpath, str) or not relpath.startswith(VERIFY_IMAGES_DIR + "/"):
                raise BundleError("the manifest names verify image {!r} outside {}/".format(relpath, VERIFY_IMAGES_DIR),
                                  hint="build again with --verify-images DIR")
            paths.append(self.verify_file(relpath, digest))
        return paths

    def update_manifest(self, change, with_files=None):
        """Read-modify-write: re-read the manifest from disk, apply ``change(manifest)``, save it.

        For commands that add to a bundle another command may have changed since they opened it
        (verify adds fidelity records while holding the writer lock): what they save is built on
        the manifest as it is now, never on their stale copy. ``with_files`` ({path: bytes}, e.g.
        the reports the new records cite) are written with the manifest as one set: a full disk
        leaves the old manifest and the old reports, never new reports beside an old manifest."""
        current = Bundle.open(self.root)
        change(current.manifest)
        files = collections.OrderedDict(with_files or {})
        files[current.path(MANIFEST_NAME)] = json_bytes(current.manifest)
        write_files(files)
        self.manifest = current.manifest


FILE_KEYS = ("onnx", "int8_onnx", "calibration")   # the record entries that name a file of the bundle


MAX_BATCH, MAX_SIDE = 1024, 4096   # beyond these a recorded input shape is damage, not a model


def _plausible_input_shape(shape):
    if not isinstance(shape, list) or len(shape) != 4:
        return False
    limits = (MAX_BATCH, 16, MAX_SIDE, MAX_SIDE)
    # a dynamic dimension is a name (string) or null; a fixed one a positive int within the limit
    return all(d is None or isinstance(d, str) or (isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= top)
               for d, top in zip(shape, limits))


def _check_manifest_shape(manifest, path):
    """A manifest is an object whose target and models are objects and whose records are objects."""
    problem = None
    if not isinstance(manifest, dict):
        problem = "is a JSON {}, not an object".format(type(manifest).__name__)
    elif not isinstance(manifest.get("target", {}), dict):
        problem = "has a 'target' that is not an object"
    elif not isinstance(manifest.get("models", {}), dict):
        problem = "has 'models' as a JSON {}, not an object of model records".format(
            type(manifest.get("models")).__name__)
    else:
        bad = [n for n, r in manifest.get("models", {}).items() if not isinstance(r, dict)]
        unsafe = [n for n in manifest.get("models", {}) if not is_model_name(n)]
        if unsafe:   # a name like ../../evil would lead the files named after it out of the bundle
            raise BundleError("{} names a model {!r}, which is not a plain file name ({})".format(
                path, unsafe[0], MODEL_NAME_RULE),
                hint="remove that record from the manifest, or build a new bundle into another --out folder")
        if bad:
            problem = "has model records that are not objects: {}".format(", ".join(bad))
        else:
            for name, record in manifest.get("models", {}).items():
                for key in FILE_KEYS:
                    if record.get(key) is not None and not isinstance(record.get(key), dict):
                        problem = "has a {!r} entry of {} that is not an object".format(key, name)
                shape = (record.get("input") or {}).get("shape") if isinstance(record.get("input"), dict) else None
                if shape is not None and not _plausible_input_shape(shape):
                    problem = "gives {} the input shape {!r} (expected N x 3 x H x W, N up to {}, sides up " \
                              "to {})".format(name, shape, MAX_BATCH, MAX_SIDE)
    if problem:
        raise BundleError("{} {}: it is not a manifest this pipeline wrote".format(path, problem),
                          hint="rebuild the bundle with `python pipeline.py build`")
    from deploy.preprocess import config_from_dict

    for name, record in manifest.get("models", {}).items():
        if record.get("preprocessing") is not None:
            try:
                config_from_dict(record["preprocessing"])
            except BundleError as exc:
                raise BundleError("{} ({} in {})".format(exc, name, path), hint=exc.hint) from exc


def _open_lock_file(root):
    """``root/.lock`` opened for reading and writing, made if missing; None where it cannot be made.

    The lock file is truncated and written, so it must be ours: a symbolic link or a hard link (a
    name for someone else's file) would have that file overwritten, and a folder or FIFO in its place
    would leave the command unlocked. Those are refused with the fix instead.
    """
    path = os.path.join(root, LOCK_NAME)
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    hint = "remove {} (it only marks a bundle being written) and run the command again".format(path)
    if os.path.islink(path):
        raise BundleError("{} is a symbolic link: the writer lock would overwrite the file it points to".format(path),
                          hint=hint)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        if os.path.lexists(path) and (os.path.islink(path) or not os.path.isfile(path)):
            raise BundleError("{} is not a regular file: the writer lock cannot be held".format(path),
                              hint=hint) from None
        LOG.debug("no writer lock on %s (%s)", root, exc)
        return None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(fd)
        what = "not a regular file" if not stat.S_ISREG(info.st_mode) else \
            "a hard link ({} names): the writer lock would overwrite a file shared with another name".format(info.st_nlink)
        raise BundleError("{} is {}".format(path, what), hint=hint)
    return os.fdopen(fd, "r+")


@contextlib.contextmanager
def writer_lock(root, command, create=True):
    """Hold ``root/.lock`` exclusively while ``command`` writes the bundle.

    A second writer (another `build` or `engines` on the same folder) fails at once with a
    BundleError naming the holder, instead of interleaving its files and manifest with the first.
    The lock is advisory (fcntl.flock) and dies with its process, so a killed build never leaves
    the folder locked. ``create``: make a missing folder (and remove it again if the command left
    nothing in it); otherwise a folder that is not a bundle runs unlocked and the command reports it. Where
    flock is missing, or the folder cannot be made, the command runs unlocked (its own checks say why).
    ``root`` None: no bundle, nothing to lock.
    """
    if root is None:
        yield
        return
    root = str(root)
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield
        return
    created = not os.path.isdir(root)
    try:
        if not create and not os.path.isfile(os.path.join(root, MANIFEST_NAME)) \
                and not os.path.isfile(os.path.join(root, LOCK_NAME)):
            # not a bundle (or none there): no lock file is made in someone else's folder
            raise OSError("no bundle at {}".format(root))
        os.makedirs(root, exist_ok=True)
    except OSError as exc:
        LOG.debug("no writer lock on %s (%s)", root, exc)
        yield
        return
    handle = _open_lock_file(root)
    if handle is None:   # a read-only folder: the command's own writes fail and say why
        yield
        return
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise BundleError("{} is being written by {}".format(root, holder),
                              hint="wait until it finishes, or write to another folder (--out)") from None
        handle.seek(0)
        handle.truncate()
        handle.write("`{}` (pid {}, since {})\n".format(command, os.getpid(), time.strftime("%Y-%m-%d %H:%M:%S")))
        handle.flush()
        check_bundle_folders(root)   # before the command writes (or cleans up) anything in them
        yield
    finally:
        # unlock explicitly, then close: a child forked meanwhile (a library's helper process, a
        # subprocess before its exec) shares the open file, and closing ours alone would leave the
        # lock held until that child exits
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        except OSError:
            pass
        handle.close()
        if created and os.listdir(root) == [LOCK_NAME]:   # the command failed before writing anything
            os.unlink(os.path.join(root, LOCK_NAME))
            os.rmdir(root)
