"""embed: two descriptors (L2-normalised backbone embeddings) and their packed binary codes: of the
crop (object similarity) and of the whole picture (picture de-duplication)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from imgfeat import decode, descriptor
from imgfeat.engines import INPUT_SIZE
from imgfeat.stages._rows import is_quarantined, is_reused, quarantine, records

STAGE = "embed"
PAYLOAD = ("code", "code_bits", "embedding", "picture_code", "picture_embedding")
DESCRIBED = ("crop", "picture")  # what each row's pixels hold, in this order


def prepare(rows: list[dict], described: tuple[str, ...] = DESCRIBED) -> tuple[list[dict], list[int], list[np.ndarray]]:
    """Decode and resize what is described of each row (`described`: its crop and its picture).
    -> rows (those columns dropped), their indexes, pixels [len(described), size, size, 3] each."""
    pending, pixels = [], []
    for i, row in enumerate(rows):
        images = [row.pop(c, None) for c in DESCRIBED]
        row.update(dict.fromkeys(PAYLOAD))
        if is_quarantined(row) or is_reused(row):
            continue
        try:
            pixels.append(np.stack([decode.resize(decode.decode_rgb(images[DESCRIBED.index(c)]), INPUT_SIZE)
                                    for c in described]))
            pending.append(i)
        except decode.BadImage as e:
            rows[i] = quarantine(row, STAGE, e.reason, PAYLOAD)
    return rows, pending, pixels


def _coder(coder: descriptor.Coder | int) -> descriptor.Coder:
    return descriptor.projection_coder(coder) if isinstance(coder, int) else coder


def finish(rows: list[dict], features: np.ndarray, coder: descriptor.Coder | int,
           picture_coder: descriptor.Coder | int | None = None) -> None:
    """Set each row's descriptors and codes from the engine's raw features [len(rows), 2, dim] (its
    crop's, its picture's). `coder`, `picture_coder`: descriptor.Coder, or a code length for the
    fixed projection (the picture's default: the projection of the crop code's length)."""
    coder = _coder(coder)
    picture_coder = _coder(coder.bits if picture_coder is None else picture_coder)
    embeddings = [descriptor.l2_normalize(features[:, j]) for j in range(len(DESCRIBED))]
    codes = coder.codes(embeddings[0])
    picture_codes = picture_coder.codes(embeddings[1])
    for row, emb, code, pemb, pcode in zip(rows, embeddings[0], codes, embeddings[1], picture_codes):
        row.update(code=code.tobytes(), code_bits=coder.bits, embedding=emb.tolist(),
                   picture_code=pcode.tobytes(), picture_embedding=pemb.tolist())


def features(engine, pixels: np.ndarray) -> np.ndarray:
    """The engine's features of a batch of pixels [n, k, size, size, 3] -> [n, k, dim]."""
    n, k = pixels.shape[:2]
    out = engine.features(pixels.reshape(n * k, *pixels.shape[2:]))
    return out.reshape(n, k, -1)


def embed_batch(batch: pd.DataFrame, engine, coder: descriptor.Coder | int,
                picture_coder: descriptor.Coder | int | None = None) -> pd.DataFrame:
    rows, pending, pixels = prepare(records(batch))
    if pending:
        try:
            finish([rows[i] for i in pending], features(engine, np.stack(pixels)), coder, picture_coder)
        except Exception:  # one bad crop must not fail its neighbours: retry one by one
            for i, x in zip(pending, pixels):
                try:
                    finish([rows[i]], features(engine, x[None]), coder, picture_coder)
                except Exception as e:  # recorded in quarantine; the stage fails if too many
                    rows[i] = quarantine(rows[i], STAGE, f"inference_error: {e}", PAYLOAD)
    return pd.DataFrame(rows)
