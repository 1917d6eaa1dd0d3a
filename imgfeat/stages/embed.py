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


def finish(rows: list[dict], features: np.ndarray, code_bits: int) -> None:
    """Set each row's descriptor and code from the engine's raw features [len(rows), dim]."""
    embeddings = descriptor.l2_normalize(features)
    codes = descriptor.binary_codes(embeddings, code_bits)
    for row, emb, code in zip(rows, embeddings, codes):
        row.update(code=code.tobytes(), code_bits=code_bits, embedding=emb.tolist())


def embed_batch(batch: pd.DataFrame, engine, code_bits: int) -> pd.DataFrame:
    rows, pending, pixels = prepare(records(batch))
    if pending:
        finish([rows[i] for i in pending], engine.features(np.stack(pixels)), code_bits)
    return pd.DataFrame(rows)
