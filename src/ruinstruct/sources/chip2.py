"""chip2 (LAION OIG unified_chip2 / Rallio67 chip2-instruct-alpha), two record formats, chosen
per record:

- OIG: {"text": "<human>: ...\\n<bot>: ...", "metadata": {"source": "unified_chip2"}}; any
  number of turns, each starting at a line start with `<human>:` or `<bot>:`;
- pairs: {"user": ..., "bot": ...} (chip2-instruct-alpha JSON; extra fields such as a
  translation are ignored).

The upstream id is the record's "id" when it has one, else its 0-based row index. A trailing
`<human>:` turn that nobody answered is cut off (meta["truncated"] = True); a record with no
`<bot>:` turn at all is rejected.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from ..config import SourceConfig
from ..schema import Dialog, Message, make_dialog
from .base import LoadResult, Rejected, Row, clean_text, dialog_id, load_per_row, text_field

TURN = re.compile(r"(?:^|\n)[ \t]*<(human|bot)>:[ \t]*")
ROLE = {"human": "user", "bot": "assistant"}


def parse_turns(text: str) -> list[Message]:
    """Split an OIG `<human>: ... <bot>: ...` text into messages (raises Rejected)."""
    pieces = TURN.split(text)
    if pieces[0].strip():
        raise Rejected("text before the first <human>: turn")
    if len(pieces) == 1:
        raise Rejected("no <human>: or <bot>: turns")
    messages: list[Message] = []
    for tag, content in zip(pieces[1::2], pieces[2::2], strict=True):
        messages.append(Message(role=ROLE[tag], content=clean_text(content)))
    return messages


def _check_turns(messages: list[Message]) -> tuple[list[Message], bool]:
    if messages[0]["role"] != "user":
        raise Rejected("first turn is not <human>:")
    if not any(m["role"] == "assistant" for m in messages):
        raise Rejected("no <bot>: turn")
    reasons = []
    for i, m in enumerate(messages):
        if i and m["role"] == messages[i - 1]["role"]:
            reasons.append(f"turns do not alternate: turn {i} is a second <{'human' if m['role'] == 'user' else 'bot'}>:")
            break
    for i, m in enumerate(messages):
        if not m["content"]:
            reasons.append(f"empty <{'human' if m['role'] == 'user' else 'bot'}>: turn {i}")
    if reasons:
        raise Rejected(*reasons)
    truncated = messages[-1]["role"] == "user"
    return (messages[:-1] if truncated else messages), truncated


def convert(obj: dict[str, Any], row: Row, cfg: SourceConfig) -> Dialog:
    meta: dict[str, Any] = {}
    if "text" in obj:
        messages = parse_turns(text_field(obj, "text"))
        meta["format"] = "oig"
        if obj.get("metadata") is not None:
            meta["metadata"] = obj["metadata"]
    elif "user" in obj or "bot" in obj:
        user, bot = text_field(obj, "user"), text_field(obj, "bot")
        messages = [Message(role="user", content=user), Message(role="assistant", content=bot)]
        meta["format"] = "pairs"
    else:
        raise Rejected("unknown chip2 record: expected a 'text' field or 'user' and 'bot' fields")
    messages, truncated = _check_turns(messages)
    if truncated:
        meta["truncated"] = True
    upstream = obj.get("id")
    return make_dialog(
        id=dialog_id(cfg, upstream if isinstance(upstream, str | int) and upstream != "" else row.key),
        source=cfg.name,
        lang="en",
        license=cfg.effective_license,
        messages=messages,
        meta=meta,
    )


def load(cfg: SourceConfig, rows: Iterable[Row]) -> LoadResult:
    return load_per_row(cfg, rows, convert)
