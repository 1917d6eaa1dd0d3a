"""The stage functions chained in-process over image files, without Spark: the same code the
Spark stages run, for a `similar` query image and for the evaluation corpus."""

from __future__ import annotations

import numpy as np
import pandas as pd

from imgfeat import descriptor, params
from imgfeat.stages import crop, detect, embed, ingest

BATCH = 16


def crops(files: list[tuple[str, bytes]], engine, threshold: float = params.DEFAULTS["score_threshold"]) -> list[dict]:
    """ingest, detect and crop over (image_id, bytes) pairs -> crop-stage rows, quarantined ones too."""
    out = []
    for i in range(0, len(files), BATCH):
        rows = pd.DataFrame([ingest.ingest_file(k, c) for k, c in files[i:i + BATCH]])
        rows["reused_from"] = None
        out += crop.crop_batch(detect.detect_batch(rows, engine, threshold)).to_dict("records")
    return out


def embeddings(crop_rows: list[dict], engine, described: str = "crop") -> np.ndarray:
    """L2-normalised descriptors [N, dim] of crop-stage rows (`described`: of their crop, or of their
    whole picture, which detect described); a quarantined row is an error."""
    bad = [r["image_id"] for r in crop_rows if r.get("quarantine_stage") is not None]
    if bad:
        raise ValueError(f"cannot describe quarantined images: {bad}")
    if described == "picture":
        return np.array([r["picture_embedding"] for r in crop_rows], np.float32).reshape(len(crop_rows), -1)
    rows, pending, pixels = embed.prepare([dict(r) for r in crop_rows])
    if len(pending) != len(rows):
        raise ValueError(f"cannot describe images: {[r['image_id'] for i, r in enumerate(rows) if i not in set(pending)]}")
    feats = [engine.features(np.stack(pixels[i:i + BATCH])) for i in range(0, len(pixels), BATCH)]
    return descriptor.l2_normalize(np.concatenate(feats))