"""DeepBit's binary code layer (Lin et al., CVPR 2016), learned without labels: the numpy side.

The layer maps the L2-normalised backbone descriptor x to K bits: sigmoid(W x + c) > 0.5.
DeepBit trains it for three objectives:
  1. quantization loss: the sigmoid outputs should be close to their bits;
  2. evenly distributed bits: each bit should be on for half the images;
  3. rotation invariance: a crop rotated by a few degrees keeps its bits. Here the rotations are
     extended by the near-duplicate edits users make (rescale, re-compression, crop, flip,
     brightness): `augment.VIEWS`, the crop itself first.
Here they are optimised alternately, because the bits are a non-differentiable function of the
outputs: each round fixes the targets b = the current layer's bits of the crops themselves,
thresholded at each bit's median over the sample, so every bit is on for exactly half of it (2);
then BigDL's distributed optimizer minimises the mean squared error between b and the sigmoid
outputs of every view of the crop (1 and 3) (`imgfeat.spark.train_descriptor`).
The layer starts from the principal components of the sample after learned whitening by its views
(`whitened_init`; DeepBit starts from a pretrained network, a binary layer has none), scaled to
unit variance.
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


def whitened_init(views: np.ndarray, bits: int, eps: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """(W [dim, bits], c [bits]): learned whitening (Radenovic et al., TPAMI 2018) from the views
    [views, N, dim] (the crops themselves first) instead of labelled pairs: the covariance of each
    view's difference to its crop is whitened away, then the top principal components of the
    whitened crops, unit variance. Directions that edits move get small weights. With no other
    view, `pca_init`."""
    x0 = views[0]
    if len(views) < 2:
        return pca_init(x0, bits)
    if len(x0) <= bits:
        raise ValueError(f"need more than {bits} distinct crops to learn {bits} bits, got {len(x0)}")
    x0 = x0.astype(np.float64)
    dim = x0.shape[1]
    within = np.zeros((dim, dim))
    for v in views[1:]:  # one view at a time: the sample's views can be 500 MB of float32
        d = v - x0
        within += d.T @ d
    within /= len(x0) * (len(views) - 1)
    vals, vecs = np.linalg.eigh(within + eps * np.eye(dim))
    whiten = vecs / np.sqrt(vals)
    mu = x0.mean(axis=0)
    _, _, vt = np.linalg.svd((x0 - mu) @ whiten, full_matrices=False)
    w = whiten @ vt[:bits].T
    w = w / np.maximum(((x0 - mu) @ w).std(axis=0), 1e-12)
    return w.astype(np.float32), (-(mu @ w)).astype(np.float32)


def targets(x0: np.ndarray, w: np.ndarray, c: np.ndarray) -> np.ndarray:
    """The round's binary targets [N, bits] (float 0/1): each bit thresholded at its median."""
    z = x0 @ w + c
    return (z > np.median(z, axis=0)).astype(np.float32)


def objective(rotated: np.ndarray, b: np.ndarray, w: np.ndarray, c: np.ndarray) -> float:
    """A round's training objective, as BigDL's MSECriterion averages it over the round's samples:
    the mean squared error between the targets `b` [N, bits] and the sigmoid outputs of every
    crop's views (`rotated` [views, N, dim])."""
    y = 1 / (1 + np.exp(-(rotated @ w + c)))
    return float(np.mean((y - b) ** 2))


def report(x0: np.ndarray, views: np.ndarray, w: np.ndarray, c: np.ndarray, names=None) -> dict:
    """The three objectives on the sample: `views` is [views, N, dim], the crops themselves first.
    With the views' `names`, also the share of bits each view flips."""
    y = 1 / (1 + np.exp(-(x0 @ w + c)))
    bits = y > 0.5
    flips = [float(np.mean((v @ w + c > 0) != bits)) for v in views]
    out = {"quantization_loss": round(float(np.mean((y - bits) ** 2)), 5),
           "bit_balance_max_deviation": round(float(np.max(np.abs(bits.mean(axis=0) - 0.5))), 5),
           "view_bit_flip_rate": round(float(np.mean(flips[1:] or [0.0])), 5)}
    if names is not None:
        out["bit_flip_rate_by_view"] = {n: round(f, 5) for n, f in zip(names[1:], flips[1:])}
    return out


def version(bits: int, w: np.ndarray, c: np.ndarray, now: dt.datetime | None = None, prefix: str = "") -> str:
    """<prefix>deepbit<K>-<UTC time>-<digest of the weights>: sortable, and unique per content
    (`prefix`: "picture-" for a layer of whole pictures, `layout.DESCRIBED`)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    digest = hashlib.sha256(np.ascontiguousarray(w, "<f4").tobytes() + np.ascontiguousarray(c, "<f4").tobytes())
    return f"{prefix}deepbit{bits}-{now.strftime('%Y%m%dT%H%M%S')}-{digest.hexdigest()[:8]}"


def view_descriptors(crops: list[bytes], engine, described: str = "object") -> np.ndarray:
    """Descriptors of each of `augment.VIEWS` of each image: [views, N, dim]. `described`: "object"
    (crops: the backbone's descriptor) or "picture" (whole pictures: the detector's own)."""
    from imgfeat import augment, decode
    from imgfeat.engines import INPUT_SIZE
    from imgfeat.descriptor import l2_normalize
    from PIL import Image

    images = [Image.fromarray(decode.decode_rgb(c)) for c in crops]
    out = []
    for view in augment.VIEWS.values():
        pixels = np.stack([decode.resize(np.asarray(view(im).convert("RGB")), INPUT_SIZE) for im in images])
        if described == "picture":
            out.append(l2_normalize(np.stack([d.picture for d in engine.detect(pixels)])))
        else:
            out.append(l2_normalize(engine.features(pixels)))
    return np.stack(out)
