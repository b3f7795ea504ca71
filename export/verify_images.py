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
from deploy.bundle import MANIFEST_NAME, VERIFY_IMAGES_DIR, VERIFY_IMAGES_KEY, Bundle, check_folder_inside
from deploy.errors import BundleError, UsageError
from deploy.preprocess import folder_label, list_image_files, pick_order

LOG = logging.getLogger(__name__)

DEFAULT_VERIFY_COUNT = 100
MAX_VERIFY_COUNT = 10000   # they travel to the device with the bundle
MAX_NAME_BYTES = 255       # NAME_MAX of ext4 and most file systems


def check_verify_images(images_dir: str, count: int, warn: bool = True, out_dir: str | None = None) -> list[str]:
    """The images ``pack_verify_images`` would copy; a UsageError (or, for the bundle's folders, a
    BundleError) before any build work when unusable. ``out_dir``: also check where they would go."""
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
    picked = pick_order(paths)[:count]
    if out_dir is not None:
        check_destination(out_dir, _targets(picked, images_dir))
    return picked


def _relpath(index: int, path: str, images_dir: str) -> str:
    """verify_images/<class>/<NNNN>-<name>: the class folder keeps labels; the index keeps two files
    of one name (from nested folders) apart and the pick's order visible."""
    label = folder_label(path, images_dir)
    name = f"{index:04d}-{os.path.basename(path)}"
    return "/".join([VERIFY_IMAGES_DIR] + ([label] if label else []) + [name])


def _targets(picked: list[str], images_dir: str) -> OrderedDict:
    return OrderedDict((_relpath(i, p, images_dir), p) for i, p in enumerate(picked))


def check_destination(root: str, targets) -> None:
    """Every folder the pack writes into is a real folder inside the bundle (a class folder that is a
    link would have the pack write, and remove, elsewhere), and every name fits the file system."""
    folders = sorted({rel.rsplit("/", 1)[0] for rel in targets} | {VERIFY_IMAGES_DIR})
    for rel in folders:
        path = os.path.join(root, *rel.split("/"))
        check_folder_inside(root, path)
        if os.path.lexists(path) and not os.path.isdir(path):
            raise BundleError(f"{path} is not a folder, and build --verify-images writes images into it",
                              hint=f"move {path} out of the bundle, or build into another --out")
    for rel in targets:
        name = rel.rsplit("/", 1)[1]
        if len(os.fsencode(name)) > MAX_NAME_BYTES:
            raise UsageError(f"image file name too long to pack: {name[:40]}... ({len(os.fsencode(name))} bytes)",
                             hint="rename the image in --verify-images to a shorter name")


def pack_verify_images(bundle: Bundle, images_dir: str, count: int = DEFAULT_VERIFY_COUNT,
                       picked: list[str] | None = None) -> dict:
    """Copy the pick into the bundle and record it; return the manifest entry (reused when current).

    What decides whether a file is written is the file on disk, not the record: a packed image
    changed or replaced since is written again. A file in the way that the manifest never recorded
    (the user's) is refused, never overwritten. ``picked``: check_verify_images' answer, when the
    caller already has it (build checks before its export), so the folder is not listed twice."""
    if picked is None:
        picked = check_verify_images(images_dir, count, warn=False)
    source = os.path.abspath(images_dir)
    wanted = _targets(picked, images_dir)
    check_destination(bundle.root, wanted)
    old = bundle.manifest.get(VERIFY_IMAGES_KEY)
    old = old if isinstance(old, dict) else {}
    old_files = old.get("files") if isinstance(old.get("files"), dict) else {}
    digests = OrderedDict((rel, sha256_file(src)) for rel, src in wanted.items())
    stale = [rel for rel in wanted if not _holds(bundle, rel, digests[rel])]
    for rel in stale:
        if os.path.lexists(bundle.path(rel)) and rel not in old_files:
            raise BundleError(f"{bundle.path(rel)} is in the way: the bundle did not pack it, and build "
                              f"--verify-images would write an image there",
                              hint="move that file out of the bundle, then build again")
    if old.get("source") == source and old_files == digests and not stale:
        LOG.info("verify images: reused %d from %s", len(digests), source)
        return old
    entry = OrderedDict([("path", VERIFY_IMAGES_DIR), ("source", source), ("requested", count),
                         ("count", len(digests)), ("files", digests)])
    manifest = dict(bundle.manifest)
    manifest[VERIFY_IMAGES_KEY] = entry
    # the images and the manifest naming them as one set: a full disk or an interrupt leaves the
    # earlier images and manifest, never new images beside a manifest that does not name them
    files = OrderedDict((bundle.path(rel), CopyOf(wanted[rel])) for rel in stale)
    for rel in stale:   # a packed image replaced by a link: the new file replaces the link itself
        if os.path.islink(bundle.path(rel)):
            os.unlink(bundle.path(rel))
    files[bundle.path(MANIFEST_NAME)] = json_bytes(manifest)
    write_files(files)
    bundle.manifest[VERIFY_IMAGES_KEY] = entry
    for rel in old_files:   # an earlier pack's files that this one does not keep (recorded, so ours)
        if rel in digests:
            continue
        try:
            path = bundle.path(rel) if rel.startswith(VERIFY_IMAGES_DIR + "/") else None
        except BundleError:   # a hand-edited record leading out of the bundle: never followed
            path = None
        if path is None:
            LOG.warning("the manifest's earlier verify images named %r, not a file of %s/: left alone", rel,
                        VERIFY_IMAGES_DIR)
        elif os.path.isfile(path) and not os.path.islink(path):
            check_folder_inside(bundle.root, os.path.dirname(path))
            os.unlink(path)
    LOG.info("verify images: packed %d from %s into %s/ (%d written)", len(digests), source, VERIFY_IMAGES_DIR,
             len(stale))
    return entry


def _holds(bundle: Bundle, rel: str, digest: str) -> bool:
    """True when the bundle's file ``rel`` is a regular file (not a link) with this sha256."""
    path = bundle.path(rel)
    return os.path.isfile(path) and not os.path.islink(path) and sha256_file(path) == digest
