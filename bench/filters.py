"""Quality of the corruption filters on the labelled set, against OpusFilter (not a test; prints JSON).

    python bench/filters.py [--fixture tests/fixtures/filter_set.jsonl] [--misses] [--no-opusfilter]

Rows carry a split (tools/build_filter_set.py): "tune" (the rows the thresholds were tuned on)
and "heldout" (made from the odd chip2 records, which no threshold was tuned on). For each split
and each kind: rows, rejected, rate (recall for corrupt kinds, false-reject rate for good ones).
When ../shared/data is present, "heldout_real_translations" adds the reject rate on real
translations never used for tuning (MT-Bench RU, MMLU RU).

OpusFilter (the `bench` extra) runs its rule-based filters on the same rows as the baseline:
LengthRatio (chars), NonZeroNumerals, LanguageID (lingua backend, offline), CharacterScore,
TerminalPunctuation and Repetition, on each paragraph pair (aligned source/translation line,
the whole messages when their line counts differ); a dialog is rejected when any filter rejects
any of its pairs. A small text table goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from ruinstruct.filters import FilterConfig, apply_filters  # noqa: E402
from ruinstruct.filters.base import message_pairs, paragraph_pairs  # noqa: E402

REAL_ERRORS = ROOT / "tests/fixtures/real_translation_errors.json"
NEW_KINDS = ("changed_number", "english_sentence", "omitted_sentence", "hallucinated_sentence")
TARGET_RECALL = 0.9
TARGET_FALSE_REJECT = 0.02


# ---- ruinstruct --------------------------------------------------------------------------------

def ruinstruct_rejects(rows: list[dict], cfg: FilterConfig | None = None) -> tuple[dict[str, list[str]], dict]:
    """row id -> its reasons as text (rejected rows only), and the counts: one filter run per
    label, so each FilterResult's own per_filter / per_rule counts are the counts of that label."""
    by_label: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_label[r["label"]].append(r)
    t0 = time.perf_counter()
    results = {label: apply_filters([(r["ru"], r["en"]) for r in part], cfg or FilterConfig())
               for label, part in by_label.items()}
    seconds = time.perf_counter() - t0
    by_ru_id = {row["id"]: reasons for res in results.values() for row, reasons in res.rejected_with_reasons()}
    names = sorted({name for res in results.values() for name, n in res.per_filter.items() if n})
    extra = {
        "per_filter": {name: {label: res.per_filter[name] for label, res in results.items() if res.per_filter[name]}
                       for name in names},
        "per_rule": dict(sorted(sum((res.per_rule for res in results.values()), Counter()).items())),
        "seconds": round(seconds, 3),
    }
    return {r["id"]: [str(x) for x in by_ru_id[r["ru"]["id"]]] for r in rows if r["ru"]["id"] in by_ru_id}, extra


# ---- OpusFilter ----------------------------------------------------------------------------------

def opus_filters() -> list[tuple[str, Any]]:
    from opusfilter.filters import (
        CharacterScoreFilter,
        LanguageIDFilter,
        LengthRatioFilter,
        NonZeroNumeralsFilter,
        RepetitionFilter,
        TerminalPunctuationFilter,
    )

    return [
        ("LengthRatio", LengthRatioFilter(threshold=2, unit="char")),
        ("NonZeroNumerals", NonZeroNumeralsFilter(threshold=0.5)),
        ("LanguageID", LanguageIDFilter(languages=["en", "ru"], id_method="lingua", thresholds=[0.0, 0.0])),
        ("CharacterScore", CharacterScoreFilter(scripts=["Latin", "Cyrillic"], thresholds=[1, 0.5])),
        ("TerminalPunctuation", TerminalPunctuationFilter(threshold=-2)),
        ("Repetition", RepetitionFilter(threshold=2, min_length=3, max_length=100)),
    ]


def opus_segment_pairs(ru: dict, en: dict, n_messages: int | None = None) -> list[tuple[str, str]]:
    """(source, translation) text pairs for OpusFilter: our paragraph pairs with the verbatim
    lines too (its filters have no notion of code or art), blank line pairs left out."""
    return [(p.en, p.ru) for m in message_pairs(ru, en)[:n_messages] for p in paragraph_pairs(m, verbatim=True)
            if not p.aligned or p.en.strip() or p.ru.strip()]


def opus_rejects(rows: list[dict], filters: list[tuple[str, Any]]) -> tuple[dict[str, list[str]], dict]:
    t0 = time.perf_counter()
    segs = [(r["id"], p) for r in rows for p in opus_segment_pairs(r["ru"], r["en"], r.get("compare_messages"))]
    pairs = [p for _, p in segs]
    rejected: dict[str, list[str]] = defaultdict(list)
    for name, f in filters:
        for (rid, _), score in zip(segs, f.score(pairs), strict=True):
            if not f.accept(score) and name not in rejected[rid]:
                rejected[rid].append(name)
    return dict(rejected), {"seconds": round(time.perf_counter() - t0, 3), "segment_pairs": len(pairs)}


# ---- metrics -------------------------------------------------------------------------------------

def metrics(rows: list[dict], rejects: dict[str, list[str]]) -> dict:
    per_kind: dict[str, dict] = defaultdict(lambda: {"label": "", "rows": 0, "rejected": 0})
    misses = []
    for r in rows:
        k = per_kind[r["kind"]]
        k["label"] = r["label"]
        k["rows"] += 1
        hit = r["id"] in rejects
        k["rejected"] += hit
        if hit != (r["label"] == "corrupt"):
            misses.append({"id": r["id"], "label": r["label"], "reasons": rejects.get(r["id"], [])})
    for k in per_kind.values():
        k["rate"] = round(k["rejected"] / k["rows"], 3)
    corrupt = [r for r in rows if r["label"] == "corrupt"]
    good = [r for r in rows if r["label"] == "good"]
    caught = sum(r["id"] in rejects for r in corrupt)
    false = sum(r["id"] in rejects for r in good)
    return {
        "rows": len(rows),
        "corrupt": len(corrupt),
        "good": len(good),
        "recall": round(caught / len(corrupt), 4) if corrupt else None,
        "false_reject_rate": round(false / len(good), 4) if good else None,
        "per_kind": dict(sorted(per_kind.items())),
        "misses": misses,
    }


def heldout_real_translations(shared: Path) -> list[dict]:
    """Rows of real machine translations the filters were never tuned on: the 80 MT-Bench
    questions (WMT21 + hand edits, both turns) and the MMLU RU test questions with their options
    (Yandex), one line per option. Labelled good, except the rows read and found wrong
    (tests/fixtures/real_translation_errors.json: corrupt, with their kind). Not made by our paragraph-wise translator: some lose
    line breaks or translate math/symbol lines our translator would keep verbatim."""
    from ruinstruct.schema import make_dialog

    data = shared / "data"
    rows: list[dict] = []
    known_errors = {r["id"]: r["kind"] for r in json.loads(REAL_ERRORS.read_text(encoding="utf-8"))["rows"]}

    def add(id_: str, source: str, en_text: str, ru_text: str) -> None:
        en = make_dialog(id=id_, source=source, license="-", messages=[
            {"role": "user", "content": en_text}, {"role": "assistant", "content": "OK."}])
        ru = make_dialog(id=id_ + ":ru", source=source, license="-", lang="ru", origin_id=id_, messages=[
            {"role": "user", "content": ru_text}, {"role": "assistant", "content": "Хорошо."}])
        # the "OK." turn only makes a valid dialog: OpusFilter (which sees text pairs) skips it
        label, kind = ("corrupt", known_errors[id_]) if id_ in known_errors else ("good", f"{source}_real")
        rows.append({"id": id_, "label": label, "kind": kind, "en": en, "ru": ru, "compare_messages": 1})

    def read(path: Path) -> list[dict]:
        return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]

    en_q = {r["question_id"]: r for r in read(data / "mt_bench/question.jsonl")}
    for r in read(data / "mt_bench/question_ru_dmitrymailk.jsonl"):
        for k, (e, t) in enumerate(zip(en_q[r["question_id"]]["turns"], r["turns"], strict=True)):
            add(f"mt_bench:{r['question_id']}:{k}", "mt_bench", e, t)
    for f in sorted((data / "mmlu_ru").glob("*_test.jsonl")):
        for i, r in enumerate(read(f)):
            add(f"mmlu_ru:{f.stem}:{i}", "mmlu_ru", "\n".join([r["question_en"], *r["choices_en"]]),
                "\n".join([r["question_ru"], *r["choices_ru"]]))
    return rows


def splits(rows: list[dict], shared: Path | None) -> dict[str, list[dict]]:
    """The labelled rows by split, plus the held-out real translations when `shared`/data is there."""
    out = {"in_sample": [r for r in rows if r.get("split", "tune") == "tune"],
           "heldout": [r for r in rows if r.get("split") == "heldout"]}
    if shared is not None and (shared / "data/mmlu_ru").is_dir():
        out["heldout_real_translations"] = heldout_real_translations(shared)
    return out


def targets(ours: dict[str, dict]) -> dict[str, bool]:
    """The issue's targets, by name, from `metrics` per split: recall of each new kind in and out
    of sample, and the false-reject rate of every split."""
    return {
        **{f"recall_{k}_{s}": ours[s]["per_kind"].get(k, {}).get("rate", 0) >= TARGET_RECALL
           for s in ("in_sample", "heldout") for k in NEW_KINDS},
        **{f"false_reject_{s}": (ours[s]["false_reject_rate"] or 0) <= TARGET_FALSE_REJECT for s in ours},
    }


def table(out: dict) -> list[dict]:
    """One row per (split, kind): the rate of ruinstruct and of OpusFilter side by side."""
    rows = []
    for split, res in out["ruinstruct"].items():
        opus = out.get("opusfilter", {}).get(split, {})
        for kind, k in res["per_kind"].items():
            o = opus.get("per_kind", {}).get(kind)
            rows.append({"split": split, "kind": kind, "label": k["label"], "rows": k["rows"],
                         "ruinstruct": k["rate"], "opusfilter": o["rate"] if o else None})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fixture", type=Path, default=ROOT / "tests/fixtures/filter_set.jsonl")
    ap.add_argument("--misses", action="store_true", help="list misclassified rows with their reasons")
    ap.add_argument("--no-opusfilter", action="store_true", help="skip the OpusFilter baseline")
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared",
                    help="with its data/ present, also report false rejects on held-out real translations")
    args = ap.parse_args(argv)
    rows = [json.loads(line) for line in args.fixture.read_text(encoding="utf-8").splitlines() if line.strip()]
    parts = splits(rows, args.shared)

    out: dict[str, Any] = {"fixture": str(args.fixture), "ruinstruct": {}}
    for name, part in parts.items():
        rejects, extra = ruinstruct_rejects(part)
        out["ruinstruct"][name] = {**metrics(part, rejects), **extra}

    opus = None
    if not args.no_opusfilter:
        try:
            opus = opus_filters()
        except ImportError as e:
            out["opusfilter"] = {"error": f"not installed ({e}); pip install -e '.[bench]'"}
    if opus is not None:
        out["opusfilter"] = {"unit": "paragraph pair (aligned line; whole message when line counts differ)"}
        for name, part in parts.items():
            rejects, extra = opus_rejects(part, opus)
            res = {**metrics(part, rejects), **extra}
            res["per_filter"] = dict(Counter(f for fs in rejects.values() for f in fs))
            out["opusfilter"][name] = res

    out["targets"] = targets(out["ruinstruct"])
    out["table"] = table({k: v for k, v in out.items() if k in ("ruinstruct", "opusfilter")}
                         | {"opusfilter": {k: v for k, v in out.get("opusfilter", {}).items() if isinstance(v, dict)}})
    if not args.misses:
        for side in ("ruinstruct", "opusfilter"):
            for res in out.get(side, {}).values():
                if isinstance(res, dict):
                    res.pop("misses", None)
    print(json.dumps(out, ensure_ascii=False, indent=1))
    print(f"{'split':<26} {'kind':<28} {'label':<7} {'rows':>4} {'ruinstruct':>10} {'opusfilter':>10}", file=sys.stderr)
    for t in out["table"]:
        o = "-" if t["opusfilter"] is None else f"{t['opusfilter']:.3f}"
        print(f"{t['split']:<26} {t['kind']:<28} {t['label']:<7} {t['rows']:>4} {t['ruinstruct']:>10.3f} {o:>10}",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
