"""Structure: empty or truncated output, broken role structure, lost line breaks."""

from __future__ import annotations

from collections.abc import Iterator

from ..schema import Dialog, validate
from .base import Filter, MessagePair, Reason


class StructureFilter(Filter):
    name = "structure"

    def check_dialog(self, ru: Dialog, en: Dialog) -> Iterator[Reason]:
        bad = validate(ru)
        if bad:
            yield self.reason("invalid", "; ".join(bad[:3]))
        rm, em = ru.get("messages") or [], en.get("messages") or []
        if len(rm) != len(em):
            yield self.reason("message_count", f"{len(rm)} messages, source has {len(em)}")
        r_roles = [m.get("role") if isinstance(m, dict) else None for m in rm]
        e_roles = [m.get("role") for m in em]
        if r_roles != e_roles:
            yield self.reason("roles", f"{'/'.join(map(str, r_roles))} != source {'/'.join(e_roles)}")

    def check_message(self, p: MessagePair) -> Iterator[Reason]:
        cfg = self.cfg
        r, e = p.ru.strip(), p.en.strip()
        if not r:
            if e:
                yield self.reason("empty", "empty message")
            return
        limit = cfg.min_length_ratio * len(e) - cfg.length_slack_chars
        if len(r) < limit:
            yield self.reason(
                "truncated",
                f"{len(r)} chars vs source {len(e)} (ratio {len(r) / max(1, len(e)):.2f} < {cfg.min_length_ratio})",
            )
        if cfg.require_same_line_count:
            rl, el = r.count("\n") + 1, e.count("\n") + 1
            if rl != el:
                yield self.reason("line_count", f"{rl} lines, source has {el}")
