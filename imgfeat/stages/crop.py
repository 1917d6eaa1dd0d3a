"""crop: the highest-scoring object, padded by a margin, cut out of the original picture (the whole
picture's descriptor, from detect, passes through to embed)."""

from __future__ import annotations

import pandas as pd

from imgfeat import decode
from imgfeat.stages._rows import PASS_THROUGH, is_quarantined, is_reused, quarantine, records

STAGE = "crop"
PAYLOAD = ("label", "score", "x1", "y1", "x2", "y2", "crop", "picture_embedding")
MARGIN = 0.08  # of the box's width/height on each side: keeps the object's outline in the crop


def padded(box: tuple[int, int, int, int], width: int, height: int, margin: float = MARGIN):
    x1, y1, x2, y2 = box
    dx, dy = round((x2 - x1) * margin), round((y2 - y1) * margin)
    return max(0, x1 - dx), max(0, y1 - dy), min(width, x2 + dx), min(height, y2 + dy)


def crop_row(row: dict, margin: float = MARGIN) -> dict:
    out = {k: row.get(k) for k in PASS_THROUGH}
    dets = row.get("detections")
    dets = list(dets) if dets is not None else []
    if dets:
        best = max(dets, key=lambda d: d["score"])
        out.update(label=best["label"], score=float(best["score"]),
                   x1=best["x1"], y1=best["y1"], x2=best["x2"], y2=best["y2"])
    else:  # nothing detected: the whole picture is the object
        out.update(label=None, score=0.0, x1=0, y1=0, x2=row["width"], y2=row["height"])
    out["crop"] = cut(row["content"], (out["x1"], out["y1"], out["x2"], out["y2"]), margin)
    out["picture_embedding"] = row.get("picture_embedding")
    return out


def cut(content: bytes, box: tuple[int, int, int, int], margin: float = MARGIN) -> bytes:
    """The padded box cut out of the picture, as PNG bytes."""
    return cut_rgb(decode.decode_rgb(content), box, margin)


def cut_rgb(rgb, box: tuple[int, int, int, int], margin: float = MARGIN) -> bytes:
    x1, y1, x2, y2 = padded(box, rgb.shape[1], rgb.shape[0], margin)
    return decode.encode_png(rgb[y1:y2, x1:x2])


def crop_batch(batch: pd.DataFrame, margin: float = MARGIN) -> pd.DataFrame:
    rows = []
    for row in records(batch):
        passed = {k: row.get(k) for k in PASS_THROUGH}
        if is_quarantined(row):
            rows.append(quarantine(passed, row["quarantine_stage"], row["quarantine_reason"], PAYLOAD))
            continue
        if is_reused(row):  # publish copies the box from the source row
            rows.append({**passed, **dict.fromkeys(PAYLOAD)})
            continue
        try:
            rows.append(crop_row(row, margin))
        except decode.BadImage as e:
            rows.append(quarantine(passed, STAGE, e.reason, PAYLOAD))
    return pd.DataFrame(rows)
