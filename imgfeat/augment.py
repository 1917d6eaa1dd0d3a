"""Image transformations, with Pillow: the near-duplicate edits the evaluation groups are made of
(what a marketplace sees re-uploaded), and the views of a picture DeepBit learns invariance to:
its rotations and those edits."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

# DeepBit's rotation angles (Lin et al. 2016, section 3.2), in degrees.
ROTATIONS = (-10.0, -5.0, 0.0, 5.0, 10.0)


def rotate(img: Image.Image, degrees: float) -> Image.Image:
    """Rotated about the centre, same size; the corners are filled by the edge colours."""
    if degrees == 0:
        return img
    # Padding with the edge pixels first keeps black corners (which every rotated crop would share,
    # a spurious common feature) out of the training input.
    pad = max(img.size) // 4
    padded = _edge_pad(img, pad)
    out = padded.rotate(degrees, resample=Image.Resampling.BILINEAR)
    return out.crop((pad, pad, pad + img.width, pad + img.height))


def _edge_pad(img: Image.Image, pad: int) -> Image.Image:
    a = np.asarray(img.convert("RGB"))
    return Image.fromarray(np.pad(a, ((pad, pad), (pad, pad), (0, 0)), mode="edge"))


def jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


# The near-duplicate edits of the evaluation: name -> function of a PIL image.
NEAR_DUPLICATE_EDITS = {
    "rescaled": lambda im: im.resize((max(1, im.width // 2), max(1, im.height // 2)), Image.Resampling.LANCZOS),
    "recompressed": lambda im: Image.open(io.BytesIO(jpeg(im, 25))),
    "cropped": lambda im: im.crop((im.width // 10, im.height // 10, im.width - im.width // 10,
                                   im.height - im.height // 10)),
    "flipped": ImageOps.mirror,
    "brighter": lambda im: ImageEnhance.Brightness(im).enhance(1.3),
}


def _rotation(degrees: float):
    return lambda im: rotate(im, degrees)


# The views the learned layer's bits should not change under, the picture itself first: DeepBit's
# rotations (Lin et al. 2016) and the near-duplicate edits users make (issue 17).
VIEWS = {"original": lambda im: im,
         **{f"rotated{a:+g}": _rotation(a) for a in ROTATIONS if a},
         **NEAR_DUPLICATE_EDITS}
