"""Build tests/fixtures/filter_set.jsonl: the labelled set the corruption filters are measured on.

    python tools/build_filter_set.py [--shared ../shared] [--out tests/fixtures/filter_set.jsonl]

Deterministic (seeded). Run once; the output is committed, so tests never need ../shared.
Provenance and licenses: tests/fixtures/FILTER_SET_SOURCES.md.

Rows: {"id", "label": "good"|"corrupt", "kind", "en": <dialog>, "ru": <dialog>}.

Good rows
- dolly_real: the 60 real EN->RU machine-translation pairs of the ru_lm log, grouped back into
  their 25 Dolly records (instruction [+ blank line + context] as the user turn, the response
  as the assistant turn; the grouping is fixed below, read off the log order
  context?, instruction, response).
- chip2_real: chip2 user/bot pairs with their real translations. The 13 pairs whose translation
  lost the source's line breaks (lists and code flattened into one paragraph) are labelled
  corrupt, kind real_lines_merged: our pipeline translates paragraph-wise, so that never
  happens to a good translation, and the flattened code/lists are broken.
- ours_code_art: the 40 OASST1 code/ASCII-art/table texts (AlpacaEval rows left out: their
  data license is non-commercial) translated "the way our translator would": the text is cut
  with ruinstruct.translate.segment and every translatable unit replaced by Russian prose
  taken from the real translations above (the meaning does not matter to the filters), every
  protected piece (code, art, table syntax, inline code, URLs) kept verbatim.
- handwritten_*: short dialogs written for this set with hand-made Russian translations: text
  games (tic-tac-toe, chess boards), code snippets in several languages, tables, and
  legitimately repetitive sources (chorus, refrain, punishment lines, countdown, laughter).
- code_comments_translated: code whose comments (only) were translated: the program is intact.

Corrupt rows are made from good ones by realistic corruptions (kinds listed in KINDS below).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import yaml  # noqa: E402

from ruinstruct.filters.numbers import numbers_in  # noqa: E402
from ruinstruct.filters.text import sentences  # noqa: E402
from ruinstruct.schema import make_dialog  # noqa: E402
from ruinstruct.translate.segment import segment  # noqa: E402

SEED = 20240601
#: rows per new NMT-failure kind (from tune and held-out pairs alike; bench/filters.py splits them)
NEW_KIND_ROWS = 60

TEXT = yaml.safe_load((Path(__file__).with_name("filter_set_text.yaml")).read_text(encoding="utf-8"))
# (context, instruction, response) indices into dolly_en_ru_m2m100_log_pairs.jsonl
DOLLY_GROUPS = [tuple(g) for g in TEXT["dolly_groups"]]
LICENSES: dict[str, str] = TEXT["licenses"]
BOARDS = set(TEXT["boards"])
HANDWRITTEN_CODE_ART = [(r["name"], r["en"], r["ru"]) for r in TEXT["handwritten_code_art"]]
# legitimately repetitive sources and their translations
REPETITIVE = [(r["name"], r["user_en"], r["assistant_en"], r["user_ru"], r["assistant_ru"]) for r in TEXT["repetitive"]]
# wrong-language outputs written by hand
WRONG_LANGUAGE = [(r["user_en"], r["assistant_en"], r["user_xx"], r["assistant_xx"]) for r in TEXT["wrong_language"]]
# MT-style keyword translations (the paper: "even language keywords were translated")
KEYWORDS_RU: dict[str, str] = TEXT["keywords_ru"]


def dialog(id_: str, source: str, msgs: list[tuple[str, str]], lang: str, origin: str | None = None) -> dict:
    return dict(make_dialog(id=id_, source=source, lang=lang, origin_id=origin, license=LICENSES.get(source, "Apache-2.0"),
                            messages=[{"role": r, "content": c} for r, c in msgs]))


def pair(id_: str, source: str, en_msgs, ru_msgs) -> tuple[dict, dict]:
    en = dialog(id_, source, en_msgs, "en")
    ru = dialog(id_ + ":ru", source, ru_msgs, "ru", origin=id_)
    return en, ru


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


# ---- the Russian text pool -----------------------------------------------------------------------

_OK_SENT = re.compile(r"^[А-Яа-яЁё][А-Яа-яЁё ,\-:;()]*[.!?]$")


def russian_pool(dolly_pairs: list[dict], chip2: list[dict]) -> tuple[list[str], list[str]]:
    texts = [p["ru_mt"] for p in dolly_pairs]
    for r in chip2:
        texts += [r["user_translated"], r["bot_translated"]]
    sents: list[str] = []
    for t in texts:
        for s in re.split(r"(?<=[.!?])\s+", t.replace("\n", " ")):
            s = s.strip()
            if 15 <= len(s) <= 200 and _OK_SENT.match(s) and " - " not in s:
                sents.append(s)
    sents = sorted(set(sents))
    ws = sorted({w.lower() for s in sents for w in re.findall(r"[А-Яа-яЁё]{4,}", s)})
    return sents, ws


def _tail(s: str) -> str:
    m = re.search(r"[.:?!]$", s)
    return m.group(0) if m else ""


def _with_numbers(text: str, source: str) -> str:
    """`text` with the numbers of `source` appended, in order."""
    nums = [tok for tok, _ in numbers_in(source)]
    return " ".join([text, *nums]) if nums else text


class OurTranslator:
    """Stand-in for our translator: segment() decides what is translated; units get Russian prose."""

    def __init__(self, sents: list[str], words: list[str], rng: random.Random) -> None:
        self.rng = rng
        self.sents = list(sents)
        self.words = list(words)
        rng.shuffle(self.sents)
        self.k = 0
        self.memo: dict[str, str] = {}

    def _next_sentence(self) -> str:
        s = self.sents[self.k % len(self.sents)]
        self.k += 1
        return s

    def unit(self, u: str) -> str:
        """Russian text for one unit: as long as the unit (x1.0-1.2), with the unit's sentences
        (one Russian sentence each) and numbers, so the meaning-level filters (numbers, length,
        untranslated) see a faithful translation."""
        if u in self.memo:
            return self.memo[u]
        factor = self.rng.uniform(1.0, 1.2)
        if len(u) < 25:
            target = max(3, int(len(u) * factor))
            out = []
            while len(" ".join(out)) < target:
                out.append(self.rng.choice(self.words))
            text = " ".join(out)
            if u[:1].isupper():
                text = text[:1].upper() + text[1:]
            text = _with_numbers(text.rstrip(".!?:"), u) + _tail(u)
        else:
            text = " ".join(self._sentence(s, factor) for s in sentences(u))
        self.memo[u] = text
        return text

    def _sentence(self, s: str, factor: float) -> str:
        target = max(3, int(len(s) * factor))
        out = [self._next_sentence().rstrip(".!?")]
        while len(", ".join(out)) < target:
            nxt = self._next_sentence().rstrip(".!?")
            out.append(nxt[:1].lower() + nxt[1:])
        text = ", ".join(out)
        if len(text) > 1.3 * target:  # cut near the target length
            cut = text.rfind(" ", 0, target)
            text = text[: cut if cut > 0 else target]
        return _with_numbers(text.rstrip(",;:- ").rstrip(".!?:"), s) + _tail(s)

    def __call__(self, text: str) -> str:
        return "".join(self.unit(p.text) if p.translate else p.text for p in segment(text))


# ---- corruptions ---------------------------------------------------------------------------------

def ru_messages(d: dict) -> list[list[str]]:
    return [[m["role"], m["content"]] for m in d["messages"]]


def with_messages(d: dict, msgs: list[list[str]] | list[tuple[str, str]], suffix: str) -> dict:
    out = json.loads(json.dumps(d))
    out["id"] = d["id"] + ":" + suffix
    out["messages"] = [{"role": r, "content": c} for r, c in msgs]
    return out


def longest_message_index(d: dict) -> int:
    lens = [len(m["content"]) for m in d["messages"]]
    return max(range(len(lens)), key=lambda i: (d["messages"][i]["role"] == "assistant", lens[i]))


def prose_line_indices(text: str, min_len: int = 40) -> list[int]:
    """Lines that are plain Russian prose (no code/art), long enough to corrupt."""
    lines = text.split("\n")
    fenced = False
    out = []
    for i, ln in enumerate(lines):
        if ln.strip().startswith(("```", "~~~")):
            fenced = not fenced
            continue
        if fenced or ln.startswith(("    ", "\t", "|")):
            continue
        if len(ln) >= min_len and len(re.findall(r"[А-Яа-яЁё]", ln)) > 0.6 * len(ln.replace(" ", "")):
            out.append(i)
    return out


def corrupt_line(d: dict, rng: random.Random, fn, suffix: str) -> dict | None:
    """Apply fn(line, rng) -> new line to one prose line of the longest message."""
    msgs = ru_messages(d)
    order = sorted(range(len(msgs)), key=lambda i: -len(msgs[i][1]))
    for mi in order:
        idx = prose_line_indices(msgs[mi][1])
        if not idx:
            continue
        lines = msgs[mi][1].split("\n")
        li = rng.choice(idx)
        lines[li] = fn(lines[li], rng)
        msgs[mi][1] = "\n".join(lines)
        return with_messages(d, msgs, suffix)
    return None


def _cut_words(line: str, rng: random.Random) -> tuple[list[str], int]:
    ws = line.split(" ")
    k = rng.randint(max(2, len(ws) // 3), max(2, len(ws) - 1))
    return ws, k


def loop_phrase(line: str, rng: random.Random) -> str:
    ws, k = _cut_words(line, rng)
    m = rng.randint(2, 4)
    phrase = " ".join(w.strip(".,;:!?") for w in ws[max(0, k - m) : k])
    reps = rng.randint(4, 12)
    return " ".join(ws[:k]) + ", " + ", ".join([phrase] * reps)


def loop_token(line: str, rng: random.Random) -> str:
    ws, k = _cut_words(line, rng)
    w = ws[k - 1].strip(".,;:!?") or "и"
    sep = rng.choice([" ", ", "])
    return " ".join(ws[:k]) + sep + sep.join([w] * rng.randint(5, 25))


def loop_char(line: str, rng: random.Random) -> str:
    ws, k = _cut_words(line, rng)
    c = rng.choice([":", "-", "!", "=", "*", "_", ".", "?", "а", "о", ")", "~"])
    return " ".join(ws[:k]) + rng.choice(["", " "]) + c * rng.randint(8, 40)


def loop_nospace(line: str, rng: random.Random) -> str:
    ws, k = _cut_words(line, rng)
    m = rng.randint(1, 3)
    unit = " ".join(w.strip(".,;:!?") for w in ws[max(0, k - m) : k])
    unit = unit[:1].upper() + unit[1:]
    return " ".join(ws[:k]) + " " + unit * rng.randint(3, 8)


def loop_sentence(line: str, rng: random.Random) -> str:
    sents = re.split(r"(?<=[.!?])\s+", line)
    s = max(sents, key=len)
    return line + " " + " ".join([s] * rng.randint(3, 6))


def make_fragment_inserter(fragment: str, mode: str):
    def fn(line: str, rng: random.Random) -> str:
        ws = line.split(" ")
        k = rng.randint(1, max(1, len(ws) - 1))
        if mode == "append":
            return line + " " + fragment
        if mode == "replace_tail":
            return " ".join(ws[:k]) + " " + fragment
        return " ".join(ws[:k]) + " " + fragment + " " + " ".join(ws[k:])

    return fn


def hallucinate_long(d: dict, tr: OurTranslator) -> dict:
    msgs = ru_messages(d)
    mi = longest_message_index(d)
    base = msgs[mi][1]
    extra = []
    while len(" ".join(extra)) < 1.6 * len(base) + 60:
        extra.append(tr._next_sentence())
    lines = base.split("\n")
    li = max(range(len(lines)), key=lambda i: len(lines[i]))
    lines[li] = lines[li] + " " + " ".join(extra)
    msgs[mi][1] = "\n".join(lines)
    return with_messages(d, msgs, "long")


def truncate(d: dict, rng: random.Random) -> dict:
    msgs = ru_messages(d)
    mi = longest_message_index(d)
    text = msgs[mi][1]
    cut = int(len(text) * rng.uniform(0.1, 0.35))
    cut = text.rfind(" ", 0, max(cut, 1)) if " " in text[:cut] else cut
    msgs[mi][1] = text[: max(cut, 1)].rstrip()
    return with_messages(d, msgs, "trunc")


def break_roles(d: dict, variant: int) -> dict:
    msgs = ru_messages(d)
    if variant == 0:  # roles swapped
        msgs = [["assistant" if r == "user" else "user", c] for r, c in msgs]
    elif variant == 1:  # answer lost
        msgs = msgs[:-1]
    elif variant == 2:  # user and answer merged into one message
        msgs = [["user", "\n".join(c for _, c in msgs)]]
    elif variant == 3:  # a message duplicated
        msgs = [*msgs, msgs[-1]]
    else:  # a system message invented
        msgs = [["system", "Ты полезный помощник."], *msgs]
    return with_messages(d, msgs, f"roles{variant}")


def empty_message(d: dict, rng: random.Random) -> dict:
    msgs = ru_messages(d)
    msgs[rng.randrange(len(msgs))][1] = rng.choice(["", " ", "\n"])
    return with_messages(d, msgs, "empty")


def merge_lines(d: dict, rng: random.Random) -> dict | None:
    msgs = ru_messages(d)
    multi = [i for i, (_, c) in enumerate(msgs) if c.count("\n") >= 2]
    if not multi:
        return None
    mi = rng.choice(multi)
    msgs[mi][1] = re.sub(r"\s*\n\s*", " ", msgs[mi][1])
    return with_messages(d, msgs, "merged")


def untranslated(en: dict, ru: dict, variant: int) -> dict:
    msgs = ru_messages(ru)
    en_msgs = ru_messages(en)
    if variant == 0:  # everything copied
        msgs = en_msgs
    else:  # the longest answer left in English
        mi = longest_message_index(en)
        msgs[mi][1] = en_msgs[mi][1]
    return with_messages(ru, msgs, f"untr{variant}")


def untranslated_line(en: dict, ru: dict, rng: random.Random) -> dict | None:
    msgs, en_msgs = ru_messages(ru), ru_messages(en)
    for mi in sorted(range(len(msgs)), key=lambda i: -len(msgs[i][1])):
        rl, el = msgs[mi][1].split("\n"), en_msgs[mi][1].split("\n")
        if len(rl) != len(el):
            continue
        cands = [i for i in prose_line_indices(msgs[mi][1]) if len(re.findall(r"\b[a-z]{2,}\b", el[i])) >= 8]
        if cands:
            i = rng.choice(cands)
            rl[i] = el[i]
            msgs[mi][1] = "\n".join(rl)
            return with_messages(ru, msgs, "untrline")
    return None


# code corruptions: applied to the lines inside fences / code-looking lines of the translation

def code_line_mask(text: str) -> list[bool]:
    from ruinstruct.translate.segment import looks_like_code

    lines = text.split("\n")
    mask, fenced = [], False
    for ln in lines:
        if ln.strip().startswith("```"):
            if not (ln.strip().endswith("```") and len(ln.strip()) > 3 and ln.strip() != "```"):
                fenced = not fenced
            mask.append(False)
            continue
        mask.append(fenced or (bool(ln.strip()) and looks_like_code(ln.strip())))
    return mask


def map_code_lines(d: dict, fn, suffix: str) -> dict | None:
    msgs = ru_messages(d)
    changed = False
    for m in msgs:
        lines = m[1].split("\n")
        mask = code_line_mask(m[1])
        new = [fn(ln) if mk else ln for ln, mk in zip(lines, mask, strict=True)]
        if new != lines:
            changed = True
        m[1] = "\n".join(new)
    return with_messages(d, msgs, suffix) if changed else None


_STR_OR_COMMENT = re.compile(r"(\"[^\"\n]*\"|'[^'\n]*'|`[^`\n]*`|(?:^|\s)(?:#|//).*$)")


def _outside_strings(line: str, fn) -> str:
    parts = _STR_OR_COMMENT.split(line)
    return "".join(p if i % 2 else fn(p) for i, p in enumerate(parts))


def translate_keywords(rng: random.Random):
    p = rng.uniform(0.5, 1.0)

    def sub(m: re.Match) -> str:
        w = m.group(0)
        return KEYWORDS_RU[w] if w in KEYWORDS_RU and rng.random() < p else w

    return lambda ln: _outside_strings(ln, lambda s: re.sub(r"\b[A-Za-z]+\b", sub, s))


def translate_identifiers(text: str, rng: random.Random, words: list[str]):
    idents = sorted({w for w in re.findall(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b|\b[a-z]+[A-Z]\w*\b", text)})
    if not idents:
        idents = sorted({w for w in re.findall(r"\b[a-z]{4,}\b", text) if w not in KEYWORDS_RU})
    pick = rng.sample(idents, min(len(idents), rng.randint(1, 3)))
    mapping = {w: rng.choice(words) + "_" + rng.choice(words) for w in pick}
    return lambda ln: _outside_strings(ln, lambda s: re.sub(r"\b\w+\b", lambda m: mapping.get(m.group(0), m.group(0)), s))


def strip_indent(ln: str) -> str:
    return ln.lstrip()


def punct_changes(rng: random.Random):
    ops = rng.sample(
        [
            lambda s: re.sub(r'"([^"\n]*)"', r"«\1»", s),
            lambda s: s.replace("==", "="),
            lambda s: s.replace("{", "(").replace("}", ")"),
            lambda s: re.sub(r":\s*$", ".", s),
            lambda s: s.replace("[", "(").replace("]", ")"),
            lambda s: re.sub(r"(\w)_(\w)", r"\1 \2", s),
            lambda s: s.replace("(", " (").replace(")", ") "),
            lambda s: s.replace(";", "."),
        ],
        2,
    )

    def fn(ln: str) -> str:
        for op in ops:
            ln = op(ln)
        return ln

    return fn


def translate_comments(words: list[str], rng: random.Random):
    def fn(ln: str) -> str:
        m = re.search(r"(^|\s)(#|//)\s?(.*)$", ln)
        if not m or ln.strip().startswith("#include") or not re.search(r"[A-Za-z]{2,}", m.group(3)):
            return ln
        n = max(1, len(m.group(3).split()))
        ru = " ".join(rng.choice(words) for _ in range(n)).capitalize()
        return ln[: m.start(3)] + ru

    return fn


def translate_inline(d: dict, rng: random.Random, words: list[str]) -> dict | None:
    msgs = ru_messages(d)
    changed = False
    for m in msgs:
        lines = m[1].split("\n")
        mask = code_line_mask(m[1])
        for i, ln in enumerate(lines):
            if mask[i] or ln.strip().startswith("```"):
                continue
            new = re.sub(r"`([^`\n]+)`", lambda _m: rng.choice([f"`{rng.choice(words)}`", rng.choice(words)]), ln)
            if new != ln:
                lines[i], changed = new, True
        m[1] = "\n".join(lines)
    return with_messages(d, msgs, "inline") if changed else None


# ASCII art / board / table corruptions

def art_line_mask(text: str) -> list[bool]:
    out = []
    for ln in text.split("\n"):
        ns = sum(1 for c in ln if not c.isspace())
        wl = sum(len(w) for w in re.findall(r"[^\W\d_]{2,}", ln))
        out.append(ns >= 3 and wl < 0.3 * ns and not ln.strip().startswith("```"))
    return out


_HOMO = {"X": "Х", "O": "О", "x": "х", "o": "о", "P": "Р", "p": "р", "B": "В", "K": "К", "c": "с", "e": "е", "a": "а", "H": "Н", "M": "М", "T": "Т", "E": "Е"}
_SYM = {"_": "-", "/": "|", "\\": "/", "|": "I", "-": "—", "'": "’", '"': "«", "=": "-", "~": "-", "^": "'", "*": "x", "+": "-", "#": "Н", "[": "(", "]": ")", "(": "[", ")": "]", ".": ",", ":": ";", "@": "а", "<": "«", ">": "»", "`": "'"}


def break_art(d: dict, rng: random.Random, variant: str) -> dict | None:
    msgs = ru_messages(d)
    changed = False
    for m in msgs:
        lines = m[1].split("\n")
        mask = art_line_mask(m[1])
        idx = [i for i, mk in enumerate(mask) if mk]
        if not idx:
            continue
        if variant == "chars":
            for i in rng.sample(idx, min(len(idx), rng.randint(1, 3))):
                chars = list(lines[i])
                pos = [k for k, c in enumerate(chars) if c in _SYM or c in _HOMO]
                for k in rng.sample(pos, min(len(pos), rng.randint(1, 3))):
                    chars[k] = _HOMO.get(chars[k]) or _SYM[chars[k]]
                lines[i] = "".join(chars)
        elif variant == "homoglyph":  # X/O and other letters written in Cyrillic
            for i in idx:
                lines[i] = "".join(_HOMO.get(c, c) for c in lines[i])
        elif variant == "reflow":  # whitespace normalised the way MT output is
            for i in idx:
                lines[i] = re.sub(r"\s+", " ", lines[i]).strip()
        elif variant == "dash":  # MT typography: -- to em dash, quotes
            for i in idx:
                lines[i] = lines[i].replace("---", "—").replace("--", "—").replace('"', "»").replace("...", "…")
        new = "\n".join(lines)
        if new != m[1]:
            m[1], changed = new, True
    return with_messages(d, msgs, f"art_{variant}") if changed else None


def break_table(d: dict, rng: random.Random, variant: int) -> dict | None:
    msgs = ru_messages(d)
    for m in msgs:
        lines = m[1].split("\n")
        delim = [i for i, ln in enumerate(lines) if re.fullmatch(r"\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*", ln) and "|" in ln]
        if not delim:
            continue
        di = delim[0]
        body = [i for i in range(di + 1, len(lines)) if lines[i].count("|") >= 2]
        if variant == 0:  # delimiter row typographed
            lines[di] = lines[di].replace("---", "—").replace("--", "—")
        elif variant == 1 and body:  # two cells merged (a pipe lost)
            i = rng.choice(body)
            k = [j for j, c in enumerate(lines[i]) if c == "|"]
            if len(k) >= 3:
                j = k[len(k) // 2]
                lines[i] = lines[i][:j] + lines[i][j + 1 :]
        elif variant == 2 and body:  # numeric cells rewritten (decimal comma, Cyrillic x, spaces)
            for i in rng.sample(body, min(len(body), 3)):
                lines[i] = re.sub(r"(\d)\.(\d)", r"\1,\2", lines[i]).replace(" x ", " х ")
                lines[i] = re.sub(r"(\d),(\d{3})", r"\1 \2", lines[i]) if "," in lines[i] else lines[i] + ""
        new = "\n".join(lines)
        if new != m[1]:
            m[1] = new
            return with_messages(d, msgs, f"table{variant}")
    return None


# ---- NMT failures on real translations: numbers, one sentence in English, omissions, additions --

# Real translations whose source sentences the MT dropped (read off the pairs; the filters found
# them): labelled corrupt, kind real_omission, like real_lines_merged.
REAL_OMISSIONS = {
    "dolly:4": "the last two sentences (2010, 2012) of the Komorida biography",
    "chip2:3": "'It's also important to stay off of it ...'",
    "chip2:50": "'So the Roman Gallic Wars army would not struggle ...'",
    "chip2:69": "'Additionally, you can use social media ...'",
}


def split_of(en_id: str) -> str:
    """The held-out split: chip2 records with an odd index; the thresholds of the numbers,
    untranslated and length filters were tuned on the Dolly log pairs and the even chip2 records."""
    src, _, k = en_id.partition(":")
    return "heldout" if src == "chip2" and k.isdigit() and int(k) % 2 == 1 else "tune"


def prose_slots(en: dict, ru: dict, min_len: int = 40) -> list[tuple[int, int]]:
    """(message, line) of aligned Russian prose lines, longest messages first."""
    out = []
    for mi, (e, r) in enumerate(zip(en["messages"], ru["messages"], strict=True)):
        el, rl = e["content"].split("\n"), r["content"].split("\n")
        if len(el) != len(rl):
            continue
        out += [(mi, li) for li in prose_line_indices(r["content"], min_len) if el[li].strip()]
    return out


def replace_line(d: dict, mi: int, li: int, line: str, suffix: str) -> dict:
    msgs = ru_messages(d)
    lines = msgs[mi][1].split("\n")
    lines[li] = line
    msgs[mi][1] = "\n".join(lines)
    return with_messages(d, msgs, suffix)


def _lines(d: dict, mi: int) -> list[str]:
    return d["messages"][mi]["content"].split("\n")


def _other_number(tok: str, rng: random.Random) -> str:
    digits = re.sub(r"\D", "", tok)
    n = int(digits[:9] or "0")
    if 1800 <= n <= 2100:
        new = n + rng.choice([-3, -2, -1, 1, 2, 3])
    elif n < 10:
        new = n + rng.choice([1, 2, 3])
    else:
        new = rng.choice([n + rng.randint(1, 9), n * 10, max(1, n // 10)]) if n >= 20 else n + rng.randint(1, 9)
    if new == n:
        new = n + 1
    return str(new)


def change_number(en: dict, ru: dict, rng: random.Random, variant: str) -> dict | None:
    """variant change: a number of the translation gets another value; drop: a number is
    deleted; invent: a year the source does not have is added to a sentence."""
    slots = prose_slots(en, ru)
    rng.shuffle(slots)
    for mi, li in slots:
        r, e = _lines(ru, mi)[li], _lines(en, mi)[li]
        if variant == "invent":
            ss = sentences(r)
            if numbers_in(e) or len(ss) < 1:
                continue
            k = rng.randrange(len(ss))
            year = rng.randint(1950, 2015)
            ss[k] = f"В {year} году " + ss[k][:1].lower() + ss[k][1:]
            return replace_line(ru, mi, li, " ".join(ss), "num-invent")
        nums = [m for m in re.finditer(r"\d[\d\u00a0 ,.]*\d|\d", r) if not re.search(r"\d[.,]?$", r[: m.start()])]
        nums = [m for m in nums if any(v & numbers_in(e)[k][1] for v in [numbers_in(m.group(0).strip(" ,."))[0][1]] for k in range(len(numbers_in(e))))] if numbers_in(e) else []
        if not nums:
            continue
        m = rng.choice(nums)
        tok = m.group(0).strip(" ,.")
        start = r.index(tok, m.start())
        if variant == "change":
            new = r[:start] + _other_number(tok, rng) + r[start + len(tok) :]
        else:
            new = (r[:start].rstrip() + " " + r[start + len(tok) :].lstrip()).strip()
        return replace_line(ru, mi, li, new, f"num-{variant}")
    return None


def english_sentence(en: dict, ru: dict, rng: random.Random) -> dict | None:
    """One sentence of a multi-sentence paragraph left in English (the source's sentence)."""
    slots = prose_slots(en, ru)
    rng.shuffle(slots)
    for mi, li in slots:
        es, rs = sentences(_lines(en, mi)[li]), sentences(_lines(ru, mi)[li])
        if len(es) != len(rs) or len(rs) < 2:
            continue
        cands = [k for k in range(len(es)) if len(re.findall(r"\b[a-z]{2,}\b", es[k])) >= 3]
        if not cands:
            continue
        k = rng.choice(cands)
        rs[k] = es[k]
        return replace_line(ru, mi, li, " ".join(rs), "en-sentence")
    return None


def omit_sentences(en: dict, ru: dict, rng: random.Random) -> dict | None:
    """One sentence (two in paragraphs of 5+) of a paragraph dropped."""
    slots = prose_slots(en, ru)
    rng.shuffle(slots)
    for mi, li in slots:
        rs = sentences(_lines(ru, mi)[li])
        if len(rs) < 2:
            continue
        n = 2 if len(rs) >= 5 else 1
        k = rng.randrange(len(rs) - n + 1)
        del rs[k : k + n]
        return replace_line(ru, mi, li, " ".join(rs), "omit")
    return None


def add_sentence(en: dict, ru: dict, rng: random.Random, pool: list[str]) -> dict | None:
    """A fluent Russian sentence from another translation inserted into a paragraph."""
    slots = prose_slots(en, ru, min_len=20)
    rng.shuffle(slots)
    for mi, li in slots:
        rs = sentences(_lines(ru, mi)[li])
        extra = rng.choice(pool)
        if extra in rs:
            continue
        rs.insert(rng.randint(0, len(rs)), extra)
        return replace_line(ru, mi, li, " ".join(rs), "add")
    return None


# ---- build ---------------------------------------------------------------------------------------

def build(shared: Path) -> list[dict]:
    rng = random.Random(SEED)
    data = shared / "data"
    dolly_pairs = read_jsonl(data / "mt_ru_samples/dolly_en_ru_m2m100_log_pairs.jsonl")
    chip2 = read_jsonl(data / "instruct/chip2_instruct_alpha_v6a_2_en_ru_sample.jsonl")
    examples = read_jsonl(data / "filter_examples/en_code_ascii_tables.jsonl")
    fragments = [r["fragment"] for r in read_jsonl(data / "mt_ru_samples/degenerate_fragments_ru_lm_filter_rules.jsonl")]
    assert len(dolly_pairs) == 60 and len(chip2) == 102 and len(examples) == 40 and len(fragments) == 13
    sents, words = russian_pool(dolly_pairs, chip2)

    rows: list[dict] = []

    def add(label: str, kind: str, en: dict, ru: dict) -> None:
        rows.append({"id": f"{kind}-{sum(r['kind'] == kind for r in rows):03d}", "label": label, "kind": kind, "en": en, "ru": ru})

    # -- good: real MT ------------------------------------------------------------------------
    for k, (ctx, ins, resp) in enumerate(DOLLY_GROUPS):
        def txt(i, key):
            return dolly_pairs[i][key]

        u_en = txt(ins, "en") + (("\n\n" + txt(ctx, "en")) if ctx is not None else "")
        u_ru = txt(ins, "ru_mt") + (("\n\n" + txt(ctx, "ru_mt")) if ctx is not None else "")
        en, ru = pair(f"dolly:{k}", "dolly", [("user", u_en), ("assistant", txt(resp, "en"))],
                      [("user", u_ru), ("assistant", txt(resp, "ru_mt"))])
        add("good", "dolly_real", en, ru)
    for k, r in enumerate(chip2):
        en, ru = pair(f"chip2:{k}", "chip2", [("user", r["user"]), ("assistant", r["bot"])],
                      [("user", r["user_translated"]), ("assistant", r["bot_translated"])])
        merged = any(a.strip().count("\n") != b.strip().count("\n") for a, b in
                     ((r["user"], r["user_translated"]), (r["bot"], r["bot_translated"])))
        add("corrupt" if merged else "good", "real_lines_merged" if merged else "chip2_real", en, ru)

    # -- good: our translator on code / art / tables --------------------------------------------
    tr = OurTranslator(sents, words, random.Random(SEED + 1))
    for ex in examples:
        if "message_id" not in ex:
            continue  # AlpacaEval rows: non-commercial data license, left out
        tr.memo.clear()
        if ex["role"] == "prompter":
            en_msgs = [("user", ex["text"]), ("assistant", "Sure, here it is.")]
        else:
            en_msgs = [("user", ex["parent_prompt"]), ("assistant", ex["text"])]
        en, ru = pair(f"oasst1:{ex['message_id']}", "oasst1", en_msgs, [(r, tr(c)) for r, c in en_msgs])
        ru["meta"] = {"kind": ex["kind"]}
        add("good", "ours_code_art", en, ru)
    for name, en_text, ru_text in HANDWRITTEN_CODE_ART:
        eu, ea = en_text.split("\n---\n", 1) if "\n---\n" in en_text else ("Let's continue.", en_text)
        ruu, rua = ru_text.split("\n---\n", 1) if "\n---\n" in ru_text else ("Давай продолжим.", ru_text)
        en, ru = pair(f"local/handwritten:{name}", "local/handwritten", [("user", eu), ("assistant", ea)],
                      [("user", ruu), ("assistant", rua)])
        add("good", "handwritten_code_art", en, ru)
    for name, ue, ae, ur, ar in REPETITIVE:
        en, ru = pair(f"local/handwritten:rep-{name}", "local/handwritten", [("user", ue), ("assistant", ae)],
                      [("user", ur), ("assistant", ar)])
        add("good", "repetitive_source", en, ru)

    goods = [(r["en"], r["ru"]) for r in rows if r["label"] == "good"]
    prose_goods = [(e, r) for e, r in goods if e["source"] in ("dolly", "chip2")]
    code_goods = [
        (r["en"], r["ru"]) for r in rows
        if r["label"] == "good" and (r["kind"] in ("ours_code_art", "handwritten_code_art"))
        and any(any(code_line_mask(m["content"])) for m in r["ru"]["messages"])
    ]
    art_goods = [
        (r["en"], r["ru"]) for r in rows
        if r["label"] == "good" and r["kind"] in ("ours_code_art", "handwritten_code_art")
        and any(any(art_line_mask(m["content"])) for m in r["ru"]["messages"])
    ]
    table_goods = [(e, r) for e, r in art_goods if "|---" in json.dumps(r, ensure_ascii=False) or "| ---" in json.dumps(r, ensure_ascii=False) or "|----" in json.dumps(r, ensure_ascii=False)]

    # good: code whose comments were translated (program intact)
    for en, ru in rng.sample(code_goods, 6):
        c = map_code_lines(ru, translate_comments(words, rng), "comments")
        if c is not None and c != ru:
            add("good", "code_comments_translated", en, c)

    # -- corrupt --------------------------------------------------------------------------------
    def sample(pool, n):
        return [pool[i] for i in sorted(rng.sample(range(len(pool)), min(n, len(pool))))]

    for kind, fn, n in (
        ("loop_phrase", loop_phrase, 12),
        ("loop_token", loop_token, 9),
        ("loop_char", loop_char, 9),
        ("loop_nospace", loop_nospace, 8),
        ("loop_sentence", loop_sentence, 8),
    ):
        for en, ru in sample(prose_goods + code_goods[:6], n):
            c = corrupt_line(ru, rng, fn, kind)
            if c is not None:
                add("corrupt", kind, en, c)

    for fi, frag in enumerate(fragments):
        for mode in ("inside", "replace_tail"):
            en, ru = rng.choice(prose_goods)
            c = corrupt_line(ru, rng, make_fragment_inserter(frag, mode), f"frag{fi}{mode[0]}")
            if c is not None:
                add("corrupt", "degenerate_fragment", en, c)

    for en, ru in sample(prose_goods, 6):
        add("corrupt", "hallucinated_long", en, hallucinate_long(ru, tr))

    for en, ru in sample(code_goods, 16):
        c = map_code_lines(ru, translate_keywords(rng), "kw")
        if c is not None:
            add("corrupt", "translated_code_keywords", en, c)
    for en, ru in sample(code_goods, 8):
        text = "\n".join(m["content"] for m in ru["messages"])
        c = map_code_lines(ru, translate_identifiers(text, rng, words), "ident")
        if c is not None:
            add("corrupt", "translated_code_identifiers", en, c)
    for en, ru in sample([g for g in code_goods if re.search(r"\n[ \t]+\S", g[1]["messages"][-1]["content"])], 8):
        c = map_code_lines(ru, strip_indent, "indent")
        if c is not None:
            add("corrupt", "code_indent_stripped", en, c)
    for en, ru in sample(code_goods, 8):
        c = map_code_lines(ru, punct_changes(rng), "punct")
        if c is not None:
            add("corrupt", "code_punctuation_changed", en, c)
    inline_pool = [g for g in goods if re.search(r"(?<!`)`[^`\n]+`(?!`)", g[1]["messages"][-1]["content"])]
    for en, ru in sample(inline_pool, 6):
        c = translate_inline(ru, rng, words)
        if c is not None:
            add("corrupt", "inline_code_translated", en, c)

    boards = [g for g in art_goods if g[0]["id"].split(":")[-1] in BOARDS]
    oasst_art = [g for g in art_goods if g[1].get("meta", {}).get("kind") == "ascii_art"]
    for variant, n in (("chars", 8), ("homoglyph", 4), ("reflow", 6), ("dash", 4)):
        for en, ru in sample(oasst_art, n):
            c = break_art(ru, rng, variant)
            if c is not None:
                add("corrupt", "broken_ascii", en, c)
    for en, ru in boards:
        for variant in ("homoglyph", "reflow", "chars"):
            c = break_art(ru, rng, variant)
            if c is not None:
                add("corrupt", "broken_board", en, c)
    for variant in (0, 1, 2):
        for en, ru in sample(table_goods, 3):
            c = break_table(ru, rng, variant)
            if c is not None:
                add("corrupt", "broken_table", en, c)

    for en, ru in sample(prose_goods + code_goods, 6):
        add("corrupt", "untranslated", en, untranslated(en, ru, 0))
    for en, ru in sample(prose_goods + code_goods, 6):
        add("corrupt", "untranslated", en, untranslated(en, ru, 1))
    for en, ru in sample([g for g in goods if g[1]["source"] != "local/handwritten"], 12):
        c = untranslated_line(en, ru, rng)
        if c is not None:
            add("corrupt", "untranslated_line", en, c)
    for k, (ue, ae, ux, ax) in enumerate(WRONG_LANGUAGE):
        en, ru = pair(f"local/handwritten:wrong-{k}", "local/handwritten", [("user", ue), ("assistant", ae)],
                      [("user", ux), ("assistant", ax)])
        add("corrupt", "wrong_language", en, ru)

    for en, ru in sample([g for g in goods if len(g[0]["messages"][-1]["content"]) >= 80], 10):
        add("corrupt", "truncated", en, truncate(ru, rng))
    for v in range(5):
        en, ru = rng.choice(goods)
        add("corrupt", "role_broken", en, break_roles(ru, v))
    for en, ru in sample(goods, 5):
        add("corrupt", "empty_message", en, empty_message(ru, rng))
    multiline = [g for g in goods if any(m["content"].count("\n") >= 2 for m in g[1]["messages"])]
    for en, ru in sample(multiline, 6):
        c = merge_lines(ru, rng)
        if c is not None:
            add("corrupt", "lines_merged", en, c)

    # NMT failures made from the real translations (their own rng: the rows above stay as they were)
    rng2 = random.Random(SEED + 2)
    real = [(r["en"], r["ru"]) for r in rows
            if r["kind"] in ("dolly_real", "chip2_real") and r["en"]["id"] not in REAL_OMISSIONS]
    for kind, make, n in (
        ("changed_number", None, NEW_KIND_ROWS),
        ("english_sentence", lambda e, r: english_sentence(e, r, rng2), NEW_KIND_ROWS),
        ("omitted_sentence", lambda e, r: omit_sentences(e, r, rng2), NEW_KIND_ROWS),
        ("hallucinated_sentence", lambda e, r: add_sentence(e, r, rng2, sents), NEW_KIND_ROWS),
    ):
        made = 0
        order = list(range(len(real)))
        rng2.shuffle(order)
        if kind == "changed_number":  # numbers changed or dropped first, then invented ones
            order = [(i, v) for i in order for v in ("change", "drop")] + [(i, "invent") for i in order]
        for i in order:
            if kind == "changed_number":
                en, ru = real[i[0]]
                if i[1] == "drop" and made % 3:  # two changes for each drop
                    continue
                c = change_number(en, ru, rng2, i[1])
            else:
                en, ru = real[i]
                c = make(en, ru)
            if c is not None:
                add("corrupt", kind, en, c)
                made += 1
            if made >= n:
                break
    # relabelled last, so that the corruptions above drew from the same pools as before
    for r in rows:
        if r["en"]["id"] in REAL_OMISSIONS and r["kind"] in ("dolly_real", "chip2_real"):
            r["label"], r["kind"] = "corrupt", "real_omission"
    seen: Counter[str] = Counter()
    for r in rows:
        if r["kind"] == "real_omission":
            r["id"] = f"real_omission-{seen['real_omission']:03d}"
            seen["real_omission"] += 1
        r["split"] = split_of(r["en"]["id"])
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--out", type=Path, default=ROOT / "tests/fixtures/filter_set.jsonl")
    args = ap.parse_args(argv)
    rows = build(args.shared)
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)), "duplicate row ids"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n")
    kinds = Counter((r["label"], r["kind"]) for r in rows)
    labels = Counter(r["label"] for r in rows)
    by_kind = {f"{a}/{b}": n for (a, b), n in sorted(kinds.items())}
    print(json.dumps({"rows": len(rows), **labels, "kinds": by_kind}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
