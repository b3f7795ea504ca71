"""`device-run`: doctor, engines, bench, verify, then one archive of everything to send back.

The steps themselves are the CLI's own commands (pipeline.py runs them in order); this module
keeps what makes the sequence resumable and reportable:

* a state file, ``reports/device-run.json``, recording each finished step with a key made from
  what it depended on (the engines' sha256s, the precision, the images folder). A re-run skips a
  step whose key is unchanged and whose report is still there, so a killed run resumes where it
  stopped and a finished one is not repeated;
* the archive ``reports/device-run-<board>-<date>.tar.gz``: the reports (bench, verify, doctor,
  engines' build logs and layer information) and the environment, written atomically.

Python 3.6-compatible.
"""
import collections
import hashlib
import io
import json
import logging
import os
import tarfile
import time

from deploy.atomic import atomic_path, write_json
from deploy.bundle import VERIFY_IMAGES_KEY
from deploy.tensorrt.engine_files import list_engines, slug

LOG = logging.getLogger(__name__)

STATE_RELPATH = "reports/device-run.json"
STEPS = ("doctor", "engines", "bench", "verify", "archive")
# What each skippable step leaves behind: the step is redone when this report is gone.
STEP_REPORTS = {"bench": "reports/bench.json", "verify": "reports/verify.json"}
ARCHIVE_SUFFIXES = (".json", ".md", ".png", ".log", ".txt", ".sh")


def read_state(bundle):
    """The recorded steps {step: {"key", "finished"}}; {} when none or unreadable (then all run again)."""
    try:
        with open(bundle.path(STATE_RELPATH), "r") as handle:
            state = json.load(handle)
    except (OSError, IOError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def step_key(bundle, precision, extra=None):
    """A digest of what bench/verify results depend on: every engine's sha256, the precision, ``extra``."""
    digest = hashlib.sha256()
    for rel, sidecar in list_engines(bundle):
        digest.update("{}={}\n".format(rel, sidecar.get("engine_sha256")).encode("utf-8"))
    digest.update("precision={}\nextra={}\n".format(precision, extra).encode("utf-8"))
    for name in bundle.model_names():
        digest.update("{}={}\n".format(name, bundle.model(name)["onnx"]["sha256"]).encode("utf-8"))
    return digest.hexdigest()


def packed_images_key(bundle):
    """'packed:<digest>' of the verify images the bundle records, for verify's step key; None when it
    carries none. Derived from the manifest's sha256s: verify itself checks the files against them."""
    entry = bundle.manifest.get(VERIFY_IMAGES_KEY)
    if entry is None:
        return None
    files = entry.get("files") if isinstance(entry, dict) else None
    if not isinstance(files, dict) or not files:
        bundle.verify_image_paths()   # raises its one-line error for a damaged entry
        return None
    digest = hashlib.sha256("".join("{}={}\n".format(k, v) for k, v in files.items()).encode("utf-8"))
    return "packed:" + digest.hexdigest()


def is_current(bundle, state, step, key):
    """True when ``step`` finished with this ``key`` and its report is still in the bundle."""
    done = state.get(step)
    if not isinstance(done, dict) or done.get("key") != key:
        return False
    report = STEP_REPORTS.get(step)
    return report is None or os.path.isfile(bundle.path(report))


def record_step(bundle, state, step, key):
    """Mark ``step`` finished (saved at once, atomically, so a later kill keeps it)."""
    state[step] = collections.OrderedDict([("key", key), ("finished", time.strftime("%Y-%m-%dT%H:%M:%S"))])
    write_json(bundle.path(STATE_RELPATH), state)


def archive_name(board, when=None):
    return "device-run-{}-{}.tar.gz".format(slug(board or "unknown-board"),
                                            time.strftime("%Y%m%d-%H%M%S", time.localtime(when)))


def archive_members(bundle):
    """Relative paths of the files that go into the archive: reports/ (not older archives) and trtexec.sh."""
    out = []
    reports = bundle.path("reports")
    for folder, dirs, files in os.walk(reports):
        dirs.sort()
        for name in sorted(files):
            if name.startswith(".") or name.endswith(".tar.gz") or not name.endswith(ARCHIVE_SUFFIXES):
                continue
            full = os.path.join(folder, name)
            if os.path.islink(full) or not os.path.isfile(full):
                continue
            out.append(os.path.relpath(full, bundle.root).replace(os.sep, "/"))
    for extra in ("manifest.json", "trtexec.sh"):
        if os.path.isfile(bundle.path(extra)):
            out.append(extra)
    return out


def write_archive(bundle, environment, board=None, when=None):
    """Write reports/device-run-<board>-<date>.tar.gz; returns (relpath, member list)."""
    rel = "reports/" + archive_name(board, when)
    members = archive_members(bundle)
    env_bytes = json.dumps(environment, indent=2, sort_keys=False, default=str).encode("utf-8")
    with atomic_path(bundle.path(rel)) as tmp:
        with tarfile.open(tmp, "w:gz") as tar:
            for member in members:
                tar.add(bundle.path(member), arcname=member, recursive=False)
            info = tarfile.TarInfo("environment.json")
            info.size = len(env_bytes)
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(env_bytes))
    return rel, members + ["environment.json"]
