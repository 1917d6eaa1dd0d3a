"""How close OpenVINO's results in another precision are to f32's on the same pictures.

Each picture goes through the in-process pipeline (imgfeat.pipeline: ingest, detect, crop, embed)
once per precision. The gates a precision must pass before the pipeline may offer it: the kept
object (label, and box IoU >= 0.9) is the same as f32's on at least 97% of the pictures, and where
it is, the embedding's cosine to f32's is at least 0.98. `make bench` prints these figures
(README "Engines"); bf16 does not pass them, so the pipeline runs f32 only.
"""

from __future__ import annotations

import time

import numpy as np

GATES = {"kept_agree": 0.97, "cosine_min": 0.98}


def _iou(a: dict, b: dict) -> float:
    ix = max(0, min(a["x2"], b["x2"]) - max(a["x1"], b["x1"]))
    iy = max(0, min(a["y2"], b["y2"]) - max(a["y1"], b["y1"]))
    inter = ix * iy
    union = (a["x2"] - a["x1"]) * (a["y2"] - a["y1"]) + (b["x2"] - b["x1"]) * (b["y2"] - b["y1"]) - inter
    return inter / union if union else 1.0


def same_object(a: dict, b: dict) -> bool:
    """Two crop rows kept the same object: the same label (or none) and boxes with IoU >= 0.9."""
    return a["label"] == b["label"] and (a["label"] is None or _iou(a, b) >= 0.9)


def _results(files: list[tuple[str, bytes]], model_dir: str, precision: str) -> tuple[dict, dict, float]:
    from imgfeat import pipeline
    from imgfeat.engines import get_engine

    engine = get_engine("openvino", model_dir, 0, precision)
    pipeline.embeddings(pipeline.crops(files[:1], engine), engine)  # compiled before the clock starts
    started = time.perf_counter()
    rows = [r for r in pipeline.crops(files, engine) if r["quarantine_stage"] is None]
    embeddings = pipeline.embeddings(rows, engine)
    seconds = time.perf_counter() - started
    return {r["image_id"]: r for r in rows}, dict(zip((r["image_id"] for r in rows), embeddings)), seconds


def compare(files: list[tuple[str, bytes]], model_dir: str, precision: str, reference: str = "f32") -> dict:
    """`precision` against `reference` on (image_id, bytes) pairs: the share of pictures whose kept
    object agrees, the embeddings' cosine where it does, and the in-process time of each."""
    ref_rows, ref_emb, ref_s = _results(files, model_dir, reference)
    rows, emb, s = _results(files, model_dir, precision)
    ids = sorted(ref_rows)
    agree = [i for i in ids if i in rows and same_object(ref_rows[i], rows[i])]
    cosines = np.array([float(np.dot(ref_emb[i], emb[i])) for i in agree])
    return {"precision": precision, "pictures": len(ids), "kept_agree": len(agree) / len(ids),
            "cosine_min": float(cosines.min()), "cosine_mean": float(cosines.mean()),
            "ms_per_image": 1000 * s / len(ids), "reference_ms_per_image": 1000 * ref_s / len(ids)}


def passes(result: dict) -> bool:
    return all(result[k] >= v for k, v in GATES.items())
