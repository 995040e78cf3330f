"""The shipped parallel corpus and fixtures: well-formed, and every English prose line of a
fixture dialog is made of corpus sentences (so the tiny translator, which memorises the corpus,
produces real Russian in the offline demo)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import ruinstruct
from ruinstruct.config import SourceConfig
from ruinstruct.sources import load_source

RESOURCES = Path(ruinstruct.__file__).parent / "resources"
FIXTURES = RESOURCES / "fixtures"
CYRILLIC = re.compile(r"[А-Яа-яЁё]")


def corpus() -> list[tuple[str, str]]:
    lines = (RESOURCES / "parallel_en_ru.tsv").read_text(encoding="utf-8").splitlines()
    return [tuple(line.split("\t")) for line in lines]  # type: ignore[misc]


def test_parallel_corpus_well_formed():
    pairs = corpus()
    assert 220 <= len(pairs) <= 270
    for pair in pairs:
        assert len(pair) == 2, pair
        en, ru = pair
        assert en == en.strip() and ru == ru.strip() and en and ru
        assert 4 <= len(en.split()) <= 20, en
        assert CYRILLIC.search(ru) and not CYRILLIC.search(en), pair
    assert len({en for en, _ in pairs}) == len(pairs)


FENCE = re.compile(r"```.*?```", re.S)
LIST_PREFIX = re.compile(r"^(?:\d+\.|-)\s+")
URL = re.compile(r"\s*https?://\S+")
WORDS = re.compile(r"[A-Za-z]{2,}\W+[A-Za-z]{2,}")


def prose_lines(text: str) -> list[str]:
    """Lines of `text` that a translator would see as prose (not code, tables, URLs or art)."""
    out = []
    for line in FENCE.sub("", text).split("\n"):
        line = URL.sub("", line).strip()
        if not line or line.startswith(("|", "`")) or not WORDS.search(line):
            continue
        out.append(LIST_PREFIX.sub("", line))
    return out


def is_made_of(line: str, sentences: list[str]) -> bool:
    if not line:
        return True
    return any(
        line.startswith(s) and (len(line) == len(s) or line[len(s)] == " ") and is_made_of(line[len(s):].lstrip(" "), sentences)
        for s in sentences
    )


@pytest.mark.parametrize("kind,file", [
    ("dolly", "dolly.jsonl"), ("oasst1", "oasst1.jsonl"), ("chip2", "chip2.jsonl"),
    ("chip2", "chip2_pairs.json"), ("local", "local/dialogs.jsonl"),
])
def test_english_prose_comes_from_the_corpus(kind, file):
    sentences = sorted((en for en, _ in corpus()), key=len, reverse=True)
    policy = {"oasst1": {"policy": "all"}} if kind == "oasst1" else {}
    r = load_source(SourceConfig(name=kind, kind=kind, path=str(FIXTURES / file), **policy))
    checked = 0
    for d in r.dialogs:
        if d["lang"] != "en":
            continue
        for m in d["messages"]:
            for line in prose_lines(m["content"]):
                assert is_made_of(line, sentences), (d["id"], line)
                checked += 1
    assert checked >= (4 if kind == "local" else 10)


def test_non_prose_content_is_present():
    """The demo needs dialogs whose code, tables, URLs, drawings and boards must pass untouched."""
    text = "\n".join(
        (FIXTURES / f).read_text(encoding="utf-8") for f in ("dolly.jsonl", "oasst1.jsonl", "chip2.jsonl")
    )
    for needle in ("```python", "`pip install requests`", "https://", "( o.o )", "---+---+---", "|---|---|"):
        assert needle in text, needle
