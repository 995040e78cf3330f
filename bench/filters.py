"""Quality of the corruption filters on the labelled set (not a test; prints JSON).

    python bench/filters.py [--fixture tests/fixtures/filter_set.jsonl] [--misses]

recall = rejected corrupt / corrupt; false_reject_rate = rejected good / good; per_kind gives
the rejection rate of every kind (for good kinds it is the false-reject rate); per_filter counts
the rows each filter rejects (a row two filters reject counts in both). --misses also lists the
misclassified rows with their reasons. When ../shared/data is present, "heldout_real_translations"
adds the reject rate on real translations never used for tuning (MT-Bench RU, MMLU RU).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from ruinstruct.filters import FilterConfig, apply_filters, reason_kind  # noqa: E402


def evaluate(rows: list[dict], cfg: FilterConfig | None = None) -> dict:
    t0 = time.perf_counter()
    result = apply_filters([(r["ru"], r["en"]) for r in rows], cfg or FilterConfig())
    seconds = time.perf_counter() - t0
    reasons_by_id = {row["id"]: row["reasons"] for row in result.rejected}
    per_kind: dict[str, dict] = defaultdict(lambda: {"label": "", "rows": 0, "rejected": 0})
    per_filter: dict[str, Counter] = defaultdict(Counter)
    misses = []
    for r in rows:
        reasons = reasons_by_id.get(r["ru"]["id"])
        k = per_kind[r["kind"]]
        k["label"] = r["label"]
        k["rows"] += 1
        k["rejected"] += bool(reasons)
        for name in dict.fromkeys(reason_kind(x).split("/")[0] for x in reasons or []):
            per_filter[name][r["label"]] += 1
        if bool(reasons) != (r["label"] == "corrupt"):
            misses.append({"id": r["id"], "label": r["label"], "reasons": reasons or []})
    corrupt = [r for r in rows if r["label"] == "corrupt"]
    good = [r for r in rows if r["label"] == "good"]
    caught = sum(1 for r in corrupt if r["ru"]["id"] in reasons_by_id)
    false = sum(1 for r in good if r["ru"]["id"] in reasons_by_id)
    for k in per_kind.values():
        k["rate"] = round(k["rejected"] / k["rows"], 3)
    return {
        "rows": len(rows),
        "corrupt": len(corrupt),
        "good": len(good),
        "recall": round(caught / len(corrupt), 4) if corrupt else None,
        "false_reject_rate": round(false / len(good), 4) if good else None,
        "per_kind": dict(sorted(per_kind.items())),
        "per_filter": {k: {"corrupt": v["corrupt"], "good": v["good"]} for k, v in sorted(per_filter.items())},
        "kept": len(result.kept),
        "rejected": len(result.rejected),
        "seconds": round(seconds, 3),
        "misses": misses,
    }


def heldout_real_translations(shared: Path) -> list[tuple[dict, dict]]:
    """(ru, en) pairs of real machine translations the filters were never tuned on: the 80
    MT-Bench questions (WMT21 + hand edits, both turns) and the MMLU RU test questions with their
    options (Yandex), one line per option. Not made by our paragraph-wise translator: some lose
    line breaks or translate math/symbol lines our translator would keep verbatim."""
    from ruinstruct.schema import make_dialog

    data = shared / "data"
    pairs = []

    def add(id_: str, source: str, en_text: str, ru_text: str) -> None:
        en = make_dialog(id=id_, source=source, license="-", messages=[
            {"role": "user", "content": en_text}, {"role": "assistant", "content": "OK."}])
        ru = make_dialog(id=id_ + ":ru", source=source, license="-", lang="ru", origin_id=id_, messages=[
            {"role": "user", "content": ru_text}, {"role": "assistant", "content": "Хорошо."}])
        pairs.append((ru, en))

    def rows(path: Path) -> list[dict]:
        return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]

    en_q = {r["question_id"]: r for r in rows(data / "mt_bench/question.jsonl")}
    for r in rows(data / "mt_bench/question_ru_dmitrymailk.jsonl"):
        for k, (e, t) in enumerate(zip(en_q[r["question_id"]]["turns"], r["turns"], strict=True)):
            add(f"mt_bench:{r['question_id']}:{k}", "mt_bench", e, t)
    for f in sorted((data / "mmlu_ru").glob("*_test.jsonl")):
        for i, r in enumerate(rows(f)):
            add(f"mmlu_ru:{f.stem}:{i}", "mmlu_ru", "\n".join([r["question_en"], *r["choices_en"]]),
                "\n".join([r["question_ru"], *r["choices_ru"]]))
    return pairs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fixture", type=Path, default=ROOT / "tests/fixtures/filter_set.jsonl")
    ap.add_argument("--misses", action="store_true", help="list misclassified rows with their reasons")
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared",
                    help="with its data/ present, also report false rejects on held-out real translations")
    args = ap.parse_args(argv)
    rows = [json.loads(line) for line in args.fixture.read_text(encoding="utf-8").splitlines() if line.strip()]
    out = evaluate(rows)
    if not args.misses:
        out.pop("misses")
    if (args.shared / "data/mmlu_ru").is_dir():
        pairs = heldout_real_translations(args.shared)
        res = apply_filters(pairs, FilterConfig())
        out["heldout_real_translations"] = {
            "pairs": len(pairs),
            "rejected": len(res.rejected),
            "reject_rate": round(len(res.rejected) / len(pairs), 4),
            "per_reason_kind": dict(Counter(reason_kind(r) for row in res.rejected for r in row["reasons"])),
        }
    print(json.dumps(out, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
