"""Fast decode and resize for predict: what the device does per image, besides the network.

The reference (deploy.preprocess.preprocess_file) decodes the whole JPEG, resizes the whole image
so its shorter side is round(size / crop_pct), crops the centre and normalises in float numpy.
The fast path gives the same pixels for less work:

  * decode: JPEG DCT-domain downscaling (libjpeg's scaled IDCT: Pillow's ``draft``, OpenCV's
    IMREAD_REDUCED_COLOR_*) by the largest factor 1/2, 1/4 or 1/8 that still leaves the centre
    crop at least ``DRAFT_MIN_FILL`` of the network side, so the resize never enlarges by more
    than ~5 %; other formats (PNG, ...) and non-JPEG modes go through Pillow;
  * resize: only the centre-crop box is resampled, straight to the network size (Pillow's
    ``resize(box=...)``, the reference's resize-then-crop in one step; OpenCV's ``cv2.resize`` on
    the box where OpenCV is installed);
  * normalise: one 256-entry lookup table per channel, written straight into NCHW float32; or
    nothing at all for a bundle whose graph takes uint8 NHWC (build --input uint8).

Which of Pillow and OpenCV wins is measured by bench/predict_e2e.py (docs/predict.md); "auto"
uses the winner when it is installed. Python 3.6-compatible; cv2 is imported lazily.
"""
import collections

import numpy as np

from deploy.errors import UsageError
from deploy.preprocess import ImageError, image_errors, load_image, pil_filter, preprocess_image, resize_side, to_rgb

DECODERS = ("auto", "pillow", "opencv", "pillow+opencv", "reference")
# pillow: Pillow decodes and resizes; opencv: OpenCV does both; pillow+opencv: Pillow's scaled JPEG
# decode (measured faster here) with OpenCV's resize (measured faster here); reference: verify's path.
# The crop box after DCT downscaling keeps at least this share of the network side (at most a
# 1/0.95 = 5 % enlargement in the resize); see docs/predict.md for the measured agreement.
DRAFT_MIN_FILL = 0.95
DCT_SCALES = (8, 4, 2)

Decoded = collections.namedtuple("Decoded", ["image", "dct_scale"])
# image: a PIL RGB image or a uint8 (H, W, 3) RGB array; dct_scale: 1, 2, 4 or 8


def opencv_available():
    try:
        import cv2  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_decoder(name):
    """The decoder to use: "auto" is pillow+opencv where OpenCV is installed, else pillow (the
    measured winners on the x86 host: docs/predict.md)."""
    if name not in DECODERS:
        raise UsageError("unknown decoder {!r}".format(name), hint="choose one of: {}".format(", ".join(DECODERS)))
    if name == "auto":
        return "pillow+opencv" if opencv_available() else "pillow"
    if "opencv" in name and not opencv_available():
        raise UsageError("the opencv decoder needs OpenCV, which is not installed",
                         hint="pip install opencv-python-headless (JetPack ships it), or use --decoder pillow")
    return name


# ------------------------------------------------------------------------------------------------
# geometry
# ------------------------------------------------------------------------------------------------
def crop_box(width, height, cfg):
    """The reference's resize-then-centre-crop as a box (left, top, right, bottom) in source pixels."""
    side = resize_side(cfg)
    scale = float(side) / min(width, height)
    new_w = max(side, int(round(width * scale)))
    new_h = max(side, int(round(height * scale)))
    left = (new_w - cfg.size) // 2
    top = (new_h - cfg.size) // 2
    sx = float(width) / new_w
    sy = float(height) / new_h
    return (left * sx, top * sy, (left + cfg.size) * sx, (top + cfg.size) * sy)


def dct_scale(width, height, cfg, min_fill=None):
    """The largest JPEG DCT downscale (8, 4, 2, else 1) that keeps the crop box >= min_fill * size
    pixels (default DRAFT_MIN_FILL, read at call time so a benchmark can vary it)."""
    min_fill = DRAFT_MIN_FILL if min_fill is None else min_fill
    left, top, right, bottom = crop_box(width, height, cfg)
    box_side = min(right - left, bottom - top)
    for scale in DCT_SCALES:
        if box_side / scale >= min_fill * cfg.size and min(width, height) // scale >= 1:
            return scale
    return 1


# ------------------------------------------------------------------------------------------------
# decode
# ------------------------------------------------------------------------------------------------
def decode_file(path, cfg, decoder):
    """Decode ``path`` (raises ImageError) with ``decoder``'s decode (OpenCV for "opencv", else Pillow) -> Decoded."""
    if decoder == "opencv":
        decoded = _decode_opencv(path, cfg)
        if decoded is not None:
            return decoded
    chosen = [1]

    def draft_size(width, height):
        chosen[0] = dct_scale(width, height, cfg)
        return (width // chosen[0], height // chosen[0]) if chosen[0] > 1 else None

    image = load_image(path, draft_size=draft_size)
    return Decoded(image, chosen[0])


def _is_whole_jpeg(data):
    # A JPEG starts with SOI (FF D8 FF) and ends with EOI (FF D9). libjpeg under OpenCV decodes a
    # truncated file with a warning and grey rows; Pillow refuses it, so truncated files go there.
    return data[:3] == b"\xff\xd8\xff" and data.rstrip(b"\x00\r\n ")[-2:] == b"\xff\xd9"


def _decode_opencv(path, cfg):
    """OpenCV's scaled JPEG decode; None for anything that is not a whole JPEG (Pillow decodes those)."""
    import cv2
    from PIL import Image

    with image_errors(path):
        with open(str(path), "rb") as handle:
            data = handle.read()
        if not _is_whole_jpeg(data):
            return None
        with Image.open(str(path)) as header:   # size only (and Pillow's decompression-bomb check)
            width, height = header.size
            if header.mode not in ("RGB", "L"):  # CMYK, YCCK: Pillow's conversion is the reference
                return None
    scale = dct_scale(width, height, cfg)
    flags = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
             8: cv2.IMREAD_REDUCED_COLOR_8}[scale] | cv2.IMREAD_IGNORE_ORIENTATION  # Pillow ignores EXIF too
    array = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    if array is None:
        raise ImageError("cannot read image {}: OpenCV could not decode it".format(path),
                         hint="remove or replace the file")
    return Decoded(array[:, :, ::-1], scale)   # BGR -> RGB (a view; the resize copies)


def as_rgb(image):
    """A PIL image (any mode) or a uint8 array (H, W), (H, W, 3) or (H, W, 4) RGB[A] -> PIL RGB or uint8 RGB array."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise ImageError("image arrays must be uint8 (0..255), not {}".format(image.dtype),
                             hint="pass the decoded image (uint8 HxWx3 RGB); for float data convert with "
                                  "np.clip(x * 255, 0, 255).astype(np.uint8)")
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        if image.ndim != 3 or image.shape[2] not in (3, 4) or image.shape[0] < 1 or image.shape[1] < 1:
            raise ImageError("image array has shape {}; expected (H, W, 3) RGB".format(image.shape),
                             hint="pass one image, height x width x RGB")
        return image[:, :, :3]
    return to_rgb(image)


# ------------------------------------------------------------------------------------------------
# resize + crop
# ------------------------------------------------------------------------------------------------
def resize_crop(image, cfg, decoder):
    """The centre crop at network size, as uint8 (size, size, 3) RGB, from a PIL image or RGB array."""
    if decoder in ("opencv", "pillow+opencv"):
        return _resize_opencv(np.asarray(image, dtype=np.uint8), cfg)
    if isinstance(image, np.ndarray):
        from PIL import Image

        image = Image.fromarray(np.ascontiguousarray(image), mode="RGB")
    width, height = image.size
    out = image.resize((cfg.size, cfg.size), pil_filter(cfg.interpolation), box=crop_box(width, height, cfg))
    return np.asarray(out, dtype=np.uint8)


# Above this shrink factor the bilinear warp (no low-pass) aliases; Pillow's filters then widen
# with the factor (antialiasing), so shrinking goes to Pillow. Measured in docs/predict.md.
WARP_MAX_SHRINK = 1.05


def _resize_opencv(array, cfg):
    """The crop box resampled to the network size by an affine warp with the box's exact sub-pixel
    position (bilinear, as Pillow's filter is when enlarging), where it enlarges or keeps the scale
    (always, after a DCT-scaled decode of a large JPEG); Pillow's antialiased resize where it shrinks."""
    import cv2

    height, width = array.shape[:2]
    left, top, right, bottom = crop_box(width, height, cfg)
    sx, sy = (right - left) / cfg.size, (bottom - top) / cfg.size
    if max(sx, sy) > WARP_MAX_SHRINK:
        return resize_crop(array, cfg, "pillow")
    # output pixel centre u + 0.5 maps to left + (u + 0.5) * sx in source pixel-edge coordinates
    matrix = np.array([[sx, 0.0, left + 0.5 * sx - 0.5], [0.0, sy, top + 0.5 * sy - 0.5]], dtype=np.float64)
    methods = {"bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC, "nearest": cv2.INTER_NEAREST}
    flags = methods.get(cfg.interpolation, cv2.INTER_LINEAR) | cv2.WARP_INVERSE_MAP
    return cv2.warpAffine(np.ascontiguousarray(array), matrix, (cfg.size, cfg.size), flags=flags,
                          borderMode=cv2.BORDER_REPLICATE)


# ------------------------------------------------------------------------------------------------
# normalise
# ------------------------------------------------------------------------------------------------
def normalise_table(cfg):
    """(3, 256) float32: the normalised value of every uint8 level, per RGB channel."""
    levels = np.arange(256, dtype=np.float32) / np.float32(255.0)
    mean = np.asarray(cfg.mean, dtype=np.float32)[:, None]
    std = np.asarray(cfg.std, dtype=np.float32)[:, None]
    return np.ascontiguousarray((levels[None, :] - mean) / std, dtype=np.float32)


def to_tensor(rgb, table, out=None):
    """uint8 (H, W, 3) -> float32 (3, H, W) normalised, by table lookup (into ``out`` when given)."""
    height, width = rgb.shape[:2]
    if out is None:
        out = np.empty((3, height, width), dtype=np.float32)
    for channel in range(3):
        np.take(table[channel], rgb[:, :, channel], out=out[channel])
    return out


def fast_rgb(source, cfg, decoder):
    """The fast path's network-size uint8 RGB crop of a file path or an in-memory image."""
    if isinstance(source, str):
        return resize_crop(decode_file(source, cfg, decoder).image, cfg, decoder)
    return resize_crop(as_rgb(source), cfg, decoder)


def reference_tensor(image, cfg):
    """The reference preprocessing of a path or image: float32 (3, size, size), for comparisons."""
    from deploy.preprocess import preprocess_file

    if isinstance(image, np.ndarray) or hasattr(image, "mode"):
        rgb = as_rgb(image)
        if isinstance(rgb, np.ndarray):
            from PIL import Image

            rgb = Image.fromarray(np.ascontiguousarray(rgb), mode="RGB")
        return preprocess_image(rgb, cfg)
    return preprocess_file(image, cfg)
