"""Local files already in the dialog-record format (schema.py), JSONL or parquet.

Each record is validated with schema.validate; `meta` may be a JSON string (as in parquet).
The record's `source` becomes cfg.name (a record's own value, if different, moves to
meta["upstream_source"]): every later stage groups and counts by source name, so a record must not
claim to belong to another source. An id is prefixed with `<cfg.name>:` unless it already is, so
ids stay unique across sources; a missing id is `<cfg.name>:<row index>`. A missing license comes
from the config, and a license set in the config overrides the record's. Everything else is kept
as written.
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
    if d.get("id") is not None and (not isinstance(d["id"], str | int) or isinstance(d["id"], bool)):
        raise Rejected(f"id is not a string or an integer: {type(d['id']).__name__}")
    if not d.get("id"):
        d["id"] = dialog_id(cfg, row.key)
    elif not str(d["id"]).startswith(f"{cfg.name}:"):
        d["id"] = f"{cfg.name}:{d['id']}"
    if d.get("source") and d["source"] != cfg.name and isinstance(d.get("meta"), dict):
        d["meta"] = {**d["meta"], "upstream_source": d["source"]}
    d["source"] = cfg.name
    if cfg.license or not d.get("license"):
        d["license"] = cfg.effective_license
    if not isinstance(d.get("meta"), dict):
        raise Rejected("meta is not an object")
    if d.get("origin_id") is not None and not isinstance(d["origin_id"], str):
        raise Rejected("origin_id is not a string")
    if d.get("origin_id") and not d["origin_id"].startswith(f"{cfg.name}:"):
        d["origin_id"] = f"{cfg.name}:{d['origin_id']}"  # same prefix as the ids it points at
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
