"""MT-Bench (RU): two-turn answers from a fine-tuned model, graded 1-10 by a judge (judge.py),
written in FastChat's llm_judge layout so its own scripts read the files unchanged:

    <output>/model_answer/<model_id>.jsonl        {question_id, answer_id, model_id,
                                                   choices: [{index: 0, turns: [a1, a2]}], tstamp}
    <output>/model_judgment/<judge>_single.jsonl  {question_id, model, judge: [judge model, prompt name],
                                                   user_prompt, judgment, score, turn, tstamp}
    <output>/scores.json                          the scores below, per category, and the settings
    <output>/judge_cache/<judge>.jsonl            every API verdict (a rerun pays nothing twice)

Questions are FastChat's format ({question_id, category, turns, reference?}); math, reasoning
and coding need reference answers: a question's own `reference`, or a FastChat reference answer
file (`--references`, model-answer format) which wins when both are there.

Answers: each question's turn 1 is rendered through the model's chat template (the template a
trained folder carries) with ``add_generation_prompt``; turn 2 is rendered with turn 1 and its
answer in context. Generation is batched across questions (left padding, prompts sorted by
length), with the paper's settings: sampling at temperature 0.2, top_p 0.95, top_k 40, one beam,
repetition penalty 1.1; each batch is seeded (seed, turn, batch index), so a rerun with the same
seed and batch size gives the same answers on CPU. A prompt that would not leave room for
max_new_tokens in the context keeps its last tokens (counted, and logged).

Scores as FastChat's show_result computes them: the mean rating of turn 1, of turn 2, and of all
rows together ("average"); rows rated -1 are excluded and counted. A judgment file shared by
several models (FastChat's habit) keeps the other models' rows.

Heavy imports (torch, transformers) happen inside the functions.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..paths import MT_BENCH_ANSWERS, MT_BENCH_JUDGE_CACHE, MT_BENCH_JUDGMENTS, MT_BENCH_SCORES, safe_name
from .judge import NEED_REF_CATEGORIES, JudgeRequest, build_request, load_judge_prompts, make_judge

log = logging.getLogger(__name__)

CATEGORIES: tuple[str, ...] = ("writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem",
                               "humanities")

#: the paper's generation settings (PAPER.md, Evaluation)
GENERATION: dict[str, Any] = {"do_sample": True, "temperature": 0.2, "top_p": 0.95, "top_k": 40, "num_beams": 1,
                              "repetition_penalty": 1.1}


def fixture_questions() -> Path:
    """The project's own small Russian question set (two per category, references included)."""
    return Path(__file__).resolve().parents[1] / "resources" / "fixtures" / "mt_bench" / "question.jsonl"


def fixture_judge_prompts_ru() -> Path:
    """The project's own Russian rendering of the four single-answer judge prompts."""
    return fixture_questions().with_name("judge_prompts_ru.jsonl")


# ---------------------------------------------------------------------------------------------
# inputs


def _str_list(value: Any, n_max: int) -> bool:
    return (isinstance(value, list) and 1 <= len(value) <= n_max
            and all(isinstance(t, str) and t.strip() for t in value))


def load_questions(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """FastChat questions, strictly: a benchmark with a question quietly missing would score
    something else, so any bad line is an error naming file:line and the field."""
    from ..io import iter_jsonl_lines

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: question file not found")
    out: list[dict[str, Any]] = []
    seen: dict[Any, int] = {}
    for line in iter_jsonl_lines(path):
        where = f"{path}:{line.lineno}"
        q = line.obj
        if line.error or not isinstance(q, dict):
            raise UserError(f"{where}: {line.error or 'not a JSON object'}")
        qid = q.get("question_id")
        if not isinstance(qid, int | str) or isinstance(qid, bool):
            raise UserError(f"{where}: question_id must be an integer or a string")
        if qid in seen:
            raise UserError(f"{where}: question_id {qid} already on line {seen[qid]}")
        seen[qid] = line.lineno
        if not isinstance(q.get("category"), str) or not q["category"]:
            raise UserError(f"{where}: category must be a non-empty string")
        if not _str_list(q.get("turns"), 2):
            raise UserError(f"{where}: turns must be a list of one or two non-empty strings")
        if "reference" in q and q["reference"] is not None and not _str_list(q["reference"], 2):
            raise UserError(f"{where}: reference must be a list of one or two strings")
        out.append(q)
    if not out:
        raise UserError(f"{path}: no questions")
    return out


def load_references(path: str | os.PathLike[str]) -> dict[Any, list[str]]:
    """Reference answers by question id from a FastChat reference answer file (model-answer
    format: choices[0].turns); rows in question format (`reference`) are read too."""
    from ..io import iter_jsonl_lines

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: reference answer file not found")
    refs: dict[Any, list[str]] = {}
    for line in iter_jsonl_lines(path):
        obj = line.obj
        where = f"{path}:{line.lineno}"
        if line.error or not isinstance(obj, dict) or "question_id" not in obj:
            raise UserError(f"{where}: {line.error or 'not an answer row with a question_id'}")
        try:
            turns = obj["choices"][0]["turns"] if "choices" in obj else obj["reference"]
        except (KeyError, IndexError, TypeError):
            raise UserError(f"{where}: no choices[0].turns") from None
        if not _str_list(turns, 10):
            raise UserError(f"{where}: reference turns must be a list of strings")
        refs[obj["question_id"]] = turns
    return refs


def resolve_references(questions: Sequence[dict[str, Any]], references: dict[Any, list[str]] | None = None
                       ) -> dict[Any, list[str]]:
    """The reference answers the judge needs (math, reasoning, coding); every one of those
    questions must have one for each of its turns."""
    out: dict[Any, list[str]] = {}
    missing = []
    for q in questions:
        if q["category"] not in NEED_REF_CATEGORIES:
            continue
        ref = (references or {}).get(q["question_id"]) or q.get("reference")
        if not ref or len(ref) < len(q["turns"]):
            missing.append(str(q["question_id"]))
        else:
            out[q["question_id"]] = list(ref)
    if missing:
        raise UserError(f"no reference answers for question(s) {', '.join(missing)} "
                        f"({'/'.join(NEED_REF_CATEGORIES)}): give --references or a 'reference' field")
    return out


# ---------------------------------------------------------------------------------------------
# answers


def conversation(question: dict[str, Any], turn: int, first_answer: str | None = None) -> list[dict[str, str]]:
    """The chat messages of `turn` (0 or 1): turn 1 carries turn 0 and its answer."""
    msgs = [{"role": "user", "content": question["turns"][0]}]
    if turn == 1:
        msgs += [{"role": "assistant", "content": first_answer or ""},
                 {"role": "user", "content": question["turns"][1]}]
    return msgs


def render_prompt(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of `messages` rendered by the model's chat template, ready for the answer."""
    if not getattr(tokenizer, "chat_template", None):
        raise UserError(f"{getattr(tokenizer, 'name_or_path', 'model')}: the tokenizer has no chat template "
                        "(a folder trained by ruinstruct carries one)")
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    # the template writes the special tokens (<s>...) itself
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def stop_ids(model: Any, tokenizer: Any) -> list[int]:
    """End-of-answer ids: the tokenizer's and the model's eos, and the template's closing token."""
    from ..chat import end_token_id, template_kind

    ids = set()
    for value in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
        ids.update(value if isinstance(value, list) else [value] if value is not None else [])
    kind = template_kind(tokenizer)
    if kind is not None and (end := end_token_id(tokenizer, kind)) is not None:
        ids.add(end)
    return sorted(ids)


def generate_answers(model: Any, tokenizer: Any, questions: list[dict[str, Any]], *, max_new_tokens: int,
                     batch_size: int, seed: int = 0, do_sample: bool = True,
                     progress: Callable[[int, int], None] | None = None, stats: dict[str, int] | None = None
                     ) -> list[list[str]]:
    """Answers to every turn of every question (module docstring), batched across questions with
    left padding. `do_sample=False` is greedy (tests compare batch sizes with it). `progress`
    gets (generations done, total); `stats["truncated_prompts"]` counts prompts cut on the left."""
    import torch

    from .load import context_limit, pad_batch

    if max_new_tokens < 1 or batch_size < 1:
        raise UserError("max_new_tokens and batch_size must be at least 1")
    ctx = context_limit(model, tokenizer)
    if ctx is not None and max_new_tokens >= ctx:
        raise UserError(f"max_new_tokens {max_new_tokens} leaves no room for a prompt in the context of {ctx}")
    settings = dict(GENERATION) if do_sample else {"do_sample": False, "num_beams": 1,
                                                   "repetition_penalty": GENERATION["repetition_penalty"]}
    eos = stop_ids(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    answers: list[list[str]] = [[] for _ in questions]
    total = sum(len(q["turns"]) for q in questions)
    done = truncated = 0
    devices = [model.device.index or 0] if model.device.type == "cuda" else []
    for turn in (0, 1):
        todo = [i for i, q in enumerate(questions) if len(q["turns"]) > turn]
        prompts = {i: render_prompt(tokenizer, conversation(questions[i], turn, answers[i][0] if turn else None))
                   for i in todo}
        if ctx is not None:
            room = ctx - max_new_tokens
            for i, ids in prompts.items():
                if len(ids) > room:
                    prompts[i] = ids[-room:]
                    truncated += 1
        order = sorted(todo, key=lambda i: len(prompts[i]))
        for b, start in enumerate(range(0, len(order), batch_size)):
            chunk = order[start:start + batch_size]
            input_ids, mask = pad_batch([prompts[i] for i in chunk], pad)
            width = input_ids.shape[1]
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(seed * 1_000_003 + turn * 10_007 + b)
                with torch.no_grad():
                    out = model.generate(input_ids=input_ids.to(model.device), attention_mask=mask.to(model.device),
                                         max_new_tokens=max_new_tokens, eos_token_id=eos, pad_token_id=pad,
                                         **settings)
            for row, i in enumerate(chunk):
                answers[i].append(tokenizer.decode(out[row, width:], skip_special_tokens=True).strip())
            done += len(chunk)
            if progress is not None:
                progress(done, total)
    if truncated:
        log.warning("%d prompt(s) longer than the context less max_new_tokens kept their last tokens", truncated)
    if stats is not None:
        stats["truncated_prompts"] = stats.get("truncated_prompts", 0) + truncated
    return answers


def answer_id(model_id: str, question_id: Any, turns: Sequence[str]) -> str:
    """A stable id for one answer (FastChat uses a random shortuuid; any string will do)."""
    from ..schema import content_hash

    return content_hash([model_id, question_id, list(turns)])[:22]


def answer_rows(questions: Sequence[dict[str, Any]], answers: Sequence[Sequence[str]], model_id: str
                ) -> list[dict[str, Any]]:
    """FastChat's model-answer rows (gen_model_answer.py's fields, nothing more)."""
    now = time.time()
    return [{"question_id": q["question_id"], "answer_id": answer_id(model_id, q["question_id"], a),
             "model_id": model_id, "choices": [{"index": 0, "turns": list(a)}], "tstamp": now}
            for q, a in zip(questions, answers, strict=True)]


# ---------------------------------------------------------------------------------------------
# judgments and scores


def judge_requests(questions: Sequence[dict[str, Any]], answers: Sequence[Sequence[str]],
                   prompts: dict[str, dict[str, Any]], references: dict[Any, list[str]]) -> list[JudgeRequest]:
    """Every turn-1 request, then every turn-2 one (questions with two turns), as FastChat orders
    its matches."""
    reqs = [build_request(q, a, prompts, turn=1, reference=references.get(q["question_id"]))
            for q, a in zip(questions, answers, strict=True)]
    reqs += [build_request(q, a, prompts, turn=2, reference=references.get(q["question_id"]))
             for q, a in zip(questions, answers, strict=True) if len(q["turns"]) == 2]
    return reqs


def judgment_rows(requests: Sequence[JudgeRequest], verdicts: Sequence[Any], model_id: str, judge_name: str
                  ) -> list[dict[str, Any]]:
    """FastChat's single-answer judgment rows (common.py play_a_match_single's fields)."""
    now = time.time()
    return [{"question_id": r.question_id, "model": model_id, "judge": [judge_name, r.prompt_name],
             "user_prompt": r.user_prompt, "judgment": v.judgment, "score": v.score, "turn": r.turn,
             "tstamp": now}
            for r, v in zip(requests, verdicts, strict=True)]


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def scores(rows: Sequence[dict[str, Any]], categories: dict[Any, str] | None = None) -> dict[str, Any]:
    """turn1, turn2, average (over all rows, as show_result.py), judged, excluded (-1 rows);
    by_category when `categories` maps question ids to categories. None where nothing was rated."""
    valid = [r for r in rows if r["score"] != -1]
    out: dict[str, Any] = {
        "turn1": _mean([r["score"] for r in valid if r["turn"] == 1]),
        "turn2": _mean([r["score"] for r in valid if r["turn"] == 2]),
        "average": _mean([r["score"] for r in valid]),
        "judged": len(valid),
        "excluded": len(rows) - len(valid),
    }
    if categories is not None:
        by: dict[str, list[float]] = {}
        for r in valid:
            by.setdefault(categories[r["question_id"]], []).append(r["score"])
        out["by_category"] = {c: _mean(by[c]) for c in sorted(by)}
    return out


def _merge_judgments(path: Path, rows: list[dict[str, Any]], model_id: str, judge_name: str) -> list[dict[str, Any]]:
    """This run's rows, plus the rows of other models (or judges) already in the file."""
    from ..io import iter_jsonl_lines

    kept = []
    if path.is_file():
        for line in iter_jsonl_lines(path):
            obj = line.obj
            if isinstance(obj, dict) and not (obj.get("model") == model_id and list(obj.get("judge") or [])[:1] == [judge_name]):
                kept.append(obj)
    return kept + rows


def judge_file_name(judge_name: str) -> str:
    return f"{safe_name(judge_name)}_single.jsonl"


def run_mt_bench(model: str | Path, questions: str | Path, judge: str, output: str | Path, *,
                 model_id: str | None = None, judge_prompts: str | Path | None = None,
                 references: str | Path | None = None, max_new_tokens: int = 512, batch_size: int = 8,
                 api_base: str | None = None, api_key: str | None = None, seed: int = 0,
                 judge_cache: str | Path | None = None, judge_options: dict[str, Any] | None = None,
                 progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Answer, judge and score (module docstring). `judge` is ``local:<model dir>`` or
    ``api:<model name>``. Returns {turn1, turn2, average, judged, excluded} (ratings 1-10; None
    where nothing was rated); scores.json holds them with per-category means and the settings."""
    from ..io import write_json, write_jsonl
    from .load import load_for_eval

    output = Path(output)
    qs = load_questions(questions)
    refs = resolve_references(qs, load_references(references) if references is not None else None)
    prompts = load_judge_prompts(judge_prompts)
    model_id = safe_name(model_id or Path(model).name)
    cache = Path(judge_cache) if judge_cache is not None else None
    # the judge is built first: a missing key or judge folder fails before any generation
    the_judge = make_judge(judge, api_base=api_base, api_key=api_key, cache=cache,
                           **{"batch_size": batch_size, **(judge_options or {})})
    if cache is None and hasattr(the_judge, "cache") and the_judge.cache is None:
        from .judge import JudgmentCache

        the_judge.cache = JudgmentCache(output / MT_BENCH_JUDGE_CACHE / f"{safe_name(the_judge.name)}.jsonl")

    net, tok = load_for_eval(model, padding_side="left")
    stats: dict[str, int] = {}
    t0 = time.perf_counter()
    answers = generate_answers(net, tok, qs, max_new_tokens=max_new_tokens, batch_size=batch_size, seed=seed,
                               progress=progress, stats=stats)
    gen_s = time.perf_counter() - t0
    del net
    from ..runtime import free_accelerator

    free_accelerator()
    write_jsonl(output / MT_BENCH_ANSWERS / f"{model_id}.jsonl", answer_rows(qs, answers, model_id))

    requests = judge_requests(qs, answers, prompts, refs)
    t0 = time.perf_counter()
    verdicts = the_judge.judge(requests)
    judge_s = time.perf_counter() - t0
    rows = judgment_rows(requests, verdicts, model_id, the_judge.name)
    path = output / MT_BENCH_JUDGMENTS / judge_file_name(the_judge.name)
    write_jsonl(path, _merge_judgments(path, rows, model_id, the_judge.name))
    if hasattr(the_judge, "release"):
        the_judge.release()

    result = scores(rows)
    detail = scores(rows, {q["question_id"]: q["category"] for q in qs})
    write_json(output / MT_BENCH_SCORES, {
        "model_id": model_id, "judge": the_judge.name, "questions": len(qs), **detail,
        "truncated_prompts": stats.get("truncated_prompts", 0), "max_new_tokens": max_new_tokens,
        "batch_size": batch_size, "seed": seed, "generation": GENERATION,
        "generation_seconds": round(gen_s, 3), "judge_seconds": round(judge_s, 3),
        "judge_prompts": "english (FastChat)" if judge_prompts is None else Path(judge_prompts).name,
    })
    log.info("mt-bench %s judged by %s: turn1 %s, turn2 %s, average %s (%d judged, %d excluded)", model_id,
             the_judge.name, result["turn1"], result["turn2"], result["average"], result["judged"],
             result["excluded"])
    return result
