"""DeepBit's binary code layer (Lin et al., CVPR 2016), learned without labels: the numpy side.

The layer maps the L2-normalised backbone descriptor x to K bits: sigmoid(W x + c) > 0.5.
DeepBit trains it for three objectives:
  1. quantization loss: the sigmoid outputs should be close to their bits;
  2. evenly distributed bits: each bit should be on for half the images;
  3. rotation invariance: a crop rotated by a few degrees (`augment.ROTATIONS`) keeps its bits.
Here they are optimised alternately, because the bits are a non-differentiable function of the
outputs: each round fixes the targets b = the current layer's bits of the unrotated crops,
thresholded at each bit's median over the sample, so every bit is on for exactly half of it (2);
then BigDL's distributed optimizer minimises the mean squared error between b and the sigmoid
outputs of the crop and of each of its rotations (1 and 3) (`imgfeat.spark.train_descriptor`).
The layer starts from the principal components of the sample (DeepBit starts from a pretrained
network; a binary layer has none), scaled to unit variance.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import numpy as np


def pca_init(x0: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """(W [dim, bits], c [bits]) whose outputs are the top `bits` principal components, unit variance."""
    if len(x0) <= bits:
        raise ValueError(f"need more than {bits} distinct crops to learn {bits} bits, got {len(x0)}")
    mu = x0.mean(axis=0)
    _, _, vt = np.linalg.svd(x0 - mu, full_matrices=False)
    w = vt[:bits].T
    w = w / np.maximum(((x0 - mu) @ w).std(axis=0), 1e-6)
    return w.astype(np.float32), (-(mu @ w)).astype(np.float32)


def targets(x0: np.ndarray, w: np.ndarray, c: np.ndarray) -> np.ndarray:
    """The round's binary targets [N, bits] (float 0/1): each bit thresholded at its median."""
    z = x0 @ w + c
    return (z > np.median(z, axis=0)).astype(np.float32)


def objective(rotated: np.ndarray, b: np.ndarray, w: np.ndarray, c: np.ndarray) -> float:
    """A round's training objective, as BigDL's MSECriterion averages it over the round's samples:
    the mean squared error between the targets `b` [N, bits] and the sigmoid outputs of every
    crop's rotations (`rotated` [angles, N, dim])."""
    y = 1 / (1 + np.exp(-(rotated @ w + c)))
    return float(np.mean((y - b) ** 2))


def report(x0: np.ndarray, rotated: np.ndarray, w: np.ndarray, c: np.ndarray) -> dict:
    """The three objectives on the sample: `rotated` is [angles, N, dim] and includes angle 0."""
    y = 1 / (1 + np.exp(-(x0 @ w + c)))
    bits = y > 0.5
    flips = [np.mean((r @ w + c > 0) != bits) for r in rotated]
    return {"quantization_loss": round(float(np.mean((y - bits) ** 2)), 5),
            "bit_balance_max_deviation": round(float(np.max(np.abs(bits.mean(axis=0) - 0.5))), 5),
            "rotation_bit_flip_rate": round(float(np.mean(flips)), 5)}


def version(bits: int, w: np.ndarray, c: np.ndarray, now: dt.datetime | None = None) -> str:
    """deepbit<K>-<UTC time>-<digest of the weights>: sortable, and unique per content."""
    now = now or dt.datetime.now(dt.timezone.utc)
    digest = hashlib.sha256(np.ascontiguousarray(w, "<f4").tobytes() + np.ascontiguousarray(c, "<f4").tobytes())
    return f"deepbit{bits}-{now.strftime('%Y%m%dT%H%M%S')}-{digest.hexdigest()[:8]}"


def rotated_descriptors(crops: list[bytes], engine) -> np.ndarray:
    """Descriptors of each crop rotated by each of `augment.ROTATIONS`: [angles, N, dim]."""
    from imgfeat import augment, decode
    from imgfeat.engines import INPUT_SIZE
    from imgfeat.descriptor import l2_normalize
    from PIL import Image

    images = [Image.fromarray(decode.decode_rgb(c)) for c in crops]
    out = []
    for angle in augment.ROTATIONS:
        pixels = np.stack([decode.resize(np.asarray(augment.rotate(im, angle)), INPUT_SIZE) for im in images])
        out.append(l2_normalize(engine.features(pixels)))
    return np.stack(out)
