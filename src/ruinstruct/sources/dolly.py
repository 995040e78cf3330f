"""databricks-dolly-15k: {"instruction", "context", "response", "category"} per line.

Upstream has no id field: the upstream id is the 0-based row index (blank lines are not rows;
a malformed line still is one, so ids match line order). One dialog per record:

    user      = instruction, or instruction + "\\n\\n" + context when the context is not empty
                (the instruction first, as the Dolly prompt format and most chat templates do;
                a blank line keeps the two apart for paragraph-wise translation)
    assistant = response
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..config import SourceConfig
from ..schema import Dialog, make_dialog
from .base import LoadResult, Rejected, Row, dialog_id, load_per_row, text_field

CONTEXT_SEPARATOR = "\n\n"


def _field(obj: dict[str, Any], name: str, reasons: list[str], *, required: bool = True) -> str | None:
    try:
        value = text_field(obj, name, required=required)
    except Rejected as e:
        reasons += e.reasons
        return None
    if required and not value:
        reasons.append(f"empty {name}")
    return value


def convert(obj: dict[str, Any], row: Row, cfg: SourceConfig) -> Dialog:
    reasons: list[str] = []
    instruction = _field(obj, "instruction", reasons)
    context = _field(obj, "context", reasons, required=False)
    response = _field(obj, "response", reasons)
    if reasons:
        raise Rejected(*reasons)
    user = instruction + CONTEXT_SEPARATOR + context if context else instruction
    category = obj.get("category")
    return make_dialog(
        id=dialog_id(cfg, row.key),
        source=cfg.name,
        lang="en",
        license=cfg.effective_license,
        messages=[{"role": "user", "content": user}, {"role": "assistant", "content": response}],
        meta={"category": category if isinstance(category, str) else None, "has_context": bool(context)},
    )


def load(cfg: SourceConfig, rows: Iterable[Row]) -> LoadResult:
    return load_per_row(cfg, rows, convert)
