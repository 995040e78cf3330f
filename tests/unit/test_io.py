"""Line-wise JSONL reading (bad encoding, malformed lines), the dialog-record reader behind
`translate` and `filter`, and JSON writing that never emits NaN."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ruinstruct.io import (
    InputFileError,
    iter_jsonl_lines,
    read_dialog_records,
    read_jsonl,
    reject_row,
    rejects_path,
    write_dialogs,
    write_json,
    write_jsonl,
)
from ruinstruct.schema import make_dialog, validate


def rec(i: int | str, **kw) -> dict:
    d = make_dialog(id=f"local/t:{i}", source="local/t", license="MIT",
                    messages=[{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": "answer"}])
    return {**d, **kw}


def write_lines(path: Path, lines: list[bytes | str | dict]) -> Path:
    out = b""
    for line in lines:
        if isinstance(line, dict):
            line = json.dumps(line, ensure_ascii=False)
        out += (line.encode("utf-8") if isinstance(line, str) else line) + b"\n"
    path.write_bytes(out)
    return path


# ---- iter_jsonl_lines / read_jsonl --------------------------------------------------------------

def test_iter_jsonl_lines_decodes_each_line_on_its_own(tmp_path):
    p = write_lines(tmp_path / "x.jsonl", [
        b'\xef\xbb\xbf{"a": 1}',  # BOM on the first line
        "",
        b'{"b": "caf\xe9"}',  # Latin-1, not UTF-8
        '{"c": ',
        '{"d": "\u0436"}\r',  # CRLF line end
    ])
    got = list(iter_jsonl_lines(p))
    assert [(x.lineno, x.obj, x.error) for x in got] == [
        (1, {"a": 1}, None),
        (3, None, "not UTF-8: byte 0xe9 at byte offset 10 (invalid continuation byte)"),
        (4, None, "malformed JSON line"),
        (5, {"d": "ж"}, None),
    ]
    assert got[1].raw == '{"b": "caf\\xe9"}'  # the bad byte stays visible in the rejects file
    assert got[2].raw == '{"c": '


def test_read_jsonl_is_strict_and_names_the_line(tmp_path):
    p = write_lines(tmp_path / "x.jsonl", ['{"a": 1}', b'{"b": "\xff"}'])
    with pytest.raises(InputFileError, match=r"x\.jsonl:2: not UTF-8: byte 0xff"):
        read_jsonl(p)


def test_unreadable_input_is_a_user_error_for_the_cli(tmp_path):
    from ruinstruct.errors import UserError, describe, is_retryable

    p = write_lines(tmp_path / "x.jsonl", [b"\xff"])
    with pytest.raises(UserError) as e:
        read_jsonl(p)
    assert describe(e.value) == f"{p}:1: not UTF-8: byte 0xff at byte offset 0 (invalid start byte)"
    assert not is_retryable(e.value)


# ---- read_dialog_records ---------------------------------------------------------------------------

def test_read_dialog_records_rejects_every_bad_record_with_place_and_reason(tmp_path):
    p = write_lines(tmp_path / "in.jsonl", [
        rec(0),                                              # 1 ok
        b'{"id": "local/t:1", "note": "\xff"}',              # 2 not UTF-8
        '{"id": ',                                           # 3 malformed
        rec(0, messages=[{"role": "user", "content": "other text"}, {"role": "assistant", "content": "a"}]),  # 4 dup
        '{"id": "local/t:5", "source": "local/t", "lang": "ru", "license": "MIT", "origin_id": NaN, '
        '"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}',  # 5 NaN origin
        rec(6, origin_id=7),                                 # 6 origin_id not a string
        rec(7, meta="{not json"),                            # 7 meta string that is not JSON
        rec(8, messages=[{"role": "user", "content": "q"}]),  # 8 schema: no assistant
        "[1, 2]",                                            # 9 not an object
        rec(10, lang="ru", origin_id="local/t:0", meta='{"k": 1}'),  # 10 ok, meta from a JSON string
        rec(11, meta={"score": math.nan}),                   # 11 ok: NaN inside meta is null
    ])
    dialogs, rejects = read_dialog_records(p)
    assert [d["id"] for d in dialogs] == ["local/t:0", "local/t:10", "local/t:11"]
    assert dialogs[1]["meta"] == {"k": 1} and dialogs[1]["origin_id"] == "local/t:0"
    assert dialogs[2]["meta"] == {"score": None}
    assert all(validate(d) == [] for d in dialogs)
    assert len(dialogs) + len(rejects) == 11
    assert [(r["where"], r["reasons"]) for r in rejects] == [
        (f"{p}:2", ["not UTF-8: byte 0xff at byte offset 29 (invalid start byte)"]),
        (f"{p}:3", ["malformed JSON line"]),
        (f"{p}:4", ["duplicate id"]),
        (f"{p}:5", ["origin_id must be a non-empty string or null, got NaN"]),
        (f"{p}:6", ["origin_id must be a non-empty string or null, got int 7"]),
        (f"{p}:7", ["meta is not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"]),
        (f"{p}:8", ["needs at least one user and one assistant message"]),
        (f"{p}:9", ["not an object: list"]),
    ]
    assert rejects[0]["raw"] == '{"id": "local/t:1", "note": "\\xff"}'
    assert rejects[2]["first_at"] == f"{p}:1" and rejects[2]["messages"][0]["content"] == "other text"
    assert rejects[3]["origin_id"] == "NaN"  # kept visible, as a string
    # the rejects file is standard JSON (no bare NaN)
    out = tmp_path / "rejects.jsonl"
    write_jsonl(out, rejects)
    assert "NaN," not in out.read_text(encoding="utf-8")
    json.loads(out.read_text(encoding="utf-8").splitlines()[3], parse_constant=lambda c: pytest.fail(c))


def test_read_dialog_records_parquet_and_missing_file(tmp_path):
    p = tmp_path / "d.parquet"
    write_dialogs(p, [rec(0), rec(1), rec(0)])
    dialogs, rejects = read_dialog_records(p)
    assert [d["id"] for d in dialogs] == ["local/t:0", "local/t:1"]
    assert [(r["where"], r["reasons"], r["first_at"]) for r in rejects] == [(f"{p}#2", ["duplicate id"], f"{p}#0")]
    with pytest.raises(FileNotFoundError, match="input file not found") as e:
        read_dialog_records(tmp_path / "nope.jsonl")
    assert e.value.filename == str(tmp_path / "nope.jsonl")
    with pytest.raises(IsADirectoryError, match="a folder, not a dialog file") as e2:
        read_dialog_records(tmp_path)
    assert e2.value.filename == str(tmp_path)


def test_read_dialog_records_all_invalid_gives_no_dialogs(tmp_path):
    p = write_lines(tmp_path / "bad.jsonl", [b"\xff\xfe", "nope"])
    dialogs, rejects = read_dialog_records(p)
    assert dialogs == [] and [r["where"] for r in rejects] == [f"{p}:1", f"{p}:2"]


# ---- writing ------------------------------------------------------------------------------------

def test_writers_refuse_nan_and_name_the_file(tmp_path):
    with pytest.raises(ValueError, match=r"out\.jsonl: cannot write NaN"):
        write_jsonl(tmp_path / "out.jsonl", [{"origin_id": math.nan}])
    with pytest.raises(ValueError, match=r"s\.json: cannot write NaN"):
        write_json(tmp_path / "s.json", {"x": math.inf})
    with pytest.raises(ValueError, match="cannot write NaN"):
        write_dialogs(tmp_path / "d.parquet", [{**rec(0), "meta": {"x": math.nan}}])
    assert sorted(f.name for f in tmp_path.iterdir()) == []  # nothing half-written


def test_reject_row_keeps_nan_as_text():
    row = reject_row(["bad"], record={"a": [math.nan, -math.inf], "b": 1.5}, where="f:1")
    assert row == {"a": ["NaN", "-Infinity"], "b": 1.5, "where": "f:1", "reasons": ["bad"]}


def test_rejects_path_beside_the_output_or_in_a_given_folder():
    assert rejects_path("out/ru.jsonl") == Path("out/ru.rejects.jsonl")
    # the filter command's invalid originals: beside its outputs, never in the user's input folder
    assert rejects_path("inputs/en.parquet", "out") == Path("out/en.rejects.jsonl")
