"""Write the project's tiny MMLU / MMLU RU fixture from tools/mmlu_fixture.yaml.

    python tools/build_mmlu_fixture.py [--out src/ruinstruct/resources/fixtures]

Layouts (the upstream ones, so the same code reads the real data):
- mmlu_en/dev/<subject>_dev.csv, mmlu_en/test/<subject>_test.csv: hendrycks/test's CSVs, no
  header, columns question, A, B, C, D, answer letter.
- mmlu_ru/<subject>_dev.jsonl, mmlu_ru/<subject>_test.jsonl: MMLU RU rows (NLPCoreTeam/mmlu_ru
  fields): subject, question_ru, choices_ru, question_en, choices_en, answer (0-3).

Deterministic; the output is committed. The questions were written for this project.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SOURCE = Path(__file__).with_name("mmlu_fixture.yaml")
LETTERS = "ABCD"


def build(out: Path) -> dict[str, int]:
    spec = yaml.safe_load(SOURCE.read_text(encoding="utf-8"))
    counts: dict[str, int] = {}
    for subject, splits in spec.items():
        for split, rows in splits.items():
            buf = io.StringIO()
            writer = csv.writer(buf, lineterminator="\n")
            lines = []
            for row in rows:
                en, ru, answer = row["en"], row["ru"], row["answer"]
                assert len(en) == 5 and len(ru) == 5 and answer in LETTERS, (subject, split, en)
                writer.writerow([*en, answer])
                lines.append(json.dumps({"subject": subject, "question_ru": ru[0], "choices_ru": ru[1:],
                                         "question_en": en[0], "choices_en": en[1:],
                                         "answer": LETTERS.index(answer)}, ensure_ascii=False))
            en_file = out / "mmlu_en" / split / f"{subject}_{split}.csv"
            ru_file = out / "mmlu_ru" / f"{subject}_{split}.jsonl"
            en_file.parent.mkdir(parents=True, exist_ok=True)
            ru_file.parent.mkdir(parents=True, exist_ok=True)
            en_file.write_text(buf.getvalue(), encoding="utf-8")
            ru_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
            counts[f"{subject}/{split}"] = len(rows)
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "src" / "ruinstruct" / "resources" / "fixtures")
    args = ap.parse_args()
    print(json.dumps(build(args.out), indent=1))


if __name__ == "__main__":
    main()
