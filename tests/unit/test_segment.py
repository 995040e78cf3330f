"""segment(): exact round trips for any text, unit invariants, and the protection heuristics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ruinstruct.translate import segment as seg
from ruinstruct.translate.segment import Piece, join, looks_like_code, segment, translatable_units

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


def V(s: str) -> Piece:
    return Piece(s, False)


def T(s: str) -> Piece:
    return Piece(s, True)


def check_invariants(text: str) -> list[Piece]:
    pieces = segment(text)
    assert "".join(p.text for p in pieces) == text
    assert all(p.text for p in pieces), "no empty pieces"
    for a, b in zip(pieces, pieces[1:], strict=False):
        assert a.translate or b.translate, "neighbouring verbatim pieces are merged"
    for p in pieces:
        if p.translate:
            assert not any(c in LINE_BREAKS for c in p.text), p
            assert p.text == p.text.strip(), p
            assert any(c.isalpha() for c in p.text), p
    identity = {p.text: p.text for p in pieces if p.translate}
    assert join(pieces, identity) == text
    return pieces


# ---- property-based round trip -------------------------------------------------------------------

TOKENS = [
    "a", "Hello", " world", "I", "X", " | ", "|", "---", "-", "+", "*", "# ", "> ", "1. ", "a) ", "    ",
    "\t", " ", "\n", "\r\n", "\r", "\n\n", "`", "``", "```", "```python", "~~~", "http://x.io/a_(b)",
    "www.ex.com.", "me@ex.org", "def f(x):", "import os", "x = 1;", "$x$", "$5", "[link](http://a)",
    "<b>", "é", "Ж", "日本", "\u2028", "\x85", "\xa0", "()", ":", ".", "0", "42", "\\|", "**bold**",
]
token_text = st.lists(st.sampled_from(TOKENS), max_size=40).map("".join)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
def test_round_trip_arbitrary_text(text):
    check_invariants(text)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(token_text)
def test_round_trip_markdownish_text(text):
    check_invariants(text)


@settings(max_examples=200, deadline=None)
@given(token_text)
def test_translation_only_replaces_units(text):
    pieces = segment(text)
    mapped = join(pieces, {p.text: "«" + p.text.upper() + "»" for p in pieces if p.translate})
    verbatim = "".join(p.text for p in pieces if not p.translate)
    # verbatim pieces appear unchanged and in order in the output
    pos = 0
    for p in pieces:
        if p.translate:
            assert mapped.startswith("«", pos)
            pos = mapped.index("»", pos) + 1
        else:
            assert mapped.startswith(p.text, pos)
            pos += len(p.text)
    assert pos == len(mapped)
    assert verbatim == "".join(p.text for p in segment(text) if not p.translate)  # deterministic


def test_translatable_units_in_order_with_repeats():
    text = "Hello there.\n\nHello there.\n```\ncode\n```\nBye now."
    assert translatable_units(text) == ["Hello there.", "Hello there.", "Bye now."]


def test_join_never_substitutes_missing_units():
    pieces = segment("Hello there.\nGood bye.")
    with pytest.raises(KeyError):
        join(pieces, {"Hello there.": "Привет."})
    assert join(pieces, {"Hello there.": "Привет.", "Good bye.": "Пока."}) == "Привет.\nПока."


def test_empty_and_blank_texts():
    assert segment("") == []
    assert segment("   \n\t\r\n") == [V("   \n\t\r\n")]


# ---- exact pieces for representative texts ---------------------------------------------------------

CASES = {
    "numbered list": (
        "Steps:\n1. Boil water.\n2) Add pasta\n10. Serve hot!",
        [T("Steps:"), V("\n1. "), T("Boil water."), V("\n2) "), T("Add pasta"), V("\n10. "), T("Serve hot!")],
    ),
    "nested list with indentation": (
        "- Fruits\n  - Apple pie\n    1. Slice apples\n* Vegetables\n+ [x] Done item\na) first option\n(b) second",
        [
            V("- "), T("Fruits"), V("\n  - "), T("Apple pie"), V("\n    1. "), T("Slice apples"),
            V("\n* "), T("Vegetables"), V("\n+ [x] "), T("Done item"), V("\na) "), T("first option"),
            V("\n(b) "), T("second"),
        ],
    ),
    "fenced code with blank lines inside": (
        "Here is code:\n\n```python\ndef f(x):\n\n    return x  # add one\n```\nDone now.",
        [T("Here is code:"), V("\n\n```python\ndef f(x):\n\n    return x  # add one\n```\n"), T("Done now.")],
    ),
    "fence without language, longer closing fence": (
        "Run:\n```\necho hi there\n````\nOk then.",
        [T("Run:"), V("\n```\necho hi there\n````\n"), T("Ok then.")],
    ),
    "unclosed fence protects to the end": (
        "Look:\n~~~\nnot translated\n\nstill code",
        [T("Look:"), V("\n~~~\nnot translated\n\nstill code")],
    ),
    "backtick fence with backticks in the info string is inline code": (
        "Malbolge is hard.\n\n```(=BA#9\"=<;:3y7x5```",
        [T("Malbolge is hard."), V("\n\n```(=BA#9\"=<;:3y7x5```")],
    ),
    "indented code after a blank line": (
        "Example:\n\n    x = compute(1)\n    print x\n\nThat prints it.",
        [T("Example:"), V("\n\n    x = compute(1)\n    print x\n\n"), T("That prints it.")],
    ),
    "tab-indented code": (
        "Code:\n\n\tfoo bar\n\tbaz()\nAfter.",
        [T("Code:"), V("\n\n\tfoo bar\n\tbaz()\n"), T("After.")],
    ),
    "indented list continuation is text": (
        "1. First step\n\n    Continue with this step.\n2. Second step",
        [V("1. "), T("First step"), V("\n\n    "), T("Continue with this step."), V("\n2. "), T("Second step")],
    ),
    "indented prose block is text": (
        "Bring:\n\n    1 Water - Make sure everyone has a bottle.\n\n    2 Hats - Bring hats for the sun.",
        [
            T("Bring:"), V("\n\n    "), T("1 Water - Make sure everyone has a bottle."), V("\n\n    "),
            T("2 Hats - Bring hats for the sun."),
        ],
    ),
    "indented line without blank line before is text": (
        "Dear John,\n    I hope you are well.",
        [T("Dear John,"), V("\n    "), T("I hope you are well.")],
    ),
    "inline code": (
        "Use `pip install foo` to install the package, then run `foo --help`.",
        [T("Use"), V(" `pip install foo` "), T("to install the package, then run"), V(" `foo --help`.")],
    ),
    "double-backtick code span and lone backtick": (
        "Type ``a ` b`` now, it's a ` lone one",
        [T("Type"), V(" ``a ` b`` "), T("now, it's a ` lone one")],
    ),
    "urls and e-mail": (
        "See https://example.com/a_(b)c, or www.example.org. Mail me at john.doe@example.com!",
        [
            T("See"), V(" https://example.com/a_(b)c"), T(", or"), V(" www.example.org"), T(". Mail me at"),
            V(" john.doe@example.com!"),
        ],
    ),
    "markdown link": (
        'Read [the docs](https://docs.python.org/3/ "Python") first.',
        [T("Read"), V(" ["), T("the docs"), V('](https://docs.python.org/3/ "Python") '), T("first.")],
    ),
    "ascii art house": (
        "Here is a house:\n   /\\\n  /  \\\n /____\\\n |    |\n |_[]_|",
        [T("Here is a house:"), V("\n   /\\\n  /  \\\n /____\\\n |    |\n |_[]_|")],
    ),
    "tic-tac-toe board": (
        " X | O | X \n---+---+---\n O | X |   \n---+---+---\n   |   | O \nYour move!",
        [V(" X | O | X \n---+---+---\n O | X |   \n---+---+---\n   |   | O \n"), T("Your move!")],
    ),
    "tic-tac-toe board that parses as a table": (
        "X | O | X\n--|---|--\nO | X | O",
        [V("X | O | X\n--|---|--\nO | X | O")],
    ),
    "box drawing": (
        "┌──────┐\n│ Box  │\n└──────┘",
        [V("┌──────┐\n│ "), T("Box"), V("  │\n└──────┘")],
    ),
    "markdown table with text cells": (
        "| Name | Age | City |\n|------|----:|:----:|\n| Alice Smith | 30 | New York |\n| Bob | 4.5 | - |",
        [
            V("| "), T("Name"), V(" | "), T("Age"), V(" | "), T("City"), V(" |\n|------|----:|:----:|\n| "),
            T("Alice Smith"), V(" | 30 | "), T("New York"), V(" |\n| "), T("Bob"), V(" | 4.5 | - |"),
        ],
    ),
    "table with escaped pipe and inline code in a cell": (
        "Op | Meaning\n---|---\n`a \\| b` | bitwise or",
        [T("Op"), V(" | "), T("Meaning"), V("\n---|---\n`a \\| b` | "), T("bitwise or")],
    ),
    "crlf line endings": (
        "Hello there.\r\nSecond line here\r\n\r\n",
        [T("Hello there."), V("\r\n"), T("Second line here"), V("\r\n\r\n")],
    ),
    "leading and trailing blank lines": (
        "\n\n  Hello world  \n\n",
        [V("\n\n  "), T("Hello world"), V("  \n\n")],
    ),
    "quote, heading, preprocessor, hashtag": (
        "> Quoted wisdom here\n## Main Title\n#include <stdio.h>\n#hashtag",
        [V("> "), T("Quoted wisdom here"), V("\n## "), T("Main Title"), V("\n#include <stdio.h>\n"), T("#hashtag")],
    ),
    "code-looking lines outside fences": (
        "Try this:\nimport numpy as np\nfor i in range(10):\nx = y + 1;\ndef foo(x):\nThat is all.",
        [T("Try this:"), V("\nimport numpy as np\nfor i in range(10):\nx = y + 1;\ndef foo(x):\n"), T("That is all.")],
    ),
    "tex math": (
        "Let $x^2 + y^2 = z^2$ hold. It costs $5 and $10.",
        [T("Let"), V(" $x^2 + y^2 = z^2$ "), T("hold. It costs $5 and $10.")],
    ),
    "tabs and unicode spaces around units": (
        "\tTabbed text\t\n   \u00a0Nbsp text\u00a0",
        [V("\t"), T("Tabbed text"), V("\t\n   \u00a0"), T("Nbsp text"), V("\u00a0")],
    ),
    "other line separators are line breaks": (
        "One line\u2028Two line\x0cThree",
        [T("One line"), V("\u2028"), T("Two line"), V("\x0c"), T("Three")],
    ),
    "single letters and numbers stay verbatim": (
        "A\n42\n- x\nOk",
        [V("A\n42\n- x\n"), T("Ok")],
    ),
    "html tags": (
        "<p>Hello world</p>\n<br/>",
        [V("<p>"), T("Hello world"), V("</p>\n<br/>")],
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_exact_pieces(name):
    text, expected = CASES[name]
    assert check_invariants(text) == expected


@pytest.mark.parametrize(
    "line",
    [
        "def foo(x):", "for i in range(10):", "x = y + 1;", "#include <stdio.h>", "import numpy as np",
        "from os import path", "while True:", "else:", "class Foo(Base):", "return 0;", "print(x)",
        "pygame.init()", "a, b = b, a", "local a, b = nil, 1", "if distance < closest then", "end",
        "pip install numpy", "$ ls -la", "SELECT * FROM users", "with open(f) as fh:", "}", "int main() {",
        "for k, v in d.items():", "#!/bin/bash", "// comment", "\"name\": \"value\",", "const x = require('x');",
        "function f(a, b)", ">>> print(1)", "if (x > 0) {", "except ValueError as e:",
    ],
)
def test_code_lines(line):
    assert looks_like_code(line)
    assert translatable_units(line) == []


@pytest.mark.parametrize(
    "line",
    [
        "for those in need:", "if you want:", "Hello (world)", "git is a version control system.",
        "UPDATE: it works now", "The answer is x = 5", "Note: this is it", "x = 3 is the answer to the equation.",
        "Returns are accepted within 30 days.", "class structure matters.", "Import taxes are high.",
    ],
)
def test_prose_lines(line):
    assert not looks_like_code(line)
    assert translatable_units(line) == [line]


def test_list_marker_then_weak_code_pattern_is_text():
    assert translatable_units("- for those in need:") == ["for those in need:"]
    assert translatable_units("- import numpy as np") == []  # strong patterns apply after markers


def test_letter_ratio_threshold_is_configurable(monkeypatch):
    line = "ab 1234"  # 2 word letters of 6 non-space characters
    assert translatable_units(line) == []
    monkeypatch.setattr(seg, "MIN_LETTER_RATIO", 0.3)
    assert translatable_units(line) == ["ab 1234"]


@pytest.mark.parametrize(
    "text",
    [
        "for " + "a " * 5000 + " in b",
        "with (" * 3000,
        "x" * 20000 + "@",
        "`" + "``" * 3000,
        "[" * 5000 + "](",
        "a, " * 5000 + "= 1x",
        "$" * 5000 + "a",
        "if " + "a " * 5000,
        "| " * 5000 + "\n|-" + "|-" * 3000,
        "\\(" * 5000,
        "http://" * 3000 + ")" * 3000,
        "a.b" * 5000 + "=",
    ],
)
def test_long_adversarial_lines_terminate(text):
    check_invariants(text)  # a catastrophic regex would hang here


# ---- real public samples (skipped when ../shared/data is absent) --------------------------------

@pytest.mark.skipif(not (SHARED / "filter_examples").is_dir(), reason="shared samples absent")
def test_real_code_ascii_table_samples():
    rows = [json.loads(line) for line in (SHARED / "filter_examples" / "en_code_ascii_tables.jsonl").open()]
    assert rows
    for row in rows:
        pieces = check_invariants(row["text"])
        units = [p.text for p in pieces if p.translate]
        for unit in units:
            for token in ("pygame.", "require(", "console.log", "_|", "#include", "def ", "~~", "|"):
                assert token not in unit, (row["kind"], unit)
        if row["kind"] == "markdown_table":
            assert not any(u.startswith("-") for u in units)


@pytest.mark.skipif(not (SHARED / "instruct").is_dir(), reason="shared samples absent")
def test_real_instruct_samples_round_trip():
    texts = [json.loads(line)["text"] for line in (SHARED / "instruct" / "oasst1_en_validation_sample.jsonl").open()]
    for line in (SHARED / "instruct" / "databricks_dolly_15k_first_records.jsonl").open():
        rec = json.loads(line)
        texts += [rec["instruction"], rec["context"], rec["response"]]
    n_units = 0
    for text in texts:
        n_units += sum(p.translate for p in check_invariants(text))
    assert n_units > len(texts)


@pytest.mark.parametrize(
    ("text", "units"),
    [
        ("1. Step one:\n   ```python\n   x = 1\n   ```", ["Step one:"]),
        # prose inside the fence: only the fence keeps it from being translated
        (
            "- Install it:\n\n    ```\n    Then read the manual carefully, please.\n    ```\n- Done now.",
            ["Install it:", "Done now."],
        ),
        ("1. Run this:\n\t~~~\n\tplain words in the block\n\t~~~", ["Run this:"]),
    ],
)
def test_indented_fence_in_a_list_item_is_protected(text, units):
    assert "".join(p.text for p in segment(text)) == text
    assert translatable_units(text) == units  # the fence and its body pass through verbatim
