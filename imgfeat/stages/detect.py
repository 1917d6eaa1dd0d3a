"""detect: every object above the score threshold, with its box in original-image pixels; and the
whole picture's descriptor, which the detector's own backbone gives in the same inference."""

from __future__ import annotations

import numpy as np
import pandas as pd

from imgfeat import coco, decode, descriptor
from imgfeat.engines import INPUT_SIZE
from imgfeat.stages._rows import is_quarantined, is_reused, quarantine, records

STAGE = "detect"
PAYLOAD = ("content", "detections", "picture_embedding")


def to_pixels(det, width: int, height: int, threshold: float) -> list[dict]:
    """Normalized (ymin, xmin, ymax, xmax) -> integer pixel boxes, x2/y2 exclusive, clamped."""
    out = []
    for (ymin, xmin, ymax, xmax), cls, score in zip(det.boxes, det.classes, det.scores):
        if score < threshold:
            continue
        x1, x2 = (int(np.clip(round(v * width), 0, width)) for v in (xmin, xmax))
        y1, y2 = (int(np.clip(round(v * height), 0, height)) for v in (ymin, ymax))
        if x2 <= x1 or y2 <= y1:
            continue
        out.append({"label_id": int(cls), "label": coco.label_name(cls), "score": float(score),
                    "x1": x1, "y1": y1, "x2": x2, "y2": y2})
    return sorted(out, key=lambda d: -d["score"])


def prepare(rows: list[dict]) -> tuple[list[dict], list[int], list[np.ndarray]]:
    """Decode and resize the rows to infer; quarantine undecodable ones. -> rows, their indexes, pixels."""
    pending, pixels = [], []
    for i, row in enumerate(rows):
        row.setdefault("detections", None)
        row.setdefault("picture_embedding", None)
        if is_quarantined(row) or is_reused(row):
            row["content"] = None
            continue
        try:
            # Decoded no larger than needed (boxes are normalized, so they map back to width/height).
            rgb = decode.decode_rgb(row["content"], min_size=INPUT_SIZE)
            pixels.append(decode.resize(rgb, INPUT_SIZE))
            pending.append(i)
        except decode.BadImage as e:
            rows[i] = quarantine(row, STAGE, e.reason, PAYLOAD)
    return rows, pending, pixels


def finish(row: dict, det, threshold: float) -> dict:
    """The row with the engine's detections (or the engine's error: quarantined)."""
    if isinstance(det, Exception):
        return quarantine(row, STAGE, f"inference_error: {det}", PAYLOAD)
    return {**row, "detections": to_pixels(det, row["width"], row["height"], threshold),
            "picture_embedding": descriptor.l2_normalize(det.picture[None])[0].tolist()}


def detect_batch(batch: pd.DataFrame, engine, threshold: float) -> pd.DataFrame:
    rows, pending, pixels = prepare(records(batch.drop(columns=[c for c in ("format", "size_bytes") if c in batch])))
    if pending:
        for i, det in zip(pending, _detect_each_on_failure(engine, np.stack(pixels))):
            rows[i] = finish(rows[i], det, threshold)
    return pd.DataFrame(rows)


def _detect_each_on_failure(engine, batch: np.ndarray) -> list:
    """One bad image must not fail its neighbours: on a batch error, retry image by image."""
    try:
        return engine.detect(batch)
    except Exception:
        out = []
        for x in batch:
            try:
                out.append(engine.detect(x[None])[0])
            except Exception as e:  # recorded in quarantine, never raised
                out.append(e)
        return out
