"""OpenAssistant/oasst1: flat messages (message_id, parent_id, role prompter|assistant, lang,
rank, deleted, labels, ...) rebuilt into conversation trees, then into dialogs.

The unit of the counts is one message. Every message read ends in one bucket:

Options: `cfg.oasst1` (config.Oasst1Options: policy, lang, spam_threshold).

- excluded_lang: `lang` is not `cfg.oasst1.lang`, or it sits below such a message (by design);
- rejected: malformed line or not UTF-8, missing fields, duplicate message_id, deleted, spam
  label value >= `spam_threshold`, unknown role, empty text, a broken tree (parent_id not in the input, a root that is
  not a prompter, two prompter or two assistant messages in a row, a parent chain that never
  reaches a root), and every message below a rejected one (the reason names the ancestor);
- kept: the message is part of at least one output dialog;
- excluded_unanswered: a prompter message with no usable assistant reply anywhere below it
  (a trailing prompter turn is cut off, never emitted);
- excluded_policy: (policy "best") usable, but not on the chosen path;
- excluded_limit: only in dialogs past `cfg.limit`.

Paths. Children are ordered by rank (0 best; None after every numbered rank), ties broken by
message_id, so the output does not depend on file order within a tree.
- "best": from each root follow the first child down to a leaf; cut trailing prompter turns.
- "all": one dialog per assistant message that has no assistant reply below it (every
  root-to-leaf path, cut after its last assistant turn, without repeating a path that another
  one contains).
Dialog id: "<cfg.name>:<message_id of the last message>". Roots are taken in file order.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from ..config import Oasst1Options, SourceConfig
from ..schema import Dialog, Message, make_dialog
from .base import Collector, LoadResult, Row, clean_text, make_reject

ROLE = {"prompter": "user", "assistant": "assistant"}


def spam_value(message: dict[str, Any]) -> float | None:
    labels = message.get("labels")
    if not isinstance(labels, dict):
        return None
    names, values = labels.get("name") or [], labels.get("value") or []
    for name, value in zip(names, values, strict=False):
        if name == "spam" and isinstance(value, int | float):
            return float(value)
    return None


def _shape_problems(m: dict[str, Any]) -> list[str]:
    reasons = []
    if not isinstance(m.get("message_id"), str) or not m.get("message_id"):
        reasons.append("missing field: message_id")
    if m.get("parent_id") is not None and not isinstance(m.get("parent_id"), str):
        reasons.append("parent_id is not a string")
    if not isinstance(m.get("text"), str):
        reasons.append("missing field: text")
    if not isinstance(m.get("role"), str):
        reasons.append("missing field: role")
    return reasons


def _own_problems(m: dict[str, Any], spam_threshold: float) -> list[str]:
    reasons = []
    if m.get("deleted") is True:
        reasons.append("deleted")
    spam = spam_value(m)
    if spam is not None and spam >= spam_threshold:
        reasons.append(f"spam label {spam:.2f} >= {spam_threshold}")
    if m["role"] not in ROLE:
        reasons.append(f"unknown role {m['role']!r}")
    if not m["text"].strip():
        reasons.append("empty text")
    return reasons


def _child_key(m: dict[str, Any]) -> tuple[bool, float, str]:
    rank = m.get("rank")
    numbered = isinstance(rank, int | float) and not isinstance(rank, bool) and rank == rank  # not NaN
    return (not numbered, float(rank) if numbered else 0.0, m["message_id"])


def load(cfg: SourceConfig, rows: Iterable[Row]) -> LoadResult:
    opts = cfg.oasst1 or Oasst1Options()
    col = Collector(cfg)
    rejects: list[tuple[int, dict[str, Any]]] = []  # (position in input, reject row)

    def reject(pos: int, row: Row, reasons: list[str]) -> None:
        col.counts["rejected"] += 1
        rejects.append((pos, make_reject(cfg, reasons, row)))

    # 1. read
    msgs: dict[str, tuple[int, Row, dict[str, Any]]] = {}
    for pos, row in enumerate(rows):
        col.read()
        if not row.parsed:
            reject(pos, row, [row.unparsed_reason])
            continue
        if not isinstance(row.obj, dict):
            reject(pos, row, [f"not a JSON object: {type(row.obj).__name__}"])
            continue
        problems = _shape_problems(row.obj)
        if problems:
            reject(pos, row, problems)
            continue
        mid = row.obj["message_id"]
        if mid in msgs:
            reject(pos, row, [f"duplicate message_id {mid} (first at {msgs[mid][1].where})"])
            continue
        msgs[mid] = (pos, row, row.obj)

    # 2. the fate of every message: walk each tree from its top
    children: dict[str, list[str]] = defaultdict(list)
    tops: list[str] = []
    for mid, (_, _, m) in msgs.items():
        parent = m.get("parent_id")
        if parent is not None and parent in msgs:
            children[parent].append(mid)
        else:
            tops.append(mid)
    for kids in children.values():
        kids.sort(key=lambda c: _child_key(msgs[c][2]))

    alive: set[str] = set()
    fate: dict[str, tuple[str, Any]] = {}  # mid -> ("excluded", why) | ("rejected", [reasons])
    for top in tops:
        stack: list[tuple[str, tuple[str, Any] | None]] = [(top, None)]
        while stack:
            mid, inherited = stack.pop()
            m = msgs[mid][2]
            down: tuple[str, Any] | None = None
            if m.get("lang") != opts.lang:
                fate[mid] = ("excluded", "lang")
                down = ("excluded", "lang")
            elif inherited is not None:
                fate[mid] = inherited
                down = inherited
            else:
                reasons = _own_problems(m, opts.spam_threshold)
                if reasons:
                    fate[mid] = ("rejected", reasons)
                    down = ("rejected", [f"below removed message {mid} ({'; '.join(reasons)})"])
                else:
                    broken = _structure_problem(m, msgs)
                    if broken:
                        fate[mid] = ("rejected", [broken])
                        down = ("rejected", [f"below message {mid}: {broken}"])
                    else:
                        alive.add(mid)
            for child in reversed(children.get(mid, [])):
                stack.append((child, down))
    for mid in msgs:
        if mid not in fate and mid not in alive:
            fate[mid] = ("rejected", ["broken tree: the parent chain never reaches a root"])

    # 3. paths over the usable messages
    def kids(mid: str) -> list[str]:
        return [c for c in children.get(mid, []) if c in alive]

    answered: dict[str, bool] = {}  # an assistant message at or below it
    for mid in _postorder([t for t in tops if t in alive], kids):
        answered[mid] = msgs[mid][2]["role"] == "assistant" or any(answered[c] for c in kids(mid))

    candidates: list[list[str]] = []
    roots = [t for t in tops if t in alive]
    for root in roots:
        if opts.policy == "best":
            path = [root]
            while kids(path[-1]):
                path.append(kids(path[-1])[0])
            while path and msgs[path[-1]][2]["role"] != "assistant":
                path.pop()
            if path:
                candidates.append(path)
        else:
            stack2: list[list[str]] = [[root]]
            while stack2:
                path = stack2.pop()
                last = path[-1]
                nxt = [c for c in kids(last) if answered[c]]
                if not nxt and msgs[last][2]["role"] == "assistant":
                    candidates.append(path)
                for c in reversed(nxt):
                    stack2.append([*path, c])

    kept_paths = candidates if cfg.limit is None else candidates[: cfg.limit]
    cut_paths = [] if cfg.limit is None else candidates[cfg.limit :]
    used = {mid for p in kept_paths for mid in p}
    cut = {mid for p in cut_paths for mid in p} - used
    for path in kept_paths:
        dialog = _dialog(cfg, opts, path, msgs)
        reasons = col.check(dialog)
        if reasons:  # cannot happen for a path built above; keep the invariant loud
            raise AssertionError(f"oasst1 path {path} gave an invalid dialog: {reasons}")
        col.add_dialog(dialog, msgs[path[-1]][1].where)

    # 4. count every message once
    for mid in msgs:
        pos, row, _ = msgs[mid]
        if mid in alive:
            if mid in used:
                col.counts["kept"] += 1
            elif mid in cut:
                col.exclude("limit")
            elif not answered.get(mid, False):
                col.exclude("unanswered")
            else:
                col.exclude("policy")
        elif fate[mid][0] == "excluded":
            col.exclude(fate[mid][1])
        else:
            reject(pos, row, fate[mid][1])
    col.counts["trees"] = len(roots)
    col.rejects = [r for _, r in sorted(rejects, key=lambda x: x[0])]
    return col.result()


def _structure_problem(m: dict[str, Any], msgs: dict[str, tuple[int, Row, dict[str, Any]]]) -> str | None:
    parent = m.get("parent_id")
    if parent is None:
        if m["role"] != "prompter":
            return f"broken tree: the root is an {m['role']} message, not a prompter"
        return None
    if parent not in msgs:
        return f"broken tree: parent_id {parent} is not in the input"
    if msgs[parent][2]["role"] == m["role"]:
        return f"broken tree: a {m['role']} message replies to a {m['role']} message"
    return None


def _postorder(roots: list[str], kids) -> list[str]:
    out: list[str] = []
    for root in roots:
        stack: list[tuple[str, bool]] = [(root, False)]
        while stack:
            mid, done = stack.pop()
            if done:
                out.append(mid)
                continue
            stack.append((mid, True))
            for c in kids(mid):
                stack.append((c, False))
    return out


def _dialog(
    cfg: SourceConfig, opts: Oasst1Options, path: list[str], msgs: dict[str, tuple[int, Row, dict[str, Any]]]
) -> Dialog:
    ms = [msgs[mid][2] for mid in path]
    return make_dialog(
        id=f"{cfg.name}:{path[-1]}",
        source=cfg.name,
        lang=opts.lang,
        license=cfg.effective_license,
        messages=[Message(role=ROLE[m["role"]], content=clean_text(m["text"])) for m in ms],
        meta={
            "message_tree_id": ms[0].get("message_tree_id"),
            "message_ids": list(path),
            "ranks": [m.get("rank") for m in ms],
            "policy": opts.policy,
        },
    )
