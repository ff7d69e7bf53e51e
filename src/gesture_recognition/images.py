"""Turning what users send into the RGB ``uint8 [H, W, 3]`` photos the pipeline works on.

Both entry points (raw pixels and encoded file bytes) go through here, so limits and
conversions are the same for the server, the in-process pipeline and the training tools.

Encoded photos are turned upright by their EXIF Orientation tag, as photo viewers, browsers,
OpenCV's ``imread`` (so ultralytics' training) and torchvision's ``decode_image`` show them: a
phone held upright stores its photo sideways with tag 6, and a detector shown the sideways
pixels misses most hands (``reports/exif_orientation/``). Boxes therefore refer to the photo as
it is shown. Raw pixels carry no tag and are taken as given.
"""

from __future__ import annotations

import io
import struct
import warnings
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps, UnidentifiedImageError

# A 64-megapixel photo is far beyond any camera frame this serves; a larger declared size is
# treated as a decompression bomb and refused before any pixel is decoded.
DEFAULT_MAX_PIXELS = 64_000_000
# Encoded photos larger than this are refused before decoding (Triton 2.51 has no request-size
# limit of its own); a 64 MP JPEG is about 20-30 MB.
DEFAULT_MAX_IMAGE_BYTES = 48 * 2**20
MIN_SIDE = 8
# The photo formats PIL may parse. Its other plugins (EPS hands the bytes to Ghostscript, and
# FITS, PSD, ... have had their own CVEs) are attack surface a gesture server does not need.
# (Multi-picture JPEGs of phone cameras open through the JPEG plugin, as MPO.)
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
EXIF_ORIENTATION = 0x0112  # 1: stored upright; 2-8: mirrored and/or turned by 90/180/270


class InvalidImageError(ValueError):
    """Input that is not a usable photo; the message says what is wrong."""


def check_image_array(image: object, max_pixels: int = DEFAULT_MAX_PIXELS) -> NDArray[np.uint8]:
    """Validate a raw ``IMAGE`` tensor: uint8, ``[H, W, 3]``, within the pixel limit."""
    if not isinstance(image, np.ndarray):
        raise InvalidImageError(f"IMAGE must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise InvalidImageError(f"IMAGE must be UINT8, got {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise InvalidImageError(f"IMAGE must have shape [H, W, 3] (RGB), got {list(image.shape)}")
    height, width = image.shape[:2]
    if height < MIN_SIDE or width < MIN_SIDE:
        raise InvalidImageError(
            f"IMAGE is {width}x{height}; each side must be at least {MIN_SIDE} pixels"
        )
    if height * width > max_pixels:
        raise InvalidImageError(
            f"IMAGE has {height * width} pixels, more than the limit of {max_pixels}"
        )
    return np.ascontiguousarray(image)


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> NDArray[np.uint8]:
    """Encoded JPEG/PNG/... bytes -> RGB uint8 ``[H, W, 3]``.

    The EXIF Orientation tag is applied (the photo as viewers show it; see the module doc).
    Grayscale, palette, RGBA and 16-bit photos are converted to 8-bit RGB (alpha dropped,
    16-bit scaled down); anything that does not decode raises InvalidImageError.
    """
    if not data:
        raise InvalidImageError("image bytes are empty")
    try:
        with warnings.catch_warnings():
            # PIL warns before its own bomb error; our limit is checked on the header below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            # Bad metadata is ignored (orientation); PIL would warn once per request about it.
            warnings.filterwarnings("ignore", "Corrupt EXIF data", UserWarning)
            Image.MAX_IMAGE_PIXELS = None
            with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as img:
                width, height = img.size
                if width * height > max_pixels:
                    raise InvalidImageError(
                        f"image declares {width}x{height} = {width * height} pixels, more than "
                        f"the limit of {max_pixels}"
                    )
                # Refused from the header too: a 1 x 64M strip is within the pixel limit but
                # would be decoded in full only to be refused afterwards.
                if width < MIN_SIDE or height < MIN_SIDE:
                    raise InvalidImageError(
                        f"image is {width}x{height}; each side must be at least {MIN_SIDE} pixels"
                    )
                img.load()
                rgb = _to_rgb8(upright(img))
    except InvalidImageError:
        raise
    except (UnidentifiedImageError, ImportError) as exc:
        # PIL's own message names an in-memory buffer object, useless to a client.
        # ImportError: once ultralytics is imported in the process, it patches Image.open to
        # import pi_heif (not installed) whenever PIL cannot identify the bytes.
        raise InvalidImageError(
            f"bytes are not a readable image ({len(data)} bytes, format not recognised; "
            f"accepted: {', '.join(ALLOWED_FORMATS)})"
        ) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidImageError(f"bytes are not a readable image: {exc}") from exc
    return check_image_array(rgb, max_pixels)


def orientation(img: Image.Image) -> int:
    """The EXIF Orientation tag of an opened photo: 1 (as stored) when absent, invalid or
    unreadable. A malformed EXIF block leaves the pixels as stored, as browsers do: the photo
    itself is still valid, and refusing it would fail a request over metadata."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Corrupt EXIF data", UserWarning)
            tag = img.getexif().get(EXIF_ORIENTATION, 1)
    except (OSError, ValueError, TypeError, SyntaxError, struct.error):
        return 1
    return tag if isinstance(tag, int) and 1 <= tag <= 8 else 1


def upright(img: Image.Image) -> Image.Image:
    """``img`` turned as its EXIF Orientation tag says (``img`` itself when nothing to do)."""
    return img if orientation(img) == 1 else ImageOps.exif_transpose(img)


def shown_size(img: Image.Image) -> tuple[int, int]:
    """``(width, height)`` of an opened photo as shown, from its header (no pixels decoded)."""
    width, height = img.size
    return (height, width) if orientation(img) >= 5 else (width, height)  # 5-8 turn by 90


def _to_rgb8(img: Image.Image) -> NDArray[np.uint8]:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if arr.max(initial=0) > 255 else 255.0
        gray = np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if img.mode == "RGB":
        return np.asarray(img, dtype=np.uint8)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Composite on white: transparent pixels would otherwise turn black.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"), dtype=np.uint8)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def load_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> NDArray[np.uint8]:
    """Read a photo file as RGB uint8, upright by its EXIF orientation, as on the server."""
    return decode_image(Path(path).read_bytes(), max_pixels)
