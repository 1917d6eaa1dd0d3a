"""Descriptors: the float embedding and its compact binary code.

A `Coder` turns L2-normalised embeddings into packed K-bit codes. Two kinds exist:
- the fixed projection (the fallback): SimHash of the centred descriptor, the signs of a seeded
  Gaussian projection, so every executor and every run derives the same bits; the Hamming distance
  between two codes then estimates the angle between the embeddings;
- a learned DeepBit layer (`imgfeat.deepbit`, trained by the `train_descriptor` DAG): bit k is
  set when sigmoid(w_k . x + c_k) > 0.5. Its model file is versioned, and the code name that the
  `model` column records is that version.
Each row has two codes of the same length: of its crop's descriptor and of its whole picture's
(`picture_code`), each from its own layer (learned from crops or from whole pictures) or the projection.
"""

from __future__ import annotations

import base64
import functools
import json
import re
from dataclasses import dataclass

import numpy as np

EMBEDDING_DIM = 1280
# R-MAC's regions (Tolias et al., ICLR 2016) on the backbone's 10x10 grid, as (window, stride): the
# whole grid, 2x2 windows of 6 and 3x3 windows of 4 (about 40% overlap). Measured on make eval's
# crops against global average pooling: float mAP@10 same-object 0.185 -> 0.236, near-duplicate
# recall at 0.1% false matches 0.576 -> 0.646.
RMAC_LEVELS = ((10, 10), (6, 4), (4, 3))
GRID = 10
# The whole picture's descriptor, for near-duplicates: maps of the detector's own MobileNetV2 at
# 19x19 (finer and less semantic than the last 10x10 map, which describes crops), as
# (TF node, channels, grid, R-MAC levels): block 13's expansion (the SSD's first feature map) with
# R-MAC's three levels (the whole map, 2x2 windows of 12, 3x3 of 9), and block 10's depthwise output,
# max-pooled whole. Measured on make eval's tuning split against the last map's R-MAC, near-duplicate
# recall at 1% / 0.1% false matches: float 0.985 / 0.733 -> 0.991 / 0.854; learned 64-bit codes
# 0.926 / 0.659 -> 0.974 / 0.759.
PICTURE_MAPS = (("FeatureExtractor/MobilenetV2/expanded_conv_13/expand/Relu6", 576, 19, ((19, 19), (12, 7), (9, 5))),
                ("FeatureExtractor/MobilenetV2/expanded_conv_10/depthwise/Relu6", 384, 19, ((19, 19),)))
PICTURE_DIM = sum(c for _, c, _, _ in PICTURE_MAPS)
PICTURE_DESCRIPTOR = "rmac576x19+mac384x19"  # in the `model` column: rows of another descriptor are not reused
PROJECTION_SEED = 20160626  # fixed forever: changing it changes every published code


def l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def rmac_regions(grid: int = GRID, levels: tuple = RMAC_LEVELS) -> list[int]:
    """Regions per level of `levels` ((window, stride), ...) on a grid x grid map."""
    return [((grid - window) // stride + 1) ** 2 for window, stride in levels]


def rmac(region_max: np.ndarray, dim: int = EMBEDDING_DIM, grid: int = GRID, levels: tuple = RMAC_LEVELS) -> np.ndarray:
    """The backbone's output -> R-MAC descriptors [N, dim] (not normalised).

    The backbone models (both engines) end in one max-pooling per level of `RMAC_LEVELS`; their
    output packs, level after level, each level's [dim, regions] maxima channel-major. Here each
    region's vector is L2-normalised and the regions summed (in numpy, so both engines share it)."""
    x = np.asarray(region_max, dtype=np.float32).reshape(len(region_max), -1)
    blocks, start = [], 0
    for k in rmac_regions(grid, levels):
        blocks.append(x[:, start:start + dim * k].reshape(len(x), dim, k))
        start += dim * k
    if start != x.shape[1]:
        raise ValueError(f"backbone output has {x.shape[1]} values per picture, expected {start} (R-MAC regions)")
    regions = np.concatenate(blocks, axis=2)
    norms = np.linalg.norm(regions, axis=1, keepdims=True)
    return (regions / np.maximum(norms, 1e-12)).sum(axis=2)


def picture_size(maps: tuple = PICTURE_MAPS) -> int:
    """Values per picture in the detector's picture output: each map's region maxima."""
    return sum(c * sum(rmac_regions(g, levels)) for _, c, g, levels in maps)


def picture(region_max: np.ndarray, maps: tuple = PICTURE_MAPS) -> np.ndarray:
    """The detector's picture output -> the whole picture's descriptor [N, PICTURE_DIM] (not
    normalised): each map's R-MAC (`rmac`), L2-normalised, side by side, so each map weighs the same."""
    x = np.asarray(region_max, dtype=np.float32).reshape(len(region_max), -1)
    if x.shape[1] != picture_size(maps):
        raise ValueError(f"the detector's picture output has {x.shape[1]} values per picture, "
                         f"expected {picture_size(maps)} (the region maxima of {len(maps)} maps)")
    parts, start = [], 0
    for _, c, g, levels in maps:
        size = c * sum(rmac_regions(g, levels))
        parts.append(l2_normalize(rmac(x[:, start:start + size], c, g, levels)))
        start += size
    return np.concatenate(parts, axis=1)


@functools.lru_cache(maxsize=8)
def projection(bits: int, dim: int = EMBEDDING_DIM, seed: int = PROJECTION_SEED) -> np.ndarray:
    return np.random.RandomState(seed).standard_normal((dim, bits)).astype(np.float32)


def _check_bits(bits: int) -> None:
    if bits % 8:
        raise ValueError(f"code_bits must be a multiple of 8, got {bits}")


def binary_codes(embeddings: np.ndarray, bits: int) -> np.ndarray:
    """The fixed projection's codes: [N, dim] float -> [N, bits/8] uint8, bits packed big-endian
    (numpy.packbits)."""
    _check_bits(bits)
    x = np.asarray(embeddings, dtype=np.float32)
    # Pooled ReLU features are all positive, so every pair of them is less than 90 degrees apart;
    # centering each descriptor across its dimensions spreads the hyperplanes' signs (measured on
    # real photos: 64-bit distance to unrelated objects 13 -> 20+, to a re-compressed copy 6 -> 6).
    x = x - x.mean(axis=1, keepdims=True)
    signs = (x @ projection(bits, x.shape[1])) > 0
    return np.packbits(signs, axis=1)


def code_name(bits: int) -> str:
    """The fixed projection's code name."""
    return f"simhash{bits}c-s{PROJECTION_SEED}"


def code_bits_of(name: str) -> int | None:
    """K of a code name (`deepbit<K>-...`, `picture-deepbit<K>-...` or the projection's
    `simhash<K>c-...`), None if none of them."""
    m = re.match(r"(?:picture-deepbit|deepbit|simhash)(\d+)", name)
    return int(m.group(1)) if m else None


@dataclass(frozen=True)
class Coder:
    """Embeddings -> packed codes. `weights` [dim, bits] and `bias` [bits] for a learned layer,
    None for the fixed projection."""
    bits: int
    name: str
    weights: np.ndarray | None = None
    bias: np.ndarray | None = None

    @property
    def learned(self) -> bool:
        return self.weights is not None

    def codes(self, embeddings: np.ndarray) -> np.ndarray:
        if not self.learned:
            return binary_codes(embeddings, self.bits)
        x = np.asarray(embeddings, dtype=np.float32)
        return np.packbits(x @ self.weights + self.bias > 0, axis=1)

    def vectors(self, embeddings: np.ndarray) -> np.ndarray | None:
        """A learned layer's outputs before the sign, L2-normalised [N, bits] (None for the
        projection): the code keeps their signs; their cosine verifies the code's matches (it
        keeps how far each is from 0, which the sign loses)."""
        if not self.learned:
            return None
        return l2_normalize(np.asarray(embeddings, dtype=np.float32) @ self.weights + self.bias)


def pack_vectors(vectors: np.ndarray) -> list[bytes]:
    """[N, bits] vectors as float16 bytes each (2 bytes a bit: 128 a 64-bit picture in the index)."""
    return [row.tobytes() for row in np.asarray(vectors, "<f2")]


def cosines(a: list[bytes], b: list[bytes]) -> np.ndarray:
    """Cosine of each pair of `pack_vectors` rows."""
    x = np.frombuffer(b"".join(a), "<f2").reshape(len(a), -1).astype(np.float32)
    y = np.frombuffer(b"".join(b), "<f2").reshape(len(b), -1).astype(np.float32)
    return np.einsum("nd,nd->n", l2_normalize(x), l2_normalize(y))


def projection_coder(bits: int) -> Coder:
    _check_bits(bits)
    return Coder(bits, code_name(bits))


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f4").tobytes()).decode("ascii")


def model_json(version: str, weights: np.ndarray, bias: np.ndarray, **info) -> str:
    """A learned layer as one JSON document (one file: written atomically, readable over WebHDFS)."""
    dim, bits = weights.shape
    _check_bits(bits)
    return json.dumps({"version": version, "bits": bits, "dim": dim, "weights": _b64(weights),
                       "bias": _b64(bias), **info}, indent=1, sort_keys=True)


def learned_coder(doc: dict) -> Coder:
    """The Coder of a `model_json` document."""
    bits, dim = int(doc["bits"]), int(doc["dim"])
    w = np.frombuffer(base64.b64decode(doc["weights"]), "<f4").reshape(dim, bits)
    b = np.frombuffer(base64.b64decode(doc["bias"]), "<f4").reshape(bits)
    return Coder(bits, doc["version"], w, b)


def load_coder(read_text, warehouse, bits: int, name: str | None = None, described: str = "object") -> Coder:
    """The coder named `name` (a learned version, or the projection's code name); without a name,
    the current learned layer for `bits` of what is `described` ("object": crops, "picture": whole
    pictures), else the fixed projection. A current layer learned on another descriptor (its
    dimension differs: trained before the descriptor changed) is passed over for the projection
    until the train_descriptor DAG learns a new one; a named one is refused.
    `read_text(path)` returns a file's text or None when it does not exist."""
    dim = PICTURE_DIM if described == "picture" else EMBEDDING_DIM
    current = name is None
    if current:
        text = read_text(warehouse.current_descriptor(bits, described))
        if text is None:
            return projection_coder(bits)
        name = json.loads(text)["version"]
    if name == code_name(bits):
        return projection_coder(bits)
    path = warehouse.descriptor_model(bits, name, described)
    text = read_text(path)
    if text is None:
        raise FileNotFoundError(f"descriptor model {path} does not exist")
    coder = learned_coder(json.loads(text))
    if coder.bits != bits:
        raise ValueError(f"descriptor model {name} has {coder.bits} bits, not {bits}")
    if coder.weights.shape[0] != dim:
        if current:
            return projection_coder(bits)
        raise ValueError(f"descriptor model {name} takes {coder.weights.shape[0]}-d descriptors, the {described} "
                         f"descriptor has {dim}: learn a new one (the train_descriptor DAG)")
    return coder
