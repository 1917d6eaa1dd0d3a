"""embed: the crop's descriptor (L2-normalised backbone embedding) and its packed binary code."""

from __future__ import annotations

import numpy as np
import pandas as pd

from imgfeat import decode, descriptor
from imgfeat.engines import INPUT_SIZE
from imgfeat.stages._rows import is_quarantined, quarantine, records

STAGE = "embed"
PAYLOAD = ("code", "code_bits", "embedding")


def embed_batch(batch: pd.DataFrame, engine, code_bits: int) -> pd.DataFrame:
    rows = records(batch)
    pending, pixels = [], []
    for i, row in enumerate(rows):
        crop = row.pop("crop", None)
        row.update(code=None, code_bits=None, embedding=None)
        if is_quarantined(row):
            continue
        try:
            pixels.append(decode.resize(decode.decode_rgb(crop), INPUT_SIZE))
            pending.append(i)
        except decode.BadImage as e:
            rows[i] = quarantine(row, STAGE, e.reason, PAYLOAD)
    if pending:
        embeddings = descriptor.l2_normalize(engine.features(np.stack(pixels)))
        codes = descriptor.binary_codes(embeddings, code_bits)
        for i, emb, code in zip(pending, embeddings, codes):
            rows[i].update(code=code.tobytes(), code_bits=code_bits, embedding=emb.tolist())
    return pd.DataFrame(rows)
