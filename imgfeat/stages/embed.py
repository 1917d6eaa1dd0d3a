"""embed: the crop's descriptor (L2-normalised backbone embedding) and its packed binary code."""

from __future__ import annotations

import numpy as np
import pandas as pd

from imgfeat import decode, descriptor
from imgfeat.engines import INPUT_SIZE
from imgfeat.stages._rows import is_quarantined, is_reused, quarantine, records

STAGE = "embed"
PAYLOAD = ("code", "code_bits", "embedding")


def prepare(rows: list[dict]) -> tuple[list[dict], list[int], list[np.ndarray]]:
    """Decode and resize the crops to describe. -> rows (crop dropped), their indexes, pixels."""
    pending, pixels = [], []
    for i, row in enumerate(rows):
        crop = row.pop("crop", None)
        row.update(code=None, code_bits=None, embedding=None)
        if is_quarantined(row) or is_reused(row):
            continue
        try:
            pixels.append(decode.resize(decode.decode_rgb(crop), INPUT_SIZE))
            pending.append(i)
        except decode.BadImage as e:
            rows[i] = quarantine(row, STAGE, e.reason, PAYLOAD)
    return rows, pending, pixels


def finish(rows: list[dict], features: np.ndarray, coder: descriptor.Coder | int) -> None:
    """Set each row's descriptor and code from the engine's raw features [len(rows), dim].
    `coder`: a descriptor.Coder, or a code length for the fixed projection."""
    if isinstance(coder, int):
        coder = descriptor.projection_coder(coder)
    embeddings = descriptor.l2_normalize(features)
    codes = coder.codes(embeddings)
    for row, emb, code in zip(rows, embeddings, codes):
        row.update(code=code.tobytes(), code_bits=coder.bits, embedding=emb.tolist())


def embed_batch(batch: pd.DataFrame, engine, coder: descriptor.Coder | int) -> pd.DataFrame:
    rows, pending, pixels = prepare(records(batch))
    if pending:
        try:
            finish([rows[i] for i in pending], engine.features(np.stack(pixels)), coder)
        except Exception:  # one bad crop must not fail its neighbours: retry one by one
            for i, x in zip(pending, pixels):
                try:
                    finish([rows[i]], engine.features(x[None]), coder)
                except Exception as e:  # recorded in quarantine; the stage fails if too many
                    rows[i] = quarantine(rows[i], STAGE, f"inference_error: {e}", PAYLOAD)
    return pd.DataFrame(rows)
