"""Local files already in the dialog-record format (schema.py), JSONL or parquet.

Each record is validated with schema.validate; `meta` may be a JSON string (as in parquet).
Missing id / source / license are filled from the config (`<cfg.name>:<row index>`, cfg.name,
cfg.effective_license); a license set in the config overrides the record's. Everything else is
kept as written.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from ..config import SourceConfig
from ..io import normalise_dialog
from ..schema import Dialog, make_dialog, validate
from .base import LoadResult, Rejected, Row, dialog_id, load_per_row


def convert(obj: dict[str, Any], row: Row, cfg: SourceConfig) -> Dialog:
    try:
        d = normalise_dialog(obj)
    except (json.JSONDecodeError, TypeError) as e:
        raise Rejected(f"meta is not valid JSON: {e}") from None
    if d.get("meta") is None:
        d["meta"] = {}
    if not d.get("id"):
        d["id"] = dialog_id(cfg, row.key)
    if not d.get("source"):
        d["source"] = cfg.name
    if cfg.license or not d.get("license"):
        d["license"] = cfg.effective_license
    if not isinstance(d.get("meta"), dict):
        raise Rejected("meta is not an object")
    if d.get("origin_id") is not None and not isinstance(d["origin_id"], str):
        raise Rejected("origin_id is not a string")
    reasons = validate(d)
    if reasons:
        raise Rejected(*reasons)
    return make_dialog(
        id=d["id"],
        source=d["source"],
        lang=d["lang"],
        license=d["license"],
        messages=d["messages"],
        origin_id=d.get("origin_id"),
        meta=d["meta"],
    )


def load(cfg: SourceConfig, rows: Iterable[Row]) -> LoadResult:
    return load_per_row(cfg, rows, convert)
