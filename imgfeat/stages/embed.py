"""embed: two descriptors (L2-normalised backbone embeddings) and their packed binary codes: of the
crop (object similarity), described here, and of the whole picture (picture de-duplication), which
detect's inference described; each coded by its own coder."""

from __future__ import annotations

import numpy as np
import pandas as pd

from imgfeat import decode, descriptor
from imgfeat.engines import INPUT_SIZE
from imgfeat.stages._rows import is_quarantined, is_reused, quarantine, records

STAGE = "embed"
PAYLOAD = ("code", "code_bits", "embedding", "picture_code", "picture_embedding")


def prepare(rows: list[dict]) -> tuple[list[dict], list[int], list[np.ndarray]]:
    """Decode and resize each row's crop. -> rows (the crop dropped, the picture's descriptor kept
    for `finish`), their indexes, pixels [size, size, 3] each."""
    pending, pixels = [], []
    for i, row in enumerate(rows):
        crop, picture = row.pop("crop", None), row.get("picture_embedding")
        row.update(dict.fromkeys(PAYLOAD), picture_embedding=picture)
        if is_quarantined(row) or is_reused(row):
            row["picture_embedding"] = None
            continue
        try:
            pixels.append(decode.resize(decode.decode_rgb(crop), INPUT_SIZE))
            pending.append(i)
        except decode.BadImage as e:
            rows[i] = quarantine(row, STAGE, e.reason, PAYLOAD)
    return rows, pending, pixels


def _coder(coder: descriptor.Coder | int) -> descriptor.Coder:
    return descriptor.projection_coder(coder) if isinstance(coder, int) else coder


def finish(rows: list[dict], features: np.ndarray, coder: descriptor.Coder | int,
           picture_coder: descriptor.Coder | int | None = None) -> None:
    """Set each row's descriptors and codes from the engine's raw features of its crop
    [len(rows), dim] and its picture's descriptor (`picture_embedding`, from detect). `coder`,
    `picture_coder`: descriptor.Coder, or a code length for the fixed projection (the picture's
    default: the projection of the crop code's length)."""
    coder = _coder(coder)
    picture_coder = _coder(coder.bits if picture_coder is None else picture_coder)
    embeddings = descriptor.l2_normalize(features)
    pictures = np.array([r["picture_embedding"] for r in rows], np.float32).reshape(len(rows), -1)
    for row, emb, code, pcode in zip(rows, embeddings, coder.codes(embeddings), picture_coder.codes(pictures)):
        row.update(code=code.tobytes(), code_bits=coder.bits, embedding=emb.tolist(), picture_code=pcode.tobytes())


def embed_batch(batch: pd.DataFrame, engine, coder: descriptor.Coder | int,
                picture_coder: descriptor.Coder | int | None = None) -> pd.DataFrame:
    rows, pending, pixels = prepare(records(batch))
    if pending:
        try:
            finish([rows[i] for i in pending], engine.features(np.stack(pixels)), coder, picture_coder)
        except Exception:  # one bad crop must not fail its neighbours: retry one by one
            for i, x in zip(pending, pixels):
                try:
                    finish([rows[i]], engine.features(x[None]), coder, picture_coder)
                except Exception as e:  # recorded in quarantine; the stage fails if too many
                    rows[i] = quarantine(rows[i], STAGE, f"inference_error: {e}", PAYLOAD)
    return pd.DataFrame(rows)
