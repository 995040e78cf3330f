"""Structure: empty or truncated output, broken role structure, lost line breaks."""

from __future__ import annotations

from ..schema import Dialog, validate
from .base import Decision, Filter, message_pairs


class StructureFilter(Filter):
    name = "structure"

    def check(self, ru: Dialog, en: Dialog) -> Decision:
        cfg = self.cfg
        reasons: list[str] = []
        bad = validate(ru)
        if bad:
            reasons.append(self.reason("invalid", "; ".join(bad[:3])))
        rm, em = ru.get("messages") or [], en.get("messages") or []
        if len(rm) != len(em):
            reasons.append(self.reason("message_count", f"{len(rm)} messages, source has {len(em)}"))
        r_roles = [m.get("role") if isinstance(m, dict) else None for m in rm]
        e_roles = [m.get("role") for m in em]
        if r_roles != e_roles:
            reasons.append(self.reason("roles", f"{'/'.join(map(str, r_roles))} != source {'/'.join(e_roles)}"))
        for p in message_pairs(ru, en):
            r, e = p.ru.strip(), p.en.strip()
            if not r:
                if e:
                    reasons.append(self.reason("empty", f"empty {p.where}"))
                continue
            limit = cfg.structure_min_length_ratio * len(e) - cfg.structure_length_slack_chars
            if len(r) < limit:
                reasons.append(
                    self.reason(
                        "truncated",
                        f"{len(r)} chars vs source {len(e)} (ratio {len(r) / max(1, len(e)):.2f} "
                        f"< {cfg.structure_min_length_ratio}) in {p.where}",
                    )
                )
            if cfg.structure_require_same_line_count:
                rl, el = r.count("\n") + 1, e.count("\n") + 1
                if rl != el:
                    reasons.append(self.reason("line_count", f"{rl} lines, source has {el} in {p.where}"))
        return Decision(tuple(dict.fromkeys(reasons)))
