"""The verify-images stage of ``build``: held-out images packed into the bundle for the device.

    pack_verify_images(bundle, images_dir, count=100)

A Jetson rarely has the user's labelled image set at hand, so ``build --verify-images DIR`` copies a
deterministic pick of ``count`` of its images (the same pick ``verify --images DIR --count N``
makes) into ``BUNDLE/verify_images/<class>/``, byte for byte, and records each file with its sha256
under the manifest's ``verify_images``. ``verify`` and ``device-run`` then use them when no
``--images`` is given. Files land atomically; files of an earlier pack that the new one does not
keep are removed only when the manifest recorded them (the bundle made them). Host-only.
"""
from __future__ import annotations

import logging
import os
from collections import OrderedDict

from deploy.atomic import CopyOf, json_bytes, sha256_file, write_files
from deploy.bundle import MANIFEST_NAME, VERIFY_IMAGES_DIR, VERIFY_IMAGES_KEY, Bundle
from deploy.errors import UsageError
from deploy.preprocess import folder_label, list_image_files, pick_order

LOG = logging.getLogger(__name__)

DEFAULT_VERIFY_COUNT = 100
MAX_VERIFY_COUNT = 10000   # they travel to the device with the bundle


def check_verify_images(images_dir: str, count: int, warn: bool = True) -> list[str]:
    """The images ``pack_verify_images`` would copy; a UsageError before any build work when unusable."""
    if not 1 <= count <= MAX_VERIFY_COUNT:
        raise UsageError(f"--verify-count must be from 1 to {MAX_VERIFY_COUNT}, not {count}",
                         hint=f"e.g. --verify-count {DEFAULT_VERIFY_COUNT} (the default)")
    if not os.path.isdir(images_dir):
        raise UsageError(f"--verify-images {images_dir} is not a folder",
                         hint="give a folder of JPEG/PNG images, one sub-folder per class for accuracy")
    paths = list_image_files(images_dir)
    if not paths:
        raise UsageError(f"no JPEG/PNG images found in --verify-images {images_dir}",
                         hint="lay the images out as DIR/<class name>/*.jpg (or .png)")
    if warn and len(paths) < count:
        LOG.warning("--verify-images %s holds %d image(s), fewer than the %d asked for: packing %d",
                    images_dir, len(paths), count, len(paths))
    return pick_order(paths)[:count]


def _relpath(index: int, path: str, images_dir: str) -> str:
    """verify_images/<class>/<NNNN>-<name>: the class folder keeps labels; the index keeps two files
    of one name (from nested folders) apart and the pick's order visible."""
    label = folder_label(path, images_dir)
    name = f"{index:04d}-{os.path.basename(path)}"
    return "/".join([VERIFY_IMAGES_DIR] + ([label] if label else []) + [name])


def pack_verify_images(bundle: Bundle, images_dir: str, count: int = DEFAULT_VERIFY_COUNT) -> dict:
    """Copy the pick into the bundle and record it; return the manifest entry (reused when current)."""
    picked = check_verify_images(images_dir, count, warn=False)   # the build checked it before its export
    source = os.path.abspath(images_dir)
    wanted = OrderedDict((_relpath(i, p, images_dir), p) for i, p in enumerate(picked))
    old = bundle.manifest.get(VERIFY_IMAGES_KEY)
    old = old if isinstance(old, dict) else {}
    old_files = old.get("files") if isinstance(old.get("files"), dict) else {}
    digests = OrderedDict((rel, sha256_file(src)) for rel, src in wanted.items())
    if old.get("source") == source and old_files == digests and _intact(bundle, old_files):
        LOG.info("verify images: reused %d from %s", len(digests), source)
        return old
    entry = OrderedDict([("path", VERIFY_IMAGES_DIR), ("source", source), ("requested", count),
                         ("count", len(digests)), ("files", digests)])
    manifest = dict(bundle.manifest)
    manifest[VERIFY_IMAGES_KEY] = entry
    # the images and the manifest naming them as one set: a full disk or an interrupt leaves the
    # earlier images and manifest, never new images beside a manifest that does not name them
    files = OrderedDict((bundle.path(rel), CopyOf(src)) for rel, src in wanted.items()
                        if old_files.get(rel) != digests[rel] or not os.path.isfile(bundle.path(rel)))
    files[bundle.path(MANIFEST_NAME)] = json_bytes(manifest)
    write_files(files)
    bundle.manifest[VERIFY_IMAGES_KEY] = entry
    for rel in old_files:   # an earlier pack's files that this one does not keep (recorded, so ours)
        if rel not in digests and rel.startswith(VERIFY_IMAGES_DIR + "/") and os.path.isfile(bundle.path(rel)):
            os.unlink(bundle.path(rel))
    LOG.info("verify images: packed %d from %s into %s/", len(digests), source, VERIFY_IMAGES_DIR)
    return entry


def _intact(bundle: Bundle, files: dict) -> bool:
    return all(os.path.isfile(bundle.path(rel)) and sha256_file(bundle.path(rel)) == digest
               for rel, digest in files.items())
