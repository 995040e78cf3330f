"""The data report: counts per stage that add up, warnings for sources that gave nothing."""

from __future__ import annotations

import pytest

from ruinstruct.data_report import CountMismatch, build_report, report_markdown


def load(source: str, read: int, kept: int, rejected: int, excluded: int = 0, to_translate: int = 0) -> dict:
    return {"source": source, "counts": {"read": read, "kept": kept, "rejected": rejected, "excluded": excluded,
                                         "dialogs": kept, "to_translate": to_translate}}


def test_empty_and_all_invalid_sources_are_warnings():
    loads = [load("a", 5, 4, 1, to_translate=4), load("empty", 0, 0, 0), load("bad", 3, 0, 2, 1)]
    shards = [{"source": "a", "index": 0, "dialogs": 4, "translated": 7}]
    filtered = {"per_source": {"a": {"kept": 3, "rejected": 1}}, "report": {}}
    mixed = {"splits": {"train": 6, "validation": 1},
             "per_source": {"a": {"in_en": 4, "in_ru": 3, "train_en": 4, "train_ru": 2, "validation_ru": 1},
                            "empty": {}, "bad": {}}}
    rep = build_report(loads, shards, filtered, mixed)
    assert rep["warnings"] == [
        "source empty yielded no dialogs (no records)",
        "source bad yielded no dialogs (3 records read, 2 invalid, 1 excluded)",
    ]
    a = rep["per_source"]["a"]
    assert (a["downloaded"], a["invalid"], a["valid"], a["translated"], a["ru_kept"], a["filtered_out"]) == (5, 1, 4, 4, 3, 1)
    assert (a["mix_in"], a["final_en"], a["final_ru"], a["final"]) == (7, 4, 3, 7)
    assert rep["totals"]["final"] == 7 and rep["totals"]["downloaded"] == 8 and rep["totals"]["invalid"] == 3
    md = report_markdown(rep)
    assert "## Warnings\n\n- source empty yielded no dialogs (no records)\n- source bad yielded" in md


def test_empty_dataset_is_a_warning_and_a_good_run_has_none():
    rep = build_report([load("a", 0, 0, 0)], [], {"per_source": {}, "report": {}},
                       {"splits": {"train": 0, "validation": 0}, "per_source": {"a": {}}})
    assert rep["warnings"] == ["source a yielded no dialogs (no records)", "the final dataset is empty"]
    ok = build_report([load("a", 2, 2, 0)], [], None, None)
    assert ok["warnings"] == [] and "## Warnings" not in report_markdown(ok)


def test_counts_that_do_not_add_up_raise():
    loads = [load("a", 5, 4, 1, to_translate=4)]
    shards = [{"source": "a", "index": 0, "dialogs": 4}]
    filtered = {"per_source": {"a": {"kept": 2, "rejected": 1}}, "report": {}}  # one translation lost
    with pytest.raises(CountMismatch, match="a: translated = ru_kept \\+ filtered_out"):
        build_report(loads, shards, filtered, {"splits": {"train": 6}, "per_source": {"a": {"in_en": 4, "in_ru": 2}}})


def test_a_load_stage_warning_replaces_the_computed_one():
    empty = {**load("e", 0, 0, 0), "warnings": ["source e yielded no valid dialogs from e.jsonl (0 rejected)"]}
    rep = build_report([load("a", 1, 1, 0), empty], [], None, None)
    assert rep["warnings"] == ["source e yielded no valid dialogs from e.jsonl (0 rejected)"]
