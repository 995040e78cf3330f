"""MMLU and MMLU RU, k-shot, scored by the probability of the answer letter.

Data
- English: the hub's ``cais/mmlu`` (one config per subject; dev and test splits), or a local folder
  in the original layout of hendrycks/test: ``dev/<subject>_dev.csv`` and ``test/<subject>_test.csv``,
  no header, columns question, A, B, C, D, answer letter.
- Russian: ``NLPCoreTeam/mmlu_ru`` through the hub's parquet export (its loading script no longer
  runs with datasets >= 4), or a local folder with ``<subject>_dev.jsonl`` / ``<subject>_test.jsonl``
  rows holding question_ru, choices_ru and answer (0-3), or a downloaded copy of the parquet export
  (``<subject>/mmlu_ru-<split>.parquet``).
- A bad row (an answer that is no letter A-D / index 0-3, fewer or more than four choices, no
  question, a line that is not UTF-8 or not JSON) goes to ``<output stem>.rejects.jsonl`` with its
  reasons and is counted. An empty dev or test file is an error naming it.

Prompt (the original MMLU code's format, which lm-evaluation-harness and the MMLU RU authors keep)::

    The following are multiple choice questions (with answers) about abstract algebra.

    <dev question 1>
    A. <choice>
    B. <choice>
    C. <choice>
    D. <choice>
    Answer: B

    ... (k dev questions) ...
    <test question>
    A. ...
    D. <choice>
    Answer:

MMLU RU uses ``Ниже приведены вопросы с множественным выбором (с ответами) по <subject_ru>.`` and
``Ответ:``, the letters stay Latin, and subject_ru is the MMLU RU authors' own name for the subject
(NLP-Core-Team/mmlu_ru, categories.py). The subject in the English header is the subject id with
spaces (hendrycks' format_subject put a second space after "about"; lm-evaluation-harness and the
MMLU RU code do not, nor do we). When a prompt does not fit the model's context, shots are dropped
from the end until it does; how many questions lost shots is counted. A question that does not fit
even with no shot is not scored: it goes to the rejects file and is counted as too_long.

Prediction: one forward pass per question, batched with right padding; the logits are read at each
row's own last real tokens (positions then need no correction for padding, whatever the
architecture). The letter tokens are the ones the model would produce after ``Answer:`` in this
format (" A" for most tokenizers). probs = softmax over the four letter logits (A-D), the prediction
their argmax. A tokenizer without a " D" token splits it into a bare space and "D" (some tiny and
sentencepiece vocabularies do, for some letters or all): then the space is appended to the input and
each letter's log-probability is that of its own tokens, read in the same forward pass (for
one-token letters this is the softmax over their logits). Either way probs equal the normalised
full-sequence likelihoods of the four continuations (`score_continuations`, four forwards per
question), which the tests check.

Scores (percent): micro (correct / scored), by subject, by category (the MMLU authors' four
categories), category_mean (the mean of the category scores: MMLU RU's total as its authors define
it). For English a category's score is the accuracy over its questions (hendrycks' evaluate.py); for
Russian it is the mean of its subjects' accuracies (the MMLU RU authors' stats.py). `headline` is the
figure Table 1 reports: micro for English, category_mean for Russian.

Resume: after each subject its predictions are written to ``<output stem>.progress.jsonl`` beside the
output (atomically); a rerun with the same settings and model files scores only the missing subjects.

Heavy imports (torch, transformers, datasets) happen inside the functions.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

from ..errors import UserError
from ..io import iter_jsonl_lines, reject_row, rejects_path, write_json, write_jsonl
from ..paths import PROGRESS_SUFFIX

LETTERS = ("A", "B", "C", "D")
LANGS = ("en", "ru")
HUB_EN = "cais/mmlu"
HUB_RU = "NLPCoreTeam/mmlu_ru"
# the parquet export of the RU dataset: <subject>/mmlu_ru-<split>.parquet on refs/convert/parquet
HUB_RU_PARQUET = "hf://datasets/NLPCoreTeam/mmlu_ru@refs%2Fconvert%2Fparquet/{subject}/mmlu_ru-{split}.parquet"

HEADER = {
    "en": "The following are multiple choice questions (with answers) about {subject}.",
    "ru": "Ниже приведены вопросы с множественным выбором (с ответами) по {subject}.",
}
ANSWER_PREFIX = {"en": "Answer:", "ru": "Ответ:"}

CATEGORIES = ("STEM", "humanities", "social sciences", "other")

# The MMLU authors' grouping (hendrycks/test categories.py; NLP-Core-Team/mmlu_ru keeps it, so the
# MMLU RU total uses it too). lm-evaluation-harness differs in one subject: it puts anatomy in STEM.
_BY_CATEGORY = {
    "STEM": (
        "abstract_algebra astronomy college_biology college_chemistry college_computer_science "
        "college_mathematics college_physics computer_security conceptual_physics electrical_engineering "
        "elementary_mathematics high_school_biology high_school_chemistry high_school_computer_science "
        "high_school_mathematics high_school_physics high_school_statistics machine_learning"
    ),
    "humanities": (
        "formal_logic high_school_european_history high_school_us_history high_school_world_history "
        "international_law jurisprudence logical_fallacies moral_disputes moral_scenarios philosophy "
        "prehistory professional_law world_religions"
    ),
    "social sciences": (
        "econometrics high_school_geography high_school_government_and_politics high_school_macroeconomics "
        "high_school_microeconomics high_school_psychology human_sexuality professional_psychology "
        "public_relations security_studies sociology us_foreign_policy"
    ),
    "other": (
        "anatomy business_ethics clinical_knowledge college_medicine global_facts human_aging management "
        "marketing medical_genetics miscellaneous nutrition professional_accounting professional_medicine "
        "virology"
    ),
}
SUBJECT_CATEGORY: dict[str, str] = {s: c for c, names in _BY_CATEGORY.items() for s in names.split()}
SUBJECTS: tuple[str, ...] = tuple(sorted(SUBJECT_CATEGORY))

# The MMLU RU authors' subject names, in the case the header needs (NLP-Core-Team/mmlu_ru,
# categories.py subcategories_en2ru, underscores shown as spaces as their prompt does).
SUBJECT_RU = {
    "abstract_algebra": "абстрактной алгебре",
    "anatomy": "анатомии",
    "astronomy": "астрономии",
    "business_ethics": "деловой этике",
    "clinical_knowledge": "медицинским знаниям",
    "college_biology": "биологии в вузе",
    "college_chemistry": "химии в вузе",
    "college_computer_science": "компьютерным наукам в вузе",
    "college_mathematics": "математике в вузе",
    "college_medicine": "медицине в вузе",
    "college_physics": "физике в вузе",
    "computer_security": "компьютерной безопасности",
    "conceptual_physics": "теоретической физике",
    "econometrics": "эконометрике",
    "electrical_engineering": "электротехнике",
    "elementary_mathematics": "элементарной математике",
    "formal_logic": "формальной логике",
    "global_facts": "фактам о мире",
    "high_school_biology": "биологии в старшей школе",
    "high_school_chemistry": "химии в старшей школе",
    "high_school_computer_science": "информатике в старшей школе",
    "high_school_european_history": "истории Европы в старшей школе",
    "high_school_geography": "географии в старшей школе",
    "high_school_government_and_politics": "государству и политике в старшей школе",
    "high_school_macroeconomics": "макроэкономике в старшей школе",
    "high_school_mathematics": "математике в старшей школе",
    "high_school_microeconomics": "микроэкономике в старшей школе",
    "high_school_physics": "физике в старшей школе",
    "high_school_psychology": "психологии в старшей школе",
    "high_school_statistics": "статистике в старшей школе",
    "high_school_us_history": "истории США в старшей школе",
    "high_school_world_history": "всемирной истории в старшей школе",
    "human_aging": "старению человека",
    "human_sexuality": "человеческой сексуальности",
    "international_law": "международному праву",
    "jurisprudence": "юриспруденции",
    "logical_fallacies": "логическим ошибкам",
    "machine_learning": "машинному обучению",
    "management": "менеджменту",
    "marketing": "маркетингу",
    "medical_genetics": "медицинской генетике",
    "miscellaneous": "разным темам",
    "moral_disputes": "нравственным спорам",
    "moral_scenarios": "нравственным сценариям",
    "nutrition": "правильному питанию",
    "philosophy": "философии",
    "prehistory": "доисторической эпохе",
    "professional_accounting": "профессиональному бухгалтерскому учету",
    "professional_law": "профессиональному праву",
    "professional_medicine": "профессиональной медицине",
    "professional_psychology": "профессиональной психологии",
    "public_relations": "связям с общественностью",
    "security_studies": "исследованиям в области безопасности",
    "sociology": "социологии",
    "us_foreign_policy": "внешней политике США",
    "virology": "вирусологии",
    "world_religions": "мировым религиям",
}


@dataclass(frozen=True)
class Question:
    subject: str
    index: int  # row in its split, counting rejected rows too, so it points into the original file
    question: str
    choices: tuple[str, str, str, str]
    gold: str  # "A".."D"


@dataclass
class SubjectData:
    subject: str
    dev: list[Question] = field(default_factory=list)
    test: list[Question] = field(default_factory=list)
    rejects: list[dict[str, Any]] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# prompts

def subject_title(subject: str, lang: str) -> str:
    return SUBJECT_RU[subject] if lang == "ru" else subject.replace("_", " ")


def format_question(q: Question, lang: str, *, with_answer: bool) -> str:
    text = q.question + "".join(f"\n{letter}. {choice}" for letter, choice in zip(LETTERS, q.choices, strict=True))
    text += f"\n{ANSWER_PREFIX[lang]}"
    return text + (f" {q.gold}\n\n" if with_answer else "")


def build_prompt(subject: str, shots: Sequence[Question], question: Question, lang: str) -> str:
    """The k-shot prompt for `question`, ending with "Answer:" ("Ответ:")."""
    header = HEADER[lang].format(subject=subject_title(subject, lang)) + "\n\n"
    return header + "".join(format_question(s, lang, with_answer=True) for s in shots) + \
        format_question(question, lang, with_answer=False)


# ---------------------------------------------------------------------------------------------
# data

def _check_row(question: Any, choices: Any, gold: Any) -> list[str]:
    reasons = []
    if not isinstance(question, str) or not question.strip():
        reasons.append("no question text")
    if not isinstance(choices, list | tuple) or len(choices) != 4:
        n = len(choices) if isinstance(choices, list | tuple) else 0
        reasons.append(f"expected 4 choices, got {n}")
    elif any(not isinstance(c, str) for c in choices):
        reasons.append("a choice is missing (not text)")
    if gold not in LETTERS:
        reasons.append(f"answer {gold!r} is not one of A, B, C, D")
    return reasons


def _gold_letter(answer: Any) -> Any:
    """An answer index 0-3 as its letter; anything else as it is (then rejected by _check_row)."""
    if isinstance(answer, int) and not isinstance(answer, bool) and 0 <= answer < 4:
        return LETTERS[answer]
    return answer


class _Unreadable(NamedTuple):
    """A row that could not be read at all (not UTF-8, not JSON): its reason replaces the checks."""

    reason: str


def _rows_to_questions(subject: str, split: str, rows: Iterable[tuple[int, Any, Any, Any, dict, str]],
                       data: SubjectData) -> list[Question]:
    out = []
    for index, question, choices, gold, record, where in rows:
        reasons = [question.reason] if isinstance(question, _Unreadable) else _check_row(question, choices, gold)
        if reasons:
            data.rejects.append(reject_row(reasons, record=record, where=where, subject=subject, split=split,
                                           index=index))
        else:
            out.append(Question(subject, index, question, tuple(choices), gold))
    return out


def _undecodable(row: list[str]) -> str | None:
    """Why a CSV row read with surrogateescape is not UTF-8 (None when it is)."""
    for cell in row:
        for ch in cell:
            if "\udc80" <= ch <= "\udcff":
                return f"not UTF-8: byte 0x{ord(ch) - 0xDC00:02x}"
    return None


def _read_csv_rows(path: Path) -> Iterable[tuple[int, Any, Any, Any, dict, str]]:
    # surrogateescape: one row with a bad byte is that row's reject, not the whole file's traceback
    with open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as f:
        for index, row in enumerate(csv.reader(f)):
            where = f"{path}:{index + 1}"
            if (bad := _undecodable(row)) is not None:
                shown = [c.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace") for c in row]
                yield index, _Unreadable(bad), None, None, {"row": shown}, where
                continue
            record = {"row": row}
            if len(row) < 6:
                yield index, row[0] if row else None, row[1:5] if len(row) > 1 else None, \
                    (row[5].strip() if len(row) > 5 else None), record, where
            else:
                # more than 6 columns: the extra ones are what the answer column should have been
                choices = row[1:5] if len(row) == 6 else row[1:-1]
                yield index, row[0], choices, row[-1].strip(), record, where


def _read_ru_rows(path: Path) -> Iterable[tuple[int, Any, Any, Any, dict, str]]:
    for index, line in enumerate(iter_jsonl_lines(path)):
        where = f"{path}:{line.lineno}"
        obj = line.obj
        if line.error is not None or not isinstance(obj, dict):
            yield index, _Unreadable(line.error or "not a JSON object"), None, None, {"raw": line.raw}, where
            continue
        yield index, obj.get("question_ru"), obj.get("choices_ru"), _gold_letter(obj.get("answer")), obj, where


def _records_to_rows(records: Iterable[dict], lang: str, where: str) -> Iterable[tuple[int, Any, Any, Any, dict, str]]:
    qkey, ckey = ("question", "choices") if lang == "en" else ("question_ru", "choices_ru")
    for index, rec in enumerate(records):
        choices = rec.get(ckey)
        choices = list(choices) if choices is not None and not isinstance(choices, str) else choices
        yield index, rec.get(qkey), choices, _gold_letter(rec.get("answer")), dict(rec), f"{where}[{index}]"


def _local_files(data: Path, lang: str, subject: str) -> dict[str, Path]:
    if lang == "en":
        return {split: data / split / f"{subject}_{split}.csv" for split in ("dev", "test")}
    jsonl = {split: data / f"{subject}_{split}.jsonl" for split in ("dev", "test")}
    parquet = {split: data / subject / f"mmlu_ru-{split}.parquet" for split in ("dev", "test")}
    return parquet if parquet["test"].is_file() and not jsonl["test"].is_file() else jsonl


def local_subjects(data: Path, lang: str) -> list[str]:
    """The subjects of a local folder (those with a test file), in name order."""
    if lang == "en":
        found = [p.name.removesuffix("_test.csv") for p in (data / "test").glob("*_test.csv")]
    else:
        found = [p.name.removesuffix("_test.jsonl") for p in data.glob("*_test.jsonl")]
        found += [p.parent.name for p in data.glob("*/mmlu_ru-test.parquet")]
    return sorted(set(found))


def load_subject(data: str | Path | None, lang: str, subject: str, *, need_dev: bool = True) -> SubjectData:
    """Dev and test questions of one subject (bad rows in `rejects`), from the hub or a local folder."""
    out = SubjectData(subject)
    for split in ("dev", "test"):
        if split == "dev" and not need_dev:
            continue
        if data is None:
            rows = _records_to_rows(_hub_records(lang, subject, split), lang,
                                    f"{HUB_EN if lang == 'en' else HUB_RU}/{subject}/{split}")
        else:
            path = _local_files(Path(data), lang, subject)[split]
            if not path.is_file():
                raise UserError(f"{path}: no such file (the {split} split of {subject})")
            if path.suffix == ".csv":
                rows = _read_csv_rows(path)
            elif path.suffix == ".parquet":
                import pyarrow.parquet as pq

                rows = _records_to_rows(pq.read_table(path).to_pylist(), lang, str(path))
            else:
                rows = _read_ru_rows(path)
        before = len(out.rejects)
        questions = _rows_to_questions(subject, split, rows, out)
        if not questions and len(out.rejects) == before:
            # an empty file would drop its subject from the scores (or its shots) without a word
            where = path if data is not None else f"{HUB_EN if lang == 'en' else HUB_RU}/{subject}"
            raise UserError(f"{where}: empty, no {split} questions for {subject}")
        setattr(out, split, questions)
    return out


def _hub_records(lang: str, subject: str, split: str) -> list[dict]:
    from datasets import load_dataset

    from ..errors import chain, is_retryable

    where = HUB_EN if lang == "en" else HUB_RU
    try:
        if lang == "en":
            ds = load_dataset(HUB_EN, subject, split=split)
        else:
            url = HUB_RU_PARQUET.format(subject=subject, split=split)
            ds = load_dataset("parquet", data_files={split: url}, split=split)
    except Exception as e:
        if is_retryable(e):
            raise  # network trouble: worth a retry (the Prefect task retries it)
        cause = " ".join(str(list(chain(e))[-1]).split())[:200]
        raise UserError(f"{where} ({subject}, {split}): cannot load it from the hub ({cause}); "
                        "give --data with a local copy") from e
    return list(ds)


# ---------------------------------------------------------------------------------------------
# tokens

@dataclass(frozen=True)
class LetterTokens:
    """What follows "Answer:" for each letter, as the tokenizer splits it in this prompt format.

    `conts[L]` are the tokens of " L" after the answer prefix: usually one token (" A"), two when
    the tokenizer has no " A" token (a bare space, then "A"; a vocabulary may even mix the two).
    `path` is appended to the prompt so that one forward pass yields every token of every
    continuation: each continuation but its last token is a prefix of `path`, and token j of a
    continuation is read at the j-th position from the prompt's last token."""

    path: tuple[int, ...]
    conts: tuple[tuple[int, ...], ...]

    @property
    def ids(self) -> tuple[int, ...]:
        """The token that tells each letter apart (the last of its continuation)."""
        return tuple(c[-1] for c in self.conts)


def letter_tokens(tokenizer: Any, lang: str) -> LetterTokens:
    """Resolve the letter tokens the model would produce after the answer prefix, by tokenizing a
    prompt tail with and without " A".. " D" and taking the tokens added."""
    name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
    tail = f"Question?\nA. one\nB. two\nC. three\nD. four\n{ANSWER_PREFIX[lang]}"
    base = tokenizer(tail, add_special_tokens=False)["input_ids"]
    conts = []
    for letter in LETTERS:
        full = tokenizer(f"{tail} {letter}", add_special_tokens=False)["input_ids"]
        if full[: len(base)] != base or len(full) == len(base):
            raise UserError(f"tokenizer {name}: \"{ANSWER_PREFIX[lang]} {letter}\" merges the answer prefix with "
                            "the letter; letter scoring needs them apart")
        conts.append(tuple(full[len(base):]))
    longest = max(conts, key=len)
    path = longest[:-1]
    if len(set(conts)) != 4 or any(c[:-1] != path[: len(c) - 1] for c in conts):
        raise UserError(f"tokenizer {name}: the letters A-D after \"{ANSWER_PREFIX[lang]}\" do not share one "
                        f"token path ({[list(c) for c in conts]}); one-pass letter scoring cannot read them")
    return LetterTokens(tuple(path), tuple(conts))


def encode_prompt(tokenizer: Any, prompt: str, letters: LetterTokens) -> list[int]:
    """The input ids of one question: the prompt (with the tokenizer's special tokens), then the
    letter path (usually nothing; a bare space for tokenizers without " A" tokens)."""
    return list(tokenizer(prompt)["input_ids"]) + list(letters.path)


def fit_prompt(tokenizer: Any, subject: str, dev: Sequence[Question], question: Question, lang: str, shots: int,
               letters: LetterTokens, max_length: int | None) -> tuple[str, list[int], int] | None:
    """(prompt, input ids, shots used) with as many of the first `shots` dev questions as fit in
    `max_length` tokens (dropped from the end); None when not even the bare question fits."""
    k = min(shots, len(dev))
    while k >= 0:
        prompt = build_prompt(subject, dev[:k], question, lang)
        ids = encode_prompt(tokenizer, prompt, letters)
        if max_length is None or len(ids) <= max_length:
            return prompt, ids, k
        k -= 1
    return None


# ---------------------------------------------------------------------------------------------
# scoring

def _batches(order: list[int], size: int) -> Iterable[list[int]]:
    for i in range(0, len(order), size):
        yield order[i: i + size]


def _pad_right(seqs: Sequence[Sequence[int]], pad_id: int, device: Any) -> tuple[Any, Any, Any]:
    import torch

    from .load import pad_batch

    ids, mask = pad_batch(seqs, pad_id, side="right")
    return ids.to(device), mask.to(device), torch.tensor([len(s) for s in seqs])


def _logprobs_at(model: Any, ids: Any, mask: Any, positions: Any) -> Any:
    """log-softmax of the logits at `positions` [rows, k] of each row: [rows, k, vocab]. The head
    runs only at the positions needed when the model takes logits_to_keep."""
    import inspect

    import torch

    rows = torch.arange(ids.shape[0], device=ids.device)[:, None]
    if "logits_to_keep" in inspect.signature(model.forward).parameters:
        keep, where = torch.unique(positions, return_inverse=True)  # distinct positions, sorted
        logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=keep).logits[rows, where]
    else:
        logits = model(input_ids=ids, attention_mask=mask).logits[rows, positions]
    return torch.log_softmax(logits.float(), dim=-1)


def score_letters(model: Any, tokenizer: Any, inputs: Sequence[Sequence[int]], letters: LetterTokens, *,
                  batch_size: int = 8, progress: Callable[[int], None] | None = None) -> list[list[float]]:
    """probs[A-D] for each question's input ids (`encode_prompt`): softmax over the four letters'
    log-probabilities after the prompt; with one-token letters that is the softmax over the four
    letter logits at the last prompt token. One forward per question, `batch_size` questions a
    pass (longest first, so batches are nearly padding-free and the largest fails first if memory
    is short), right-padded, read at each row's own last tokens."""
    import torch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = next(model.parameters()).device
    k = len(letters.path) + 1  # positions read per row: the prompt's last token, then the path's
    out: list[list[float]] = [[] for _ in inputs]
    order = sorted(range(len(inputs)), key=lambda i: -len(inputs[i]))
    with torch.inference_mode():
        for batch in _batches(order, max(1, batch_size)):
            ids, mask, lengths = _pad_right([inputs[i] for i in batch], pad, device)
            first = (lengths.to(device) - k)[:, None]
            logp = _logprobs_at(model, ids, mask, first + torch.arange(k, device=device)[None, :])
            scores = torch.stack([sum(logp[:, j, t] for j, t in enumerate(c)) for c in letters.conts], dim=-1)
            probs = torch.softmax(scores, dim=-1).cpu().tolist()
            for i, p in zip(batch, probs, strict=True):
                out[i] = p
            if progress:
                progress(len(batch))
    return out


def score_continuations(model: Any, tokenizer: Any, prompts: Sequence[str], *, batch_size: int = 8) -> list[list[float]]:
    """The baseline one-pass scoring replaces: the log-likelihood of each of " A".." D" as a
    continuation of the prompt, the full sequence tokenized and run once per option (four
    forwards per question, `batch_size` sequences a pass, right-padded). Returns [n][4] sums of
    the continuation tokens' log-probabilities."""
    import torch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = next(model.parameters()).device
    seqs, starts = [], []
    for prompt in prompts:
        ctx = tokenizer(prompt)["input_ids"]
        for letter in LETTERS:
            full = tokenizer(f"{prompt} {letter}")["input_ids"]
            seqs.append(full)
            starts.append(len(ctx))
    scores = [0.0] * len(seqs)
    order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
    with torch.inference_mode():
        for batch in _batches(order, max(1, batch_size)):
            ids, mask, _ = _pad_right([seqs[i] for i in batch], pad, device)
            logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
            for row, i in enumerate(batch):
                s = seqs[i]
                pos = torch.arange(starts[i], len(s), device=device)
                tok = torch.tensor(s[starts[i]:], device=device)
                scores[i] = float(logp[row, pos - 1, tok].sum())
    return [scores[i: i + 4] for i in range(0, len(scores), 4)]


# ---------------------------------------------------------------------------------------------
# scores

def _pct(correct: int, total: int) -> float:
    return round(100.0 * correct / total, 4) if total else 0.0


def compute_scores(records: Sequence[dict], lang: str, *, shots_dropped: int = 0, too_long: int = 0,
                   rejected: int = 0) -> dict[str, Any]:
    """The scores dict of OUT.json from per-question records ({subject, predicted, gold, ...})."""
    per_subject: dict[str, list[int]] = {}
    for r in records:
        per_subject.setdefault(r["subject"], []).append(int(r["predicted"] == r["gold"]))
    by_subject = {s: _pct(sum(v), len(v)) for s, v in sorted(per_subject.items())}
    by_category: dict[str, float] = {}
    for cat in CATEGORIES:
        subs = [s for s in per_subject if SUBJECT_CATEGORY.get(s) == cat]
        if not subs:
            continue
        if lang == "ru":  # mean of the subject accuracies (the MMLU RU authors' stats.py)
            by_category[cat] = round(sum(100.0 * sum(per_subject[s]) / len(per_subject[s]) for s in subs) / len(subs), 4)
        else:  # accuracy over the category's questions (hendrycks' evaluate.py)
            by_category[cat] = _pct(sum(sum(per_subject[s]) for s in subs), sum(len(per_subject[s]) for s in subs))
    category_mean = round(sum(by_category.values()) / len(by_category), 4) if by_category else 0.0
    correct = sum(sum(v) for v in per_subject.values())
    total = sum(len(v) for v in per_subject.values())
    micro = _pct(correct, total)
    return {"micro": micro, "by_subject": by_subject, "by_category": by_category, "category_mean": category_mean,
            "headline": category_mean if lang == "ru" else micro, "questions": total, "correct": correct,
            "shots_dropped": shots_dropped, "too_long": too_long, "rejected": rejected}


# ---------------------------------------------------------------------------------------------
# the run

def progress_path(output: str | os.PathLike[str]) -> Path:
    output = Path(output)
    return output.parent / f"{output.stem}{PROGRESS_SUFFIX}"


def _read_progress(path: Path, settings: dict) -> dict[str, dict]:
    """Finished subjects from an earlier run with the same settings ({} for none or other settings)."""
    if not path.is_file():
        return {}
    lines = [ln.obj for ln in iter_jsonl_lines(path) if ln.error is None and isinstance(ln.obj, dict)]
    if not lines or lines[0].get("settings") != settings:
        print(f"{path}: from other settings or another model; scoring every subject again", file=sys.stderr)
        return {}
    return {d["subject"]: d for d in lines[1:] if "subject" in d}


def _resolve_subjects(data: str | Path | None, lang: str, subjects: list[str] | None) -> list[str]:
    available = SUBJECTS if data is None else local_subjects(Path(data), lang)
    if data is not None and not available:
        layout = "test/<subject>_test.csv" if lang == "en" else "<subject>_test.jsonl"
        raise UserError(f"{data}: no MMLU {'RU ' if lang == 'ru' else ''}test files ({layout})")
    unknown = [s for s in available if s not in SUBJECT_CATEGORY]
    if unknown:
        raise UserError(f"{data}: unknown MMLU subject(s) {', '.join(unknown)}")
    if not subjects:
        return list(available)
    missing = [s for s in subjects if s not in available]
    if missing:
        raise UserError(f"subjects {', '.join(missing)}: not in {data or 'MMLU'} (known: {', '.join(available)})")
    return list(dict.fromkeys(subjects))


def evaluate_mmlu(model: str | Path, data: str | Path | None, lang: Literal["en", "ru"], shots: int,
                  output: str | Path, *, batch_size: int = 8, subjects: list[str] | None = None,
                  limit: int | None = None, progress: Callable[[int, int], None] | None = None,
                  max_length: int | None = None) -> dict:
    """Score `model` on MMLU (lang "en") or MMLU RU ("ru") with `shots` dev questions per prompt and
    write `output` (OUT.json: settings, scores, and per question subject, index, predicted, gold,
    probs, shots). `data` None reads the hub. `max_length` caps the prompt length (default: the
    model's context). Resumable per subject. Returns the scores dict."""
    if lang not in LANGS:
        raise UserError(f"lang {lang!r}: expected en or ru")
    if shots < 0:
        raise UserError(f"shots {shots}: must be 0 or more")
    if data is not None and not Path(data).is_dir():
        raise UserError(f"{data}: {'a file, not a folder' if Path(data).exists() else 'no such folder'}")
    names = _resolve_subjects(data, lang, subjects)
    output = Path(output)
    from ..config import _model_identity

    # a retrained folder at the same path must not reuse the old model's predictions
    settings = {"model": str(model), "model_files": _model_identity(str(model))[:16], "data": str(data) if data else None,
                "lang": lang, "shots": shots, "limit": limit, "max_length": max_length}
    prog_path = progress_path(output)
    done = {s: d for s, d in _read_progress(prog_path, settings).items() if s in names}
    progress_lines: list[dict] = [{"settings": settings}, *done.values()]

    todo = [s for s in names if s not in done]
    loaded = {s: load_subject(data, lang, s, need_dev=shots > 0) for s in todo}
    for d in loaded.values():
        if limit is not None:
            d.test = [q for q in d.test if q.index < limit]
            d.rejects = [r for r in d.rejects if r["split"] == "dev" or r["index"] < limit]
    total = sum(len(d.test) for d in loaded.values())
    finished = 0
    context = max_length
    if todo:
        from .load import context_limit, load_for_eval

        net, tok = load_for_eval(model)
        letters = letter_tokens(tok, lang)
        if context is None:
            context = context_limit(net, tok)
        for s in todo:
            d = loaded[s]
            records, rejects, dropped = [], list(d.rejects), 0
            inputs, kept = [], []
            for q in d.test:
                fit = fit_prompt(tok, s, d.dev, q, lang, shots, letters, context)
                if fit is None:
                    rejects.append(reject_row([f"prompt longer than the context ({context} tokens) even with no shot"],
                                              record={"question": q.question, "choices": list(q.choices),
                                                      "gold": q.gold},
                                              subject=s, split="test", index=q.index, too_long=True))
                    continue
                _, ids, used = fit
                dropped += used < min(shots, len(d.dev))
                inputs.append(ids)
                kept.append((q, used))

            def tick(n: int) -> None:
                nonlocal finished
                finished += n
                if progress:
                    progress(finished, total)

            probs = score_letters(net, tok, inputs, letters, batch_size=batch_size, progress=tick)
            finished += len(d.test) - len(kept)  # the too-long ones count as done
            for (q, used), p in zip(kept, probs, strict=True):
                best = max(range(4), key=lambda j: p[j])
                records.append({"subject": s, "index": q.index, "predicted": LETTERS[best], "gold": q.gold,
                                "probs": [round(x, 6) for x in p], "shots": used})
            entry = {"subject": s, "questions": records, "rejects": rejects, "shots_dropped": dropped}
            progress_lines.append(entry)
            done[s] = entry
            write_jsonl(prog_path, progress_lines)  # atomic: a kill leaves the previous subjects intact
        from ..runtime import free_accelerator

        del net
        free_accelerator()

    records = [r for s in names for r in done[s]["questions"]]
    rejects = [r for s in names for r in done[s]["rejects"]]
    scores = compute_scores(records, lang, shots_dropped=sum(done[s]["shots_dropped"] for s in names),
                            too_long=sum(1 for r in rejects if r.get("too_long")),
                            rejected=sum(1 for r in rejects if not r.get("too_long")))
    rej_file = rejects_path(output)
    if rejects:
        write_jsonl(rej_file, rejects)
    elif rej_file.exists():
        rej_file.unlink()  # a stale one from an earlier run would be misread as this run's
    write_json(output, {"benchmark": "mmlu" if lang == "en" else "mmlu_ru", "model": str(model), "lang": lang,
                        "shots": shots, "data": str(data) if data else (HUB_EN if lang == "en" else HUB_RU),
                        "limit": limit, "max_length": context, "subjects": names, "scores": scores,
                        "rejects_file": str(rej_file) if rejects else None, "questions": records})
    return scores


def read_scores(path: str | Path) -> dict:
    """The scores of an OUT.json written by evaluate_mmlu."""
    return json.loads(Path(path).read_text(encoding="utf-8"))["scores"]


__all__ = ["evaluate_mmlu", "build_prompt", "letter_tokens", "score_letters", "score_continuations",
           "compute_scores", "load_subject", "SUBJECT_CATEGORY", "SUBJECT_RU", "CATEGORIES", "read_scores"]
