"""Source loaders on the shipped fixtures, on hand-made bad input, in hub mode, and (when the
folder exists) on the real public samples in ../shared/data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import ruinstruct
from ruinstruct.config import SourceConfig
from ruinstruct.io import write_dialogs
from ruinstruct.schema import validate
from ruinstruct.sources import load_source
from ruinstruct.sources.chip2 import parse_turns

FIXTURES = Path(ruinstruct.__file__).parent / "resources" / "fixtures"
REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED = REPO_ROOT.parent / "shared" / "data" / "instruct"


def cfg(kind: str, path: Path | str, name: str | None = None, **kw) -> SourceConfig:
    return SourceConfig(name=name or kind, kind=kind, path=str(path), **kw)


def check_result(r, *, lang: str | None = "en") -> None:
    """Invariants every LoadResult must hold."""
    c = r.counts
    assert c["read"] == c["kept"] + c["rejected"] + c["excluded"]
    assert c["excluded"] == sum(v for k, v in c.items() if k.startswith("excluded_"))
    assert c["rejected"] == len(r.rejects)
    assert c["dialogs"] == len(r.dialogs)
    assert len({d["id"] for d in r.dialogs}) == len(r.dialogs)
    for d in r.dialogs:
        assert validate(d) == [], d
        assert lang is None or d["lang"] == lang
    for row in r.rejects:
        assert row["reasons"] and all(isinstance(x, str) and x for x in row["reasons"])
        assert row["where"]


def by_id(r) -> dict:
    return {d["id"]: d for d in r.dialogs}


def msgs(*pairs: tuple[str, str]) -> list[dict]:
    return [{"role": role, "content": content} for role, content in pairs]


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


# ---- dolly -----------------------------------------------------------------------------------

def test_dolly_fixture():
    path = FIXTURES / "dolly.jsonl"
    r = load_source(cfg("dolly", path))
    check_result(r)
    assert r.counts == {"read": 40, "kept": 37, "rejected": 3, "excluded": 0, "dialogs": 37}
    assert [d["id"] for d in r.dialogs][:13] == [f"dolly:{i}" for i in (*range(12), 13)]
    assert "dolly:12" not in by_id(r) and "dolly:24" not in by_id(r) and "dolly:33" not in by_id(r)
    d0 = by_id(r)["dolly:0"]
    assert d0 == {
        "id": "dolly:0",
        "source": "dolly",
        "lang": "en",
        "messages": msgs(
            ("user", "How do I cook rice on the stove?"),
            ("assistant", "1. Rinse the rice in cold water until the water runs clear.\n"
             "2. Use two cups of water for every cup of rice.\n"
             "3. Bring the water to a boil, then cover the pot and lower the heat.\n"
             "4. Let the rice simmer for about eighteen minutes."),
        ),
        "origin_id": None,
        "license": "CC-BY-SA-3.0",
        "meta": {"category": "general_qa", "has_context": False},
    }
    # instruction + blank line + context
    d10 = by_id(r)["dolly:10"]
    assert d10["messages"][0]["content"] == (
        "Where is Lake Baikal?\n\nLake Baikal is in southern Siberia, in Russia.\nLake Baikal is the deepest lake on Earth."
    )
    assert d10["messages"][1]["content"] == "Lake Baikal is in southern Siberia, in Russia."
    assert d10["meta"] == {"category": "closed_qa", "has_context": True}
    # code passes through untouched
    assert "```python\ndef add(a, b):\n    return a + b\n```" in by_id(r)["dolly:18"]["messages"][1]["content"]

    rej = {row["where"]: row for row in r.rejects}
    assert set(rej) == {f"{path}:13", f"{path}:25", f"{path}:34"}
    assert rej[f"{path}:13"]["reasons"] == ["malformed JSON line"] and rej[f"{path}:13"]["raw"].startswith("{")
    assert rej[f"{path}:25"]["reasons"] == ["missing field: response"]
    assert rej[f"{path}:25"]["instruction"] == "What does an API do?"
    assert rej[f"{path}:34"]["reasons"] == ["empty instruction"]
    assert all(row["source"] == "dolly" for row in r.rejects)


def test_dolly_bad_fields(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [
        {"instruction": "Hi there, how are you?", "context": "", "response": "Fine, thanks.", "category": "open_qa"},
        {"instruction": "Q?", "context": 5, "response": "A.", "category": "x"},
        {"instruction": "Q?", "context": None, "response": "   ", "category": "x"},
        [1, 2, 3],
        "",  # blank line: not a row
        {"instruction": "Q?", "response": "A."},  # no context, no category: fine
    ])
    r = load_source(cfg("dolly", path))
    check_result(r)
    assert r.counts == {"read": 5, "kept": 2, "rejected": 3, "excluded": 0, "dialogs": 2}
    assert [d["id"] for d in r.dialogs] == ["dolly:0", "dolly:4"]
    assert [(row["where"], row["reasons"]) for row in r.rejects] == [
        (f"{path}:2", ["field context is not a string: int"]),
        (f"{path}:3", ["empty response"]),
        (f"{path}:4", ["not a JSON object: list"]),
    ]


# ---- oasst1 ----------------------------------------------------------------------------------

def _fixture_messages() -> list[dict]:
    return [json.loads(line) for line in (FIXTURES / "oasst1.jsonl").read_text(encoding="utf-8").splitlines()]


def _tree_of(root_text: str) -> tuple[dict, dict[str, dict]]:
    rows = _fixture_messages()
    root = next(m for m in rows if m["text"] == root_text and m["parent_id"] is None)
    tree = {m["message_id"]: m for m in rows if m["message_tree_id"] == root["message_tree_id"]}
    return root, tree


def test_oasst_fixture_best():
    path = FIXTURES / "oasst1.jsonl"
    r = load_source(cfg("oasst1", path))
    check_result(r)
    assert r.counts == {
        "read": 64, "kept": 36, "rejected": 8, "excluded": 20, "excluded_lang": 3,
        "excluded_policy": 15, "excluded_unanswered": 2, "dialogs": 13, "trees": 14,
    }
    texts = [d["messages"][0]["content"] for d in r.dialogs]
    assert "Warum ist der Himmel blau?" not in texts
    assert all(d["license"] == "Apache-2.0" and d["source"] == "oasst1" for d in r.dialogs)

    rows = _fixture_messages()
    line = {m["message_id"]: i for i, m in enumerate(rows, 1)}
    got = [(int(row["where"].rsplit(":", 1)[1]), row["role"], row["reasons"]) for row in r.rejects]
    assert all(row["where"] == f"{path}:{line[row['message_id']]}" for row in r.rejects)
    deleted, spam, orphan, aroot = (rows[n - 1]["message_id"] for n in (21, 26, 36, 38))
    broken = f"broken tree: parent_id {rows[35]['parent_id']} is not in the input"
    assert got == [
        (21, "assistant", ["deleted"]),
        (22, "prompter", [f"below removed message {deleted} (deleted)"]),
        (23, "assistant", [f"below removed message {deleted} (deleted)"]),
        (26, "assistant", ["spam label 0.75 >= 0.5"]),
        (36, "assistant", [broken]),
        (37, "prompter", [f"below message {orphan}: {broken}"]),
        (38, "assistant", ["broken tree: the root is an assistant message, not a prompter"]),
        (39, "prompter", [f"below message {aroot}: broken tree: the root is an assistant message, not a prompter"]),
    ]
    assert rows[35]["parent_id"] not in line and rows[37]["parent_id"] is None and spam
    assert all(row.get("lang") == "en" for row in r.rejects)  # the German messages are excluded, not rejected

    # tic-tac-toe: 4 turns, boards untouched
    ttt = next(d for d in r.dialogs if d["messages"][0]["content"] == "Let's play a game of tic-tac-toe!")
    assert [m["role"] for m in ttt["messages"]] == ["user", "assistant", "user", "assistant"]
    assert ttt["messages"][3]["content"] == (
        " O |   | X\n---+---+---\n   | X |   \n---+---+---\n   |   |   \n\nIt is your turn now."
    )
    assert ttt["id"] == f"oasst1:{ttt['meta']['message_ids'][-1]}"
    assert ttt["meta"]["ranks"] == [None, 0, 0, 0]
    # rank 0 beats an unranked reply that comes first in the file
    pack = next(d for d in r.dialogs if d["messages"][0]["content"].startswith("What should I pack"))
    assert pack["messages"][1]["content"].startswith("Bring warm clothes")
    # an unranked reply sorts after the ranked one (code tree)
    code = next(d for d in r.dialogs if d["messages"][0]["content"].startswith("Write a Python function"))
    assert len(code["messages"]) == 4 and code["messages"][3]["content"].startswith("Sure, here is an example.")
    # trailing unanswered prompter is cut
    friends = next(d for d in r.dialogs if d["messages"][0]["content"].startswith("How can I make new friends"))
    assert [m["role"] for m in friends["messages"]] == ["user", "assistant"]


def test_oasst_fixture_all_and_hand_checked_tree():
    r = load_source(cfg("oasst1", FIXTURES / "oasst1.jsonl", oasst1={"policy": "all"}))
    check_result(r)
    assert r.counts == {
        "read": 64, "kept": 51, "rejected": 8, "excluded": 5, "excluded_lang": 3,
        "excluded_unanswered": 2, "dialogs": 26, "trees": 14,
    }
    # the rice tree, by hand: root -> A0 (rank 0) -> {P0 -> {A00, A01}, P1 -> A10}; A1; A2
    root, tree = _tree_of("How do I cook rice on the stove?")
    assert len(tree) == 9
    rice = [d for d in r.dialogs if d["meta"]["message_tree_id"] == root["message_tree_id"]]
    got = [[m["content"].split("\n")[0][:25] for m in d["messages"]] for d in rice]
    q = "How do I cook rice on the "
    a0 = "Rinse the rice in cold wat"
    assert got == [
        [q[:25], a0[:25], "Can you explain that in m", "Bring the water to a boil"],
        [q[:25], a0[:25], "Can you explain that in m", "Use two cups of water for"],
        [q[:25], a0[:25], "Thank you, that was very ", "You're welcome, I am happ"],
        [q[:25], "Use two cups of water for"],
        [q[:25], "Let the rice simmer for a"],
    ]
    best = load_source(cfg("oasst1", FIXTURES / "oasst1.jsonl"))
    assert [d for d in best.dialogs if d["meta"]["message_tree_id"] == root["message_tree_id"]] == [
        {**rice[0], "meta": {**rice[0]["meta"], "policy": "best"}}
    ]


def _m(mid, parent, role, text, rank=None, **kw):
    return {"message_id": mid, "parent_id": parent, "message_tree_id": kw.pop("tree", "t"), "text": text,
            "role": role, "lang": kw.pop("lang", "en"), "rank": rank, "deleted": kw.pop("deleted", False),
            "review_result": True, "labels": kw.pop("labels", None), **kw}


def test_oasst_synthetic_tree_policies(tmp_path):
    rows = [
        _m("r", None, "prompter", "Q1"),
        _m("b", "r", "assistant", "A-b", 1),
        _m("a", "r", "assistant", "A-a", 0),
        _m("c", "r", "assistant", "A-c", None),
        _m("a1", "a", "prompter", "Q2 unanswered", 0),
        _m("a2", "a", "prompter", "Q2b", 1),
        _m("a2x", "a2", "assistant", "A-a2x", 0),
        _m("b1", "b", "prompter", "Q3", 0),
        _m("b1x", "b1", "assistant", "A-b1x", 1),
        _m("b1y", "b1", "assistant", "A-b1y", 1),  # tie on rank: message_id decides
        _m("s", "b", "prompter", "spam", 1, labels={"name": ["spam"], "value": [0.5], "count": [2]}),
        _m("sx", "s", "assistant", "under spam", 0),
    ]
    path = write_jsonl(tmp_path / "o.jsonl", rows)
    best = load_source(cfg("oasst1", path))
    check_result(best)
    # best: r -> a (rank 0) -> a1 (rank 0, unanswered) => cut to [r, a]
    assert [d["meta"]["message_ids"] for d in best.dialogs] == [["r", "a"]]
    assert best.counts == {"read": 12, "kept": 2, "rejected": 2, "excluded": 8, "excluded_policy": 7,
                           "excluded_unanswered": 1, "dialogs": 1, "trees": 1}
    every = load_source(cfg("oasst1", path, oasst1={"policy": "all"}))
    check_result(every)
    assert [d["meta"]["message_ids"] for d in every.dialogs] == [
        ["r", "a", "a2", "a2x"], ["r", "b", "b1", "b1x"], ["r", "b", "b1", "b1y"], ["r", "c"],
    ]
    assert [d["id"] for d in every.dialogs] == ["oasst1:a2x", "oasst1:b1x", "oasst1:b1y", "oasst1:c"]
    assert every.dialogs[1]["messages"] == msgs(("user", "Q1"), ("assistant", "A-b"), ("user", "Q3"), ("assistant", "A-b1x"))
    assert every.dialogs[1]["meta"]["ranks"] == [None, 1, 0, 1]
    assert every.counts["excluded_unanswered"] == 1 and every.counts["kept"] == 9
    assert [row["reasons"] for row in every.rejects] == [["spam label 0.50 >= 0.5"], ["below removed message s (spam label 0.50 >= 0.5)"]]
    # file order inside a tree does not matter
    shuffled = write_jsonl(tmp_path / "o2.jsonl", rows[::-1])
    assert load_source(cfg("oasst1", shuffled, oasst1={"policy": "all"})).dialogs == every.dialogs


def test_oasst_limit_and_bad_lines(tmp_path):
    rows = [
        _m("r1", None, "prompter", "Q1", tree="t1"), _m("x1", "r1", "assistant", "A1", 0, tree="t1"),
        "{not json",
        _m("r2", None, "prompter", "Q2", tree="t2"), _m("x2", "r2", "assistant", "A2", 0, tree="t2"),
        {"message_id": "r3", "text": "no role"},
        _m("x1", "r1", "assistant", "duplicate", 0, tree="t1"),
        _m("r4", None, "prompter", "Q4", tree="t4"), _m("x4", "r4", "assistant", "A4", 0, tree="t4"),
        _m("y4", "x4", "assistant", "assistant answers assistant", 0, tree="t4"),
        _m("z4", "r4", "assistant", "   ", 1, tree="t4"),
    ]
    path = write_jsonl(tmp_path / "o.jsonl", rows)
    r = load_source(cfg("oasst1", path, limit=2))
    check_result(r)
    assert [d["id"] for d in r.dialogs] == ["oasst1:x1", "oasst1:x2"]
    assert r.counts == {"read": 11, "kept": 4, "rejected": 5, "excluded": 2, "excluded_limit": 2,
                        "dialogs": 2, "trees": 3}
    assert [(row["where"], row["reasons"][0]) for row in r.rejects] == [
        (f"{path}:3", "malformed JSON line"),
        (f"{path}:6", "missing field: role"),
        (f"{path}:7", f"duplicate message_id x1 (first at {path}:2)"),
        (f"{path}:10", "broken tree: a assistant message replies to a assistant message"),
        (f"{path}:11", "empty text"),
    ]


# ---- chip2 -----------------------------------------------------------------------------------

def test_chip2_fixture():
    path = FIXTURES / "chip2.jsonl"
    r = load_source(cfg("chip2", path))
    check_result(r)
    assert r.counts == {"read": 30, "kept": 28, "rejected": 2, "excluded": 0, "dialogs": 28}
    assert by_id(r)["chip2:0"] == {
        "id": "chip2:0", "source": "chip2", "lang": "en",
        "messages": msgs(("user", "What is a variable in programming?"),
                         ("assistant", "A variable is a name that stores a value.\n"
                          "You can change the value of a variable later in the program.")),
        "origin_id": None, "license": "Apache-2.0",
        "meta": {"format": "oig", "metadata": {"source": "unified_chip2"}},
    }
    multi = by_id(r)["chip2:13"]
    assert [m["role"] for m in multi["messages"]] == ["user", "assistant"] * 3
    assert "```python\nprint(sum([1, 2, 3]))\n```" in multi["messages"][1]["content"]
    assert [(row["where"], row["reasons"]) for row in r.rejects] == [
        (f"{path}:10", ["no <bot>: turn"]),
        (f"{path}:21", ["empty <bot>: turn 1"]),
    ]


def test_chip2_pairs_json_list_and_jsonl(tmp_path):
    r = load_source(cfg("chip2", FIXTURES / "chip2_pairs.json"))
    check_result(r)
    assert r.counts == {"read": 10, "kept": 10, "rejected": 0, "excluded": 0, "dialogs": 10}
    assert r.dialogs[1]["messages"] == msgs(("user", "What is the tallest animal in the world?"),
                                            ("assistant", "The giraffe is the tallest animal in the world."))
    assert r.dialogs[1]["meta"] == {"format": "pairs"}
    rows = json.loads((FIXTURES / "chip2_pairs.json").read_text(encoding="utf-8"))
    as_jsonl = load_source(cfg("chip2", write_jsonl(tmp_path / "pairs.jsonl", rows)))
    assert as_jsonl.dialogs == r.dialogs
    bad = load_source(cfg("chip2", write_jsonl(tmp_path / "bad.json", [{"user": "Hi", "bot": ""}, {"q": 1}])))
    check_result(bad)  # JSON Lines under a .json name are read too
    assert [(row["where"], row["reasons"]) for row in bad.rejects] == [
        (f"{tmp_path / 'bad.json'}:1", ["empty <bot>: turn 1"]),
        (f"{tmp_path / 'bad.json'}:2", ["unknown chip2 record: expected a 'text' field or 'user' and 'bot' fields"]),
    ]


def test_chip2_parse_turns():
    assert parse_turns("<human>: Hi\n<bot>: Hello\n<human>: Bye\n<bot>:  Bye!  ") == msgs(
        ("user", "Hi"), ("assistant", "Hello"), ("user", "Bye"), ("assistant", "Bye!"))
    assert parse_turns("<human>: a <bot>: inline tag is text\n<bot>: b") == msgs(
        ("user", "a <bot>: inline tag is text"), ("assistant", "b"))


def test_chip2_turn_errors(tmp_path):
    rows = [
        {"text": "<human>: Q\n<bot>: A\n<human>: unanswered"},
        {"text": "hello\n<human>: Q\n<bot>: A"},
        {"text": "<bot>: A\n<human>: Q"},
        {"text": "<human>: Q\n<human>: Q again\n<bot>: A"},
        {"text": "just text"},
        {"id": "x-7", "text": "<human>: Q\n<bot>: A"},
    ]
    r = load_source(cfg("chip2", write_jsonl(tmp_path / "c.jsonl", rows)))
    check_result(r)
    assert [d["id"] for d in r.dialogs] == ["chip2:0", "chip2:x-7"]
    assert r.dialogs[0]["meta"]["truncated"] is True and len(r.dialogs[0]["messages"]) == 2
    assert [row["reasons"][0] for row in r.rejects] == [
        "text before the first <human>: turn",
        "first turn is not <human>:",
        "turns do not alternate: turn 1 is a second <human>:",
        "text before the first <human>: turn",
    ]


# ---- saiga -----------------------------------------------------------------------------------

SAIGA_COUNTS = {  # file -> (read, kept, rejected)
    "ru_turbo_saiga": (5, 4, 1),
    "ru_turbo_alpaca": (4, 3, 1),
    "oasst1_ru_main_branch": (2, 2, 0),
    "ru_instruct_gpt4": (2, 2, 0),
    "gpt_roleplay_realm": (3, 2, 1),
    "ru_sharegpt_cleaned": (1, 1, 0),
    "ru_turbo_alpaca_evol_instruct": (1, 1, 0),
}


@pytest.mark.parametrize("name", sorted(SAIGA_COUNTS))
def test_saiga_fixtures(name):
    r = load_source(cfg("saiga", FIXTURES / "saiga" / f"{name}.jsonl", name=f"saiga/{name}"))
    check_result(r, lang="ru")
    read, kept, rejected = SAIGA_COUNTS[name]
    assert (r.counts["read"], r.counts["kept"], r.counts["rejected"]) == (read, kept, rejected)
    for d in r.dialogs:
        assert d["source"] == f"saiga/{name}"
        assert "non-commercial" in d["license"]


def test_saiga_exact_dialogs():
    r = load_source(cfg("saiga", FIXTURES / "saiga" / "ru_turbo_saiga.jsonl", name="saiga/ru_turbo_saiga"))
    assert by_id(r)["saiga/ru_turbo_saiga:1"]["messages"] == msgs(
        ("user", "Почему кошки мурлычут?"),
        ("assistant", "Кошки часто мурлычут, когда чувствуют себя спокойно и счастливо."),
        ("user", "Можешь объяснить это подробнее?"),
        ("assistant", "Иногда кошки мурлычут и тогда, когда им больно или страшно."),
    )
    assert by_id(r)["saiga/ru_turbo_saiga:1"]["meta"] == {
        "format": "chat", "seed": "кошки", "source": "chatgpt", "model_name": "gpt-3.5-turbo"}
    assert by_id(r)["saiga/ru_turbo_saiga:3"]["messages"][0]["role"] == "system"
    assert by_id(r)["saiga/ru_turbo_saiga:4"]["meta"]["truncated"] is True
    assert r.rejects[0]["reasons"] == ["the dialog does not start with a user turn"]
    assert r.rejects[0]["source"] == "saiga/ru_turbo_saiga" and r.rejects[0]["upstream_source"] == "chatgpt"

    rp = load_source(cfg("saiga", FIXTURES / "saiga" / "gpt_roleplay_realm.jsonl", name="saiga/gpt_roleplay_realm"))
    assert [d["id"] for d in rp.dialogs] == ["saiga/gpt_roleplay_realm:0/0", "saiga/gpt_roleplay_realm:1/0"]
    assert [m["role"] for m in rp.dialogs[0]["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    assert rp.dialogs[0]["meta"] == {"format": "roleplay", "name": "Капитан Немо", "topic": "океан", "model_name": "gpt-4"}
    assert rp.rejects[0]["where"].endswith("gpt_roleplay_realm.jsonl:1/dialogues[1]")

    al = load_source(cfg("saiga", FIXTURES / "saiga" / "ru_turbo_alpaca.jsonl", name="saiga/ru_turbo_alpaca"))
    assert al.dialogs[1]["messages"][0]["content"].startswith("Кратко изложи текст одним предложением.\n\nИоганн")
    assert al.rejects[0]["reasons"] == ["empty output"]
    ids = load_source(cfg("saiga", FIXTURES / "saiga" / "oasst1_ru_main_branch.jsonl", name="saiga/oasst1_ru_main_branch"))
    assert [d["id"] for d in ids.dialogs] == ["saiga/oasst1_ru_main_branch:oasst-ru-0001", "saiga/oasst1_ru_main_branch:oasst-ru-0002"]


def test_saiga_folder_and_column_messages(tmp_path):
    r = load_source(cfg("saiga", FIXTURES / "saiga", name="saiga/all"))
    check_result(r, lang="ru")
    assert r.counts["read"] == sum(v[0] for v in SAIGA_COUNTS.values())
    assert r.counts["kept"] == sum(v[1] for v in SAIGA_COUNTS.values())
    assert r.dialogs[0]["id"] == "saiga/all:gpt_roleplay_realm/0/0"  # files in name order, keys carry the file
    # datasets gives a `sequence` of {role, content} as columns
    row = {"messages": {"role": ["user", "bot"], "content": ["Привет", "Здравствуйте!"]}, "seed": "s"}
    col = load_source(cfg("saiga", write_jsonl(tmp_path / "s.jsonl", [row]), name="saiga/x"))
    assert col.dialogs[0]["messages"] == msgs(("user", "Привет"), ("assistant", "Здравствуйте!"))


# ---- local -----------------------------------------------------------------------------------

def test_local_jsonl_and_parquet(tmp_path):
    r = load_source(cfg("local", FIXTURES / "local" / "dialogs.jsonl", name="local/demo"))
    check_result(r, lang=None)
    assert r.counts == {"read": 4, "kept": 3, "rejected": 1, "excluded": 0, "dialogs": 3}
    assert r.rejects[0]["reasons"] == ["needs at least one user and one assistant message"]
    assert r.rejects[0]["where"].endswith("dialogs.jsonl:3")
    assert r.dialogs[0]["meta"] == {"note": "two turns"} and r.dialogs[1]["meta"] == {}
    assert r.dialogs[2]["origin_id"] == "local/demo:0" and r.dialogs[2]["lang"] == "ru"
    write_dialogs(tmp_path / "d.parquet", r.dialogs)
    again = load_source(cfg("local", tmp_path / "d.parquet", name="local/demo"))
    assert again.dialogs == r.dialogs
    override = load_source(cfg("local", tmp_path / "d.parquet", name="local/demo", license="MIT"))
    assert {d["license"] for d in override.dialogs} == {"MIT"}
    filled = load_source(cfg("local", write_jsonl(tmp_path / "x.jsonl", [
        {"lang": "en", "messages": msgs(("user", "Hi"), ("assistant", "Hello"))},
        {"lang": "en", "messages": msgs(("user", "Hi"), ("assistant", "Hello")), "meta": "{broken"},
    ]), name="local/x"))
    assert filled.dialogs[0]["id"] == "local/x:0" and filled.dialogs[0]["source"] == "local/x"
    assert filled.dialogs[0]["license"] == "unknown"
    assert filled.rejects[0]["reasons"][0].startswith("meta is not valid JSON")


# ---- every loader: malformed lines, determinism, hub mode -------------------------------------

@pytest.mark.parametrize("kind", ["dolly", "oasst1", "chip2", "saiga", "local"])
def test_malformed_line_is_rejected_with_file_line(tmp_path, kind):
    path = tmp_path / "in.jsonl"
    path.write_text('\n{"a": \n', encoding="utf-8")
    r = load_source(cfg(kind, path))
    assert r.counts["read"] == 1 and r.counts["rejected"] == 1 and r.dialogs == []
    assert r.rejects == [{"raw": '{"a": ', "source": kind, "where": f"{path}:2", "reasons": ["malformed JSON line"]}]


@pytest.mark.parametrize("kind,file", [("dolly", "dolly.jsonl"), ("oasst1", "oasst1.jsonl"), ("chip2", "chip2.jsonl"),
                                       ("saiga", "saiga")])
def test_deterministic(kind, file):
    a = load_source(cfg(kind, FIXTURES / file))
    b = load_source(cfg(kind, FIXTURES / file))
    dump = lambda r: json.dumps([r.dialogs, r.rejects, r.counts], ensure_ascii=False, sort_keys=True)  # noqa: E731
    assert dump(a) == dump(b)


def test_missing_path_raises(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_source(cfg("dolly", tmp_path / "nope.jsonl"))


def _offline_cache(monkeypatch, tmp_path) -> Path:
    """An empty HF hub cache in offline mode: hub_commit reads only what the test writes there."""
    from huggingface_hub import constants

    cache = tmp_path / "hf-hub-cache"
    cache.mkdir(exist_ok=True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def _cached_ref(cache: Path, hf_id: str, ref: str, sha: str) -> None:
    """What huggingface_hub leaves after a download: refs/<ref> holding the commit, and its snapshot."""
    repo = cache / f"datasets--{hf_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / ref).write_text(sha, encoding="utf-8")
    (repo / "snapshots" / sha).mkdir(parents=True, exist_ok=True)


def _hub(monkeypatch, rows, tmp_path):
    import datasets

    _offline_cache(monkeypatch, tmp_path)
    calls = []

    def fake_load_dataset(path, **kwargs):
        calls.append((path, kwargs))
        return datasets.Dataset.from_list(rows)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    return calls


def test_hub_mode_dolly_same_dialogs(monkeypatch, tmp_path):
    rows = [json.loads(line) for line in (FIXTURES / "dolly.jsonl").read_text(encoding="utf-8").splitlines()
            if line.rstrip().endswith("}")]
    assert len(rows) == 39  # all but the malformed line
    local = load_source(cfg("dolly", write_jsonl(tmp_path / "d.jsonl", rows)))
    calls = _hub(monkeypatch, rows, tmp_path)
    hub = load_source(SourceConfig(name="dolly", kind="dolly", hf_id="databricks/databricks-dolly-15k", revision="abc"))
    assert calls == [("databricks/databricks-dolly-15k", {"split": "train", "revision": "abc"})]
    assert hub.dialogs == local.dialogs and hub.counts == local.counts
    assert [row["where"] for row in hub.rejects] == ["databricks/databricks-dolly-15k[train]#23", "databricks/databricks-dolly-15k[train]#32"]
    assert [row["reasons"] for row in hub.rejects] == [row["reasons"] for row in local.rejects]


SHA = "0123456789abcdef0123456789abcdef01234567"


def test_hub_mode_records_the_commit_read(monkeypatch, tmp_path):
    """Unpinned, the commit the cache's refs/main names (what the download just fetched) goes into
    LoadResult.revision and every dialog's meta; the rest of the dialog is the same."""
    rows = [json.loads(line) for line in (FIXTURES / "dolly.jsonl").read_text(encoding="utf-8").splitlines()
            if line.rstrip().endswith("}")]
    src = SourceConfig(name="dolly", kind="dolly", hf_id="databricks/databricks-dolly-15k")
    _hub(monkeypatch, rows, tmp_path)
    unresolved = load_source(src)
    assert unresolved.revision is None
    assert all("upstream_revision" not in d["meta"] for d in unresolved.dialogs)

    _cached_ref(tmp_path / "hf-hub-cache", "databricks/databricks-dolly-15k", "main", SHA)
    r = load_source(src)
    check_result(r)
    assert r.revision == SHA and len(r.dialogs) == 37
    assert [d["meta"] for d in r.dialogs] == [{**d["meta"], "upstream_revision": SHA} for d in unresolved.dialogs]
    assert [{**d, "meta": None} for d in r.dialogs] == [{**d, "meta": None} for d in unresolved.dialogs]
    assert r.rejects == unresolved.rejects and r.counts == unresolved.counts


def test_local_source_has_no_upstream_commit(tmp_path):
    r = load_source(cfg("dolly", FIXTURES / "dolly.jsonl"))
    assert r.revision is None and all("upstream_revision" not in d["meta"] for d in r.dialogs)


def test_hub_commit_offline_reads_the_cache(monkeypatch, tmp_path):
    from ruinstruct.sources.base import hub_commit

    cache = _offline_cache(monkeypatch, tmp_path)
    monkeypatch.setattr("huggingface_hub.HfApi.dataset_info", lambda *a, **k: pytest.fail("offline: no hub call"))
    assert hub_commit("org/ds", None) is None  # nothing cached
    _cached_ref(cache, "org/ds", "main", SHA)
    _cached_ref(cache, "org/ds", "v2", "f" * 40)
    assert hub_commit("org/ds", None) == SHA
    assert hub_commit("org/ds", "main") == SHA
    assert hub_commit("org/ds", "v2") == "f" * 40
    assert hub_commit("org/ds", "0123456") == SHA  # a short sha: the one snapshot it starts
    assert hub_commit("org/ds", "v3") is None
    assert hub_commit("org/other", None) is None
    assert hub_commit("org/ds", "a" * 40) == "a" * 40  # a full sha needs no look-up
    (cache / "datasets--org--ds" / "refs" / "main").write_text("not a sha", encoding="utf-8")
    assert hub_commit("org/ds", None) is None


def test_hub_commit_online_asks_the_hub_and_falls_back_to_the_cache(monkeypatch, tmp_path):
    from types import SimpleNamespace

    from huggingface_hub import constants

    from ruinstruct.sources.base import hub_commit

    cache = _offline_cache(monkeypatch, tmp_path)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    asked = []

    def dataset_info(self, repo_id, *, revision=None, timeout=None, **kw):
        asked.append((repo_id, revision))
        if repo_id == "org/down":
            raise ConnectionError("hub unreachable")
        return SimpleNamespace(sha="b" * 40)

    monkeypatch.setattr("huggingface_hub.HfApi.dataset_info", dataset_info)
    assert hub_commit("org/ds", None) == "b" * 40
    assert hub_commit("org/ds", "v1") == "b" * 40
    _cached_ref(cache, "org/down", "main", SHA)
    assert hub_commit("org/down", None) == SHA
    assert asked == [("org/ds", None), ("org/ds", "v1"), ("org/down", None)]


def test_hub_mode_oasst_same_dialogs(monkeypatch, tmp_path):
    local = load_source(cfg("oasst1", FIXTURES / "oasst1.jsonl", oasst1={"policy": "all"}))
    _hub(monkeypatch, _fixture_messages(), tmp_path)
    hub = load_source(SourceConfig(name="oasst1", kind="oasst1", hf_id="OpenAssistant/oasst1",
                                   split="validation", oasst1={"policy": "all"}))
    assert hub.dialogs == local.dialogs and hub.counts == local.counts


def test_hub_mode_chip2_data_files(monkeypatch, tmp_path):
    rows = [json.loads(line) for line in (FIXTURES / "chip2.jsonl").read_text(encoding="utf-8").splitlines()]
    calls = _hub(monkeypatch, rows, tmp_path)
    fields = SourceConfig.model_fields
    extra = {"data_files": "unified_chip2.jsonl"} if "data_files" in fields else {}
    hub = load_source(SourceConfig(name="chip2", kind="chip2", hf_id="laion/OIG", **extra))
    assert calls[0][1].get("data_files") == extra.get("data_files")
    assert hub.dialogs == load_source(cfg("chip2", FIXTURES / "chip2.jsonl")).dialogs


# ---- the real public samples (skipped without ../shared/data) ---------------------------------

needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="real samples folder ../shared/data absent")


@needs_shared
def test_real_dolly_sample():
    r = load_source(cfg("dolly", SHARED / "databricks_dolly_15k_first_records.jsonl"))
    check_result(r)
    assert r.counts == {"read": 10, "kept": 10, "rejected": 0, "excluded": 0, "dialogs": 10}
    d = r.dialogs[0]
    assert d["messages"][0]["content"].startswith("When did Virgin Australia start operating?\n\nVirgin Australia, the trading")
    assert d["meta"]["category"] == "closed_qa"


@needs_shared
def test_real_oasst1_sample():
    path = SHARED / "oasst1_en_validation_sample.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert len({m["message_tree_id"] for m in rows}) == 80
    best = load_source(cfg("oasst1", path))
    check_result(best)
    assert best.counts["read"] == 831 and best.counts["trees"] == 77 and best.counts["dialogs"] == 77
    orphans = [row for row in best.rejects if row["reasons"][0].startswith("broken tree: parent_id")]
    assert len(orphans) == 3  # the 3 messages whose parent is in another language upstream
    assert all(d["messages"][0]["role"] == "user" and d["messages"][-1]["role"] == "assistant" for d in best.dialogs)
    every = load_source(cfg("oasst1", path, oasst1={"policy": "all"}))
    check_result(every)
    assert every.counts["dialogs"] > best.counts["dialogs"]
    assert every.counts["rejected"] == best.counts["rejected"]
    assert every.counts["excluded"] == every.counts["excluded_unanswered"]


@needs_shared
def test_real_chip2_pair_sample():
    r = load_source(cfg("chip2", SHARED / "chip2_instruct_alpha_v6a_2_en_ru_sample.jsonl"))
    check_result(r)
    assert r.counts == {"read": 102, "kept": 102, "rejected": 0, "excluded": 0, "dialogs": 102}
    assert r.dialogs[1]["messages"][0]["content"] == "How do I find a job?"


def test_local_records_belong_to_the_configured_source():
    from ruinstruct.config import SourceConfig
    from ruinstruct.sources import load_source

    path = Path(__file__).resolve().parents[2] / "src/ruinstruct/resources/fixtures/local/dialogs.jsonl"
    res = load_source(SourceConfig(name="local/mine", kind="local", path=str(path)))
    assert res.dialogs and {d["source"] for d in res.dialogs} == {"local/mine"}
    assert all(d["id"].startswith("local/mine:") for d in res.dialogs)
    assert all(d["meta"].get("upstream_source") == "local/demo" for d in res.dialogs)
    ru = [d for d in res.dialogs if d["lang"] == "ru"]
    assert ru and all(d["origin_id"].startswith("local/mine:") for d in ru if d["origin_id"])


# ---- bad encoding, duplicate ids, NaN (issue 5) -----------------------------------------------

GOOD_RECORD = {
    "dolly": {"instruction": "Say hi.", "context": "", "response": "Hi!", "category": "open_qa"},
    "chip2": {"text": "<human>: Say hi.\n<bot>: Hi!"},
    "saiga": {"messages": [{"role": "user", "content": "Привет"}, {"role": "bot", "content": "Здравствуйте!"}]},
    "local": {"lang": "en", "messages": msgs(("user", "Say hi."), ("assistant", "Hi!"))},
}


@pytest.mark.parametrize("kind", ["dolly", "chip2", "saiga", "local"])
def test_line_that_is_not_utf8_is_one_reject(tmp_path, kind):
    good = json.dumps(GOOD_RECORD[kind], ensure_ascii=False).encode("utf-8")
    path = tmp_path / "in.jsonl"
    path.write_bytes(good + b"\n" + good[:-1] + b', "x": "\xe9t\xe9"}\n' + good + b"\n")
    r = load_source(cfg(kind, path))
    check_result(r, lang=None)
    assert (r.counts["read"], r.counts["kept"], r.counts["rejected"]) == (3, 2, 1)
    assert r.rejects[0]["where"] == f"{path}:2"
    assert r.rejects[0]["reasons"][0].startswith("not UTF-8: byte 0xe9 at byte offset")
    assert "\\xe9t\\xe9" in r.rejects[0]["raw"]


def test_oasst_line_that_is_not_utf8_is_one_reject(tmp_path):
    lines = [json.dumps(_m("r", None, "prompter", "Q1")).encode(), b'{"message_id": "\xff"}',
             json.dumps(_m("x", "r", "assistant", "A1", 0)).encode()]
    path = tmp_path / "o.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    r = load_source(cfg("oasst1", path))
    check_result(r)
    assert r.counts == {"read": 3, "kept": 2, "rejected": 1, "excluded": 0, "dialogs": 1, "trees": 1}
    assert [(row["where"], row["reasons"]) for row in r.rejects] == [
        (f"{path}:2", ["not UTF-8: byte 0xff at byte offset 16 (invalid start byte)"])]


def test_json_document_that_is_not_utf8_is_an_error_naming_the_file(tmp_path):
    from ruinstruct.io import InputFileError

    path = tmp_path / "pairs.json"
    path.write_bytes(b'[\n  {"user": "Hi", "bot": "Hello"},\n  {"user": "caf' + b'\xe9", "bot": "x"}\n]\n')
    with pytest.raises(InputFileError, match=r"pairs\.json: not UTF-8 at line 3, byte offset 15 \(byte 0xe9"):
        load_source(cfg("chip2", path))
    # a one-line .json (a JSON Lines file under a .json name) is a record: rejected on its own
    one = tmp_path / "one.json"
    one.write_bytes(b'{"user": "caf\xe9", "bot": "x"}\n')
    r = load_source(cfg("chip2", one))
    assert r.counts["rejected"] == 1 and r.rejects[0]["where"] == f"{one}:1"
    # a UTF-8 byte order mark is not an error
    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + json.dumps([{"user": "Hi", "bot": "Hello"}]).encode())
    assert load_source(cfg("chip2", bom)).counts["kept"] == 1


def test_duplicate_ids_are_rejected_and_counted(tmp_path):
    rec = lambda i, q: {"id": i, "text": f"<human>: {q}\n<bot>: A"}  # noqa: E731
    path = write_jsonl(tmp_path / "c.jsonl", [rec("a", "Q1"), rec("b", "Q2"), rec("a", "Q3"), rec("a", "Q4")])
    r = load_source(cfg("chip2", path))
    check_result(r)
    assert r.counts == {"read": 4, "kept": 2, "rejected": 2, "excluded": 0, "dialogs": 2}
    assert by_id(r)["chip2:a"]["messages"][0]["content"] == "Q1"  # the first one stays
    assert [(row["where"], row["reasons"], row["first_at"], row["text"][:11]) for row in r.rejects] == [
        (f"{path}:3", ["duplicate id"], f"{path}:1", "<human>: Q3"),
        (f"{path}:4", ["duplicate id"], f"{path}:1", "<human>: Q4"),
    ]
    # local: "x" and "local/x:x" are the same id once prefixed
    loc = write_jsonl(tmp_path / "l.jsonl", [
        {"id": "x", "lang": "en", "messages": msgs(("user", "Q"), ("assistant", "A"))},
        {"id": "local/x:x", "lang": "en", "messages": msgs(("user", "Q2"), ("assistant", "A2"))},
    ])
    r2 = load_source(cfg("local", loc, name="local/x"))
    check_result(r2, lang=None)
    assert (r2.counts["kept"], r2.counts["rejected"]) == (1, 1) and r2.rejects[0]["reasons"] == ["duplicate id"]
    # saiga: duplicate upstream ids
    sg = write_jsonl(tmp_path / "s.jsonl", [dict(GOOD_RECORD["saiga"], id=7), dict(GOOD_RECORD["saiga"], id=7)])
    r3 = load_source(cfg("saiga", sg, name="saiga/x"))
    check_result(r3, lang="ru")
    assert [row["reasons"] for row in r3.rejects] == [["duplicate id"]]


def test_nan_in_upstream_extras_becomes_null(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"text": "<human>: Q\\n<bot>: A", "metadata": {"score": NaN}}\n'
                    '{"id": NaN, "lang": "en", "messages": [{"role": "user", "content": "Q"}, '
                    '{"role": "assistant", "content": "A"}], "origin_id": NaN}\n', encoding="utf-8")
    r = load_source(cfg("chip2", path))
    assert r.dialogs[0]["meta"]["metadata"] == {"score": None}
    write_dialogs(tmp_path / "raw.parquet", r.dialogs)  # would raise on a NaN
    loc = load_source(cfg("local", path, name="local/x"))
    check_result(loc, lang=None)
    assert [row["reasons"] for row in loc.rejects][1] == ["id is not a string or an integer: float"]
    assert loc.rejects[1]["id"] == "NaN" and loc.rejects[1]["origin_id"] == "NaN"  # visible, standard JSON


# ---- source-kind options ---------------------------------------------------------------------

def test_oasst_options_section(tmp_path):
    rows = [_m("r", None, "prompter", "Q1"),
            _m("a", "r", "assistant", "A-a", 0, labels={"name": ["spam"], "value": [0.6], "count": [5]}),
            _m("b", "r", "assistant", "A-b", 1)]
    path = write_jsonl(tmp_path / "o.jsonl", rows)
    default = load_source(cfg("oasst1", path))
    assert [d["id"] for d in default.dialogs] == ["oasst1:b"] and default.counts["rejected"] == 1
    lenient = load_source(cfg("oasst1", path, oasst1={"spam_threshold": 0.7}))
    assert [d["id"] for d in lenient.dialogs] == ["oasst1:a"] and lenient.counts["rejected"] == 0
    de = load_source(cfg("oasst1", path, oasst1={"lang": "de"}))
    assert de.dialogs == [] and de.counts["excluded_lang"] == 3
    assert SourceConfig(name="o", kind="oasst1", path="x").oasst1.policy == "best"
    assert SourceConfig(name="d", kind="dolly", path="x").oasst1 is None


def test_kind_options_for_the_wrong_kind_are_errors(tmp_path):
    from ruinstruct.config import ConfigError, load_config

    p = tmp_path / "c.yaml"
    p.write_text("name: x\ndata:\n  sources:\n    - {name: d, kind: dolly, path: a.jsonl, oasst1: {policy: all}}\n")
    with pytest.raises(ConfigError, match=r"data\.sources\[0\].*`oasst1` options apply to kind oasst1 only, and this "
                                          r"source is kind dolly"):
        load_config(p)
    p.write_text("name: x\ndata:\n  sources:\n    - {name: o, kind: oasst1, path: a.jsonl, oasst_policy: all}\n")
    with pytest.raises(ConfigError, match="`oasst_policy` is now `oasst1.policy`"):
        load_config(p)
    p.write_text("name: x\ndata:\n  sources:\n    - {name: o, kind: oasst1, path: a.jsonl, oasst1: {polcy: all}}\n")
    with pytest.raises(ConfigError, match=r"data\.sources\[0\]\.oasst1\.polcy"):
        load_config(p)
