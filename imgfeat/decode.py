"""Image decoding and validation: the one place that turns bytes into RGB pixels.

Pillow decodes (broadest format support, EXIF orientation); OpenCV resizes and encodes.
Every rejection is a `BadImage` whose `reason` starts with a stable code
(`empty_file`, `unsupported_extension`, `undecodable`, `truncated`, `too_many_pixels`,
`too_small`) followed by details, so the quarantine table can be grouped by code.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
MAX_PIXELS = 100_000_000  # decompression-bomb guard, checked on the header before decoding
MIN_SIDE = 8  # nothing smaller can hold a detectable object

# Our own limit is checked first; Pillow's would raise on merely large (but allowed) images.
Image.MAX_IMAGE_PIXELS = None


class BadImage(ValueError):
    def __init__(self, code: str, detail: str = ""):
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.reason = str(self)


@dataclass(frozen=True)
class ImageInfo:
    width: int
    height: int
    format: str


def has_image_extension(name: str) -> bool:
    return name.lower().endswith(EXTENSIONS)


def _open(data: bytes, max_pixels: int) -> Image.Image:
    if not data:
        raise BadImage("empty_file", "0 bytes")
    try:
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        raise BadImage("too_many_pixels", str(e)) from e
    except Image.UnidentifiedImageError:
        raise BadImage("undecodable", "not a recognised image format") from None
    except Exception as e:  # Pillow raises several types for corrupt headers
        raise BadImage("undecodable", str(e) or type(e).__name__) from e
    w, h = img.size
    if w * h > max_pixels:
        raise BadImage("too_many_pixels", f"{w}x{h} > {max_pixels}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.load()
    except OSError as e:
        code = "truncated" if "truncated" in str(e) else "undecodable"
        raise BadImage(code, str(e)) from e
    except Exception as e:
        raise BadImage("undecodable", str(e) or type(e).__name__) from e
    return img


def _to_rgb(img: Image.Image) -> Image.Image:
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit and float grayscale: scale to 8 bits instead of clipping to white.
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr * (255.0 / top), 0, 255).astype(np.uint8), "L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    return img.convert("RGB")


def inspect(data: bytes, max_pixels: int = MAX_PIXELS, min_side: int = MIN_SIDE) -> ImageInfo:
    """Validate the whole image (not just its header); raise `BadImage` with a reason."""
    img = _open(data, max_pixels)
    fmt = img.format or "unknown"
    w, h = ImageOps.exif_transpose(img).size
    if min(w, h) < min_side:
        raise BadImage("too_small", f"{w}x{h}, smallest side < {min_side}")
    return ImageInfo(w, h, fmt)


def decode_rgb(data: bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """H x W x 3 uint8 RGB: EXIF-oriented, first frame, alpha over white, 16-bit scaled."""
    return np.asarray(_to_rgb(_open(data, max_pixels)), dtype=np.uint8)


def resize(rgb: np.ndarray, size: int) -> np.ndarray:
    import cv2

    return cv2.resize(rgb, (size, size), interpolation=cv2.INTER_LINEAR)


def encode_png(rgb: np.ndarray) -> bytes:
    """Lossless, deterministic encoding of a crop (RGB in, PNG bytes out)."""
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]))
    if not ok:
        raise BadImage("undecodable", "PNG encoding failed")
    return buf.tobytes()
