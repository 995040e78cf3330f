"""The Saiga comparison datasets (already Russian; OpenAI-generated, so non-commercial). The
record format is recognised per record, so one loader serves all seven:

- chat: {"messages": [{"role": "user"|"bot"|"system", "content"}, ...], ...}
  IlyaGusev/ru_turbo_saiga, ru_sharegpt_cleaned, oasst1_ru_main_branch. `messages` may also be
  the column form datasets gives for a `sequence` feature: {"role": [...], "content": [...]}.
- instruction: {"instruction", "input"?, "output", ...}
  IlyaGusev/ru_turbo_alpaca, ru_turbo_alpaca_evol_instruct, lksy/ru_instruct_gpt4.
  user = instruction (+ "\\n\\n" + input when not empty), assistant = output.
- roleplay: {"name", "context", "dialogues": [{"chat": [{"role": "user"|"char", ...}], ...}]}
  IlyaGusev/gpt_roleplay_realm (hub split "ru"). Every dialogue is its own dialog and its own
  unit in the counts; the character context becomes the system message.

Roles: bot and char map to assistant. A trailing user turn is cut off (meta["truncated"]).
The upstream id is the record's "id" when present, else its 0-based row index (roleplay:
"<row>/<dialogue index>"). lang is "ru"; nothing here is translated.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..config import SourceConfig
from ..schema import Dialog, Message, make_dialog
from .base import LoadResult, Part, Rejected, Row, clean_text, dialog_id, load_per_row, text_field

ROLES = {"user": "user", "bot": "assistant", "assistant": "assistant", "char": "assistant", "system": "system"}
# Known datasets and their record format (documentation; the format is detected per record).
DATASETS = {
    "ru_turbo_saiga": "chat",
    "ru_sharegpt_cleaned": "chat",
    "oasst1_ru_main_branch": "chat",
    "ru_turbo_alpaca": "instruction",
    "ru_turbo_alpaca_evol_instruct": "instruction",
    "ru_instruct_gpt4": "instruction",
    "gpt_roleplay_realm": "roleplay",
}
META_FIELDS = ("seed", "source", "model_name", "label", "agreement", "overlap", "iteration")


def _messages(raw: Any) -> list[Message]:
    if isinstance(raw, dict) and isinstance(raw.get("role"), list) and isinstance(raw.get("content"), list):
        if len(raw["role"]) != len(raw["content"]):
            raise Rejected("messages: role and content lists differ in length")
        raw = [{"role": r, "content": c} for r, c in zip(raw["role"], raw["content"], strict=True)]
    if not isinstance(raw, list) or not raw:
        raise Rejected("messages: not a non-empty list")
    out: list[Message] = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str):
            raise Rejected(f"message {i}: malformed")
        role = ROLES.get(m.get("role"))  # type: ignore[arg-type]
        if role is None:
            raise Rejected(f"message {i}: unknown role {m.get('role')!r}")
        out.append(Message(role=role, content=clean_text(m["content"])))
    return out


def _truncate(messages: list[Message], meta: dict[str, Any]) -> list[Message]:
    if len(messages) > 1 and messages[-1]["role"] == "user" and any(m["role"] == "assistant" for m in messages):
        meta["truncated"] = True
        return messages[:-1]
    return messages


def _dialog(cfg: SourceConfig, upstream_id: Any, messages: list[Message], meta: dict[str, Any]) -> Dialog:
    body = [m for m in messages if m["role"] != "system"]
    if body and body[0]["role"] != "user":
        raise Rejected("the dialog does not start with a user turn")
    return make_dialog(
        id=dialog_id(cfg, upstream_id),
        source=cfg.name,
        lang="ru",
        license=cfg.effective_license,
        messages=_truncate(messages, meta),
        meta=meta,
    )


def _upstream_id(obj: dict[str, Any], row: Row) -> Any:
    upstream = obj.get("id")
    return upstream if isinstance(upstream, str | int) and upstream != "" else row.key


def convert(obj: dict[str, Any], row: Row, cfg: SourceConfig) -> Dialog | list[Part]:
    meta: dict[str, Any] = {k: obj[k] for k in META_FIELDS if obj.get(k) is not None}
    if "messages" in obj:
        meta["format"] = "chat"
        return _dialog(cfg, _upstream_id(obj, row), _messages(obj["messages"]), meta)
    if "dialogues" in obj:
        return _roleplay(obj, row, cfg)
    if "instruction" in obj:
        meta["format"] = "instruction"
        instruction, output = text_field(obj, "instruction"), text_field(obj, "output")
        extra = text_field(obj, "input", required=False)
        if not instruction:
            raise Rejected("empty instruction")
        if not output:
            raise Rejected("empty output")
        user = instruction + "\n\n" + extra if extra else instruction
        messages = [Message(role="user", content=user), Message(role="assistant", content=output)]
        return _dialog(cfg, _upstream_id(obj, row), messages, meta)
    raise Rejected("unknown Saiga record: expected 'messages', 'instruction' or 'dialogues'")


def _roleplay(obj: dict[str, Any], row: Row, cfg: SourceConfig) -> list[Part]:
    dialogues = obj.get("dialogues")
    if not isinstance(dialogues, list) or not dialogues:
        raise Rejected("dialogues: not a non-empty list")
    context = obj.get("context") if isinstance(obj.get("context"), str) else ""
    system = [Message(role="system", content=clean_text(context))] if context.strip() else []
    parts = []
    for j, d in enumerate(dialogues):
        part_row = Row(obj=obj, raw=None, where=f"{row.where}/dialogues[{j}]", key=f"{row.key}/{j}")
        meta = {"format": "roleplay", "name": obj.get("name")}
        if isinstance(d, dict):
            meta.update({k: d.get(k) for k in ("topic", "model_name") if d.get(k) is not None})
        try:
            if not isinstance(d, dict):
                raise Rejected("dialogue is not an object")
            dialog = _dialog(cfg, part_row.key, system + _messages(d.get("chat")), meta)
        except Rejected as e:
            parts.append(Part(row=part_row, reasons=e.reasons, record=d))
            continue
        parts.append(Part(row=part_row, dialog=dialog, record=d))
    return parts


def load(cfg: SourceConfig, rows: Iterable[Row]) -> LoadResult:
    return load_per_row(cfg, rows, convert)
