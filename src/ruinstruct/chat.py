"""The paper's two prompt formats as Jinja chat templates, and the labels they train on.

- ``"full"`` (full fine-tuning): the "Human/Assistant" template. The loss is on every token, so
  ``labels == input_ids``.
- ``"lora"``: the system/user/bot template with the Russian system prompt and the special tokens
  separated from the text by spaces. The loss is on the bot answers only, in every turn.

Both templates mark each answer with ``{% generation %}``, so ``apply_chat_template(...,
return_assistant_tokens_mask=True)`` (what TRL's assistant-only loss uses too) yields the answer
mask; :func:`render` derives the LoRA labels from that mask and nothing else. The template is
stored on the tokenizer (``tokenizer.chat_template``), so ``save_pretrained`` writes it beside
the model and generation prompts (``add_generation_prompt=True``) render the same prefix the
model was trained on.

Choices the paper leaves open (its templates show one turn and no per-dialog system message):

- The answer's closing token (``<|endoftext|>`` / ``</s>``) and the space before it are inside
  the generation block, so they are in the loss: the model learns to end its answer, and
  generation stops there (:func:`end_token_id`). The role headers (``<s> bot\\n``,
  ``Assistant:\\n``) and the newlines between blocks are outside it: they are the prompt.
- Multi-turn "full" dialogs repeat ``Human:``/``Assistant:`` after a newline; ``<s>`` starts the
  document once. A dialog's own system message goes in a ``System:`` paragraph before the first
  ``Human:`` (our addition: the paper's template has no system slot).
- In "lora", a dialog's own system message replaces the default Russian one.

Context length: :func:`fit` applies a policy to a dialog longer than ``max_length`` tokens,
``"drop"`` it, or ``"truncate"`` it at a turn boundary (keep the longest run of whole
user+assistant turns from the start that fits; a dialog whose first turn does not fit is
dropped). :func:`render_dialogs` counts kept, truncated and dropped dialogs for the report, and
rejects a dialog whose text contains a special token's string (``</s>``...), which the tokenizer
would read as the token itself.

Heavy imports (transformers) happen inside the functions.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from .errors import UserError

Kind = Literal["full", "lora"]
Policy = Literal["drop", "truncate"]
KINDS: tuple[str, ...] = ("full", "lora")
POLICIES: tuple[str, ...] = ("drop", "truncate")

SYSTEM_PROMPT = "Ты русскоязычный автоматический ассистент. Ты разговариваешь с людьми и помогаешь им."

# The token that closes an answer in each template: what the model learns to emit last, and so
# the id generation should stop at.
END_TOKENS: dict[str, str] = {"full": "<|endoftext|>", "lora": "</s>"}

# One turn renders as the paper's
#   <s> Human:\n{user}\nAssistant:\n{answer} <|endoftext|>
FULL_TEMPLATE = (
    "{{- '<s> ' -}}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}"
    "{{- 'System:\\n' + message['content'] + '\\n' -}}"
    "{%- elif message['role'] == 'user' -%}"
    "{%- if not loop.first and messages[loop.index0 - 1]['role'] == 'assistant' -%}{{- '\\n' -}}{%- endif -%}"
    "{{- 'Human:\\n' + message['content'] + '\\n' -}}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{- 'Assistant:\\n' -}}"
    "{%- generation -%}{{- message['content'] + ' <|endoftext|>' -}}{%- endgeneration -%}"
    "{%- else -%}{{- raise_exception('unknown role: ' + message['role']) -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- 'Assistant:\\n' -}}{%- endif -%}"
)

# One turn renders as the paper's
#   <s> system\n{SYSTEM_PROMPT} </s>\n<s> user\n{user} </s>\n<s> bot\n{answer} </s>
LORA_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set system = messages[0]['content'] -%}{%- set rest = messages[1:] -%}"
    "{%- else -%}"
    "{%- set system = '" + SYSTEM_PROMPT + "' -%}{%- set rest = messages -%}"
    "{%- endif -%}"
    "{{- '<s> system\\n' + system + ' </s>' -}}"
    "{%- for message in rest -%}"
    "{%- if message['role'] == 'user' -%}"
    "{{- '\\n<s> user\\n' + message['content'] + ' </s>' -}}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{- '\\n<s> bot\\n' -}}"
    "{%- generation -%}{{- message['content'] + ' </s>' -}}{%- endgeneration -%}"
    "{%- else -%}{{- raise_exception('unexpected role: ' + message['role']) -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '\\n<s> bot\\n' -}}{%- endif -%}"
)

TEMPLATES: dict[str, str] = {"full": FULL_TEMPLATE, "lora": LORA_TEMPLATE}


def _check_kind(kind: str) -> str:
    if kind not in TEMPLATES:
        raise UserError(f"unknown template {kind!r}: expected one of {', '.join(KINDS)}")
    return kind


def install_template(tokenizer: Any, kind: str) -> Any:
    """Store the `kind` template on `tokenizer` (its ``chat_template``, which ``save_pretrained``
    writes) and return the tokenizer. The answer mask needs a fast tokenizer (token offsets)."""
    tokenizer.chat_template = TEMPLATES[_check_kind(kind)]
    return tokenizer


def template_kind(tokenizer: Any) -> str | None:
    """Which of our templates `tokenizer` carries ("full", "lora"), or None."""
    for kind, template in TEMPLATES.items():
        if getattr(tokenizer, "chat_template", None) == template:
            return kind
    return None


def end_token_id(tokenizer: Any, kind: str) -> int | None:
    """The id of the token that closes an answer in `kind` (generation's stop token), or None
    when the tokenizer has no single token for it (it then learns the pieces)."""
    token = END_TOKENS[_check_kind(kind)]
    ids = tokenizer.encode(token, add_special_tokens=False)
    return ids[0] if len(ids) == 1 else None


def load_tokenizer(model: str | os.PathLike[str], kind: str) -> Any:
    """The tokenizer of a local model folder (or HF id), fast, with the `kind` template."""
    from transformers import AutoTokenizer

    path = Path(model)
    # A path that cannot be a hub id ("org/name") fails at once, not after the hub's retries.
    if not path.exists() and (path.is_absolute() or str(model).startswith(".") or str(model).count("/") != 1):
        raise FileNotFoundError(errno.ENOENT, "model folder not found", str(model))
    tok = AutoTokenizer.from_pretrained(str(model))
    if not getattr(tok, "is_fast", False):
        raise UserError(f"{model}: the answer mask needs a fast tokenizer (tokenizer.json); got {type(tok).__name__}")
    return install_template(tok, kind)


def _messages(dialog: Any) -> list[dict[str, str]]:
    messages = dialog["messages"] if isinstance(dialog, dict) else dialog
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def render(tokenizer: Any, dialog: Any, kind: str) -> dict[str, Any]:
    """`dialog` (a dialog record or its message list) as training text: ``{text, input_ids,
    labels}``. Labels are the input ids for "full"; for "lora" they are -100 outside the
    answers, taken from the template's generation mask (``assistant_masks``)."""
    template = TEMPLATES[_check_kind(kind)]  # passed, not installed: `tokenizer` is left as it was
    messages = _messages(dialog)
    text = tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False)
    enc = tokenizer.apply_chat_template(
        messages, chat_template=template, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    input_ids = list(enc["input_ids"])
    if kind == "full":
        labels = list(input_ids)
    else:
        mask = enc["assistant_masks"]
        if not any(mask):
            # No answer tokens means nothing to learn from; a template or tokenizer fault, not data.
            raise ValueError("the chat template marked no answer tokens (is the tokenizer fast?)")
        labels = [t if m else -100 for t, m in zip(input_ids, mask, strict=True)]
    return {"text": text, "input_ids": input_ids, "labels": labels}


def _turn_ends(messages: list[dict[str, str]]) -> list[int]:
    """Message counts that end on a whole user+assistant turn (a leading system message kept)."""
    return [i + 1 for i, m in enumerate(messages) if m["role"] == "assistant"]


def fit(
    tokenizer: Any, dialog: Any, kind: str, max_length: int | None, policy: str = "drop"
) -> tuple[dict[str, Any] | None, str]:
    """Render `dialog` within `max_length` tokens: (row or None, status), status one of "kept"
    (whole), "truncated" (its first whole turns that fit) or "dropped"."""
    if policy not in POLICIES:
        raise UserError(f"unknown context policy {policy!r}: expected one of {', '.join(POLICIES)}")
    row = render(tokenizer, dialog, kind)
    if max_length is None or len(row["input_ids"]) <= max_length:
        return row, "kept"
    if policy == "drop":
        return None, "dropped"
    messages = _messages(dialog)
    best = None
    # Lengths grow with every turn, so the first prefix that overflows ends the search.
    for end in _turn_ends(messages)[:-1]:
        candidate = render(tokenizer, messages[:end], kind)
        if len(candidate["input_ids"]) > max_length:
            break
        best = candidate
    return (best, "truncated") if best is not None else (None, "dropped")


def context_length(tokenizer: Any) -> int | None:
    """The tokenizer's model_max_length when it is a real limit (transformers stores a huge
    sentinel when the checkpoint sets none)."""
    n = getattr(tokenizer, "model_max_length", None)
    return int(n) if isinstance(n, int) and 0 < n < 10**7 else None


def special_tokens_in(tokenizer: Any, dialog: Any) -> list[str]:
    """Reasons, one per message, when message text contains a special token's string (``</s>``,
    ``<|endoftext|>``...). The tokenizer would read it as that token, not as text: an answer
    holding ``</s>`` would teach the model to stop there, a user message could fake a bot turn."""
    specials = sorted(set(tokenizer.all_special_tokens) | set(END_TOKENS.values()) | {"<s>"})
    reasons = []
    for i, m in enumerate(_messages(dialog)):
        found = [t for t in specials if t in m["content"]]
        if found:
            reasons.append(f"message {i}: contains special token text {', '.join(found)}")
    return reasons


def render_dialogs(
    tokenizer: Any,
    dialogs: Iterable[Any],
    kind: str,
    max_length: int | None = None,
    policy: str = "drop",
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, int]]:
    """Render dialog records: (rows ``{id, text, input_ids, labels}``, reject rows with reasons,
    counts). A dialog is kept whole, truncated, dropped by the context policy, or rejected for
    special-token text in a message (:func:`special_tokens_in`): ``counts["dialogs"] == kept +
    truncated + dropped + special_tokens`` and ``len(rows) == kept + truncated``."""
    from .io import reject_row

    rows: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    counts = {"dialogs": 0, "kept": 0, "truncated": 0, "dropped": 0, "special_tokens": 0}
    for d in dialogs:
        counts["dialogs"] += 1
        unsafe = special_tokens_in(tokenizer, d)
        if unsafe:
            counts["special_tokens"] += 1
            rejects.append(reject_row(unsafe, record=d))
            continue
        row, status = fit(tokenizer, d, kind, max_length, policy)
        counts[status] += 1
        if row is None:
            reason = (f"longer than the context ({max_length} tokens)" if policy == "drop"
                      else f"first turn longer than the context ({max_length} tokens)")
            rejects.append(reject_row([reason], record=d))
            continue
        rows.append({"id": d["id"], **row})
    return rows, rejects, counts


def render_file(
    model: str | os.PathLike[str],
    kind: str,
    input: str | os.PathLike[str],
    output: str | os.PathLike[str],
    max_length: int | None = None,
    policy: str = "drop",
) -> dict[str, Any]:
    """`ruinstruct chat render`: dialog records (JSONL or parquet) to training rows in `output`,
    and every dialog not rendered (invalid record, dropped by the context policy, special-token
    text) with its reasons in the rejects file beside it. Returns the counts; ``input == dialogs + invalid``."""
    from .io import read_dialog_records, rejects_path, write_jsonl

    _check_kind(kind)
    if policy not in POLICIES:
        raise UserError(f"unknown context policy {policy!r}: expected one of {', '.join(POLICIES)}")
    dialogs, invalid = read_dialog_records(input)
    tok = load_tokenizer(model, kind)
    limit = max_length if max_length is not None else context_length(tok)
    rows, not_rendered, counts = render_dialogs(tok, dialogs, kind, limit, policy)
    write_jsonl(output, rows)
    bad = rejects_path(output)
    write_jsonl(bad, invalid + not_rendered)
    return {
        "input": len(dialogs) + len(invalid),
        "invalid": len(invalid),
        **counts,
        "rows": len(rows),
        "rejected": len(invalid) + len(not_rendered),
        "template": kind,
        "max_length": limit,
        "policy": policy,
        "output": str(output),
        "rejects_file": str(bad),
    }
