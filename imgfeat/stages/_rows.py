"""Helpers for batch rows that carry the quarantine columns through every stage."""

from __future__ import annotations

import pandas as pd


# What every stage carries through for every row, whatever happened to it.
PASS_THROUGH = ("image_id", "sha256", "width", "height", "reused_from", "quarantine_stage", "quarantine_reason")


def is_quarantined(row) -> bool:
    return isinstance(row.get("quarantine_stage"), str)


def is_reused(row) -> bool:
    """Already published with the same model (see schemas.REUSED): no inference for this row."""
    return isinstance(row.get("reused_from"), str)


def quarantine(row: dict, stage: str, reason: str, payload: tuple[str, ...]) -> dict:
    """Mark `row` as failed at `stage`; its payload columns are emptied (it will not be published)."""
    out = dict(row)
    for col in payload:
        out[col] = None
    out["quarantine_stage"], out["quarantine_reason"] = stage, reason[:500]
    return out


def records(batch: pd.DataFrame) -> list[dict]:
    # NaN-free dicts: a missing string comes back from Arrow as None, keep it that way.
    return batch.astype(object).where(batch.notna(), None).to_dict("records")
