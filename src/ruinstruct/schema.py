"""The dialog record every stage reads and writes.

Records are plain dicts so they go through datasets/pyarrow/json without conversion:

    id         "<source>:<upstream id>" (+ ":ru" for translations)
    source     dolly | oasst1 | chip2 | saiga/<name> | local/<name>
    lang       "en" | "ru"
    messages   [{"role": "system"|"user"|"assistant", "content": str}, ...]
    origin_id  id of the English dialog a translation came from (None for originals)
    license    the source's license, carried to the dataset card
    meta       source-specific extras; translations add "translator" (its id) and
               "mt_logprob" (its score per unit of each message), hub records
               "upstream_revision" (the dataset commit read); stored as a JSON string in
               parquet so that the schema stays identical across sources (pyarrow cannot
               merge ragged structs)
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any, TypedDict

ROLES = ("system", "user", "assistant")
FIELDS = ("id", "source", "lang", "messages", "origin_id", "license", "meta")


class Message(TypedDict):
    role: str
    content: str


class Dialog(TypedDict):
    id: str
    source: str
    lang: str
    messages: list[Message]
    origin_id: str | None
    license: str
    meta: dict[str, Any]


def make_dialog(
    *,
    id: str,
    source: str,
    messages: list[Message],
    license: str,
    lang: str = "en",
    origin_id: str | None = None,
    meta: dict[str, Any] | None = None,
) -> Dialog:
    return Dialog(
        id=id,
        source=source,
        lang=lang,
        messages=[Message(role=m["role"], content=m["content"]) for m in messages],
        origin_id=origin_id,
        license=license,
        meta=null_non_finite(dict(meta or {})),
    )


def null_non_finite(obj: Any) -> Any:
    """`obj` with NaN/Infinity floats replaced by None. Upstream extras written through pandas
    spell a missing value as NaN; JSON has no NaN, and null is what it means."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: null_non_finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [null_non_finite(v) for v in obj]
    return obj


def validate(record: Any) -> list[str]:
    """Reasons why `record` is not a valid dialog; an empty list means valid.

    Valid: every field present with the right type (origin_id a non-empty string or null, meta an
    object when present), at least one user and one assistant message, roles alternating
    user/assistant after an optional leading system message, no empty (whitespace-only) content.
    """
    if not isinstance(record, dict):
        return [f"not an object: {type(record).__name__}"]
    reasons: list[str] = []
    for field in ("id", "source", "lang", "license"):
        if not isinstance(record.get(field), str) or not record.get(field):
            reasons.append(f"missing or empty field: {field}")
    origin = record.get("origin_id")
    if origin is not None and (not isinstance(origin, str) or not origin):
        got = "NaN" if isinstance(origin, float) and origin != origin else f"{type(origin).__name__} {origin!r}"
        reasons.append(f"origin_id must be a non-empty string or null, got {got}")
    if record.get("meta") is not None and not isinstance(record["meta"], dict):
        reasons.append(f"meta is not an object: {type(record['meta']).__name__}")
    msgs = record.get("messages")
    if not isinstance(msgs, list) or not msgs:
        return reasons + ["no messages"]
    roles: list[str] = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            reasons.append(f"message {i}: malformed")
            continue
        if m["role"] not in ROLES:
            reasons.append(f"message {i}: unknown role {m['role']!r}")
        content = m.get("content")
        if not isinstance(content, str):
            reasons.append(f"message {i}: content is not a string")
        elif not content.strip():
            reasons.append(f"message {i}: empty content")
        roles.append(m["role"])
    if reasons:
        return reasons
    body = roles[1:] if roles and roles[0] == "system" else roles
    if "system" in body:
        reasons.append("system message not first")
    if "user" not in body or "assistant" not in body:
        reasons.append("needs at least one user and one assistant message")
    for i, role in enumerate(body):
        expected = "user" if i % 2 == 0 else "assistant"
        if role != expected:
            reasons.append(f"roles do not alternate: turn {i} is {role}, expected {expected}")
            break
    return reasons


def content_hash(obj: Any) -> str:
    """Stable sha256 of a JSON-serialisable object (sorted keys, no whitespace)."""
    blob = json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
