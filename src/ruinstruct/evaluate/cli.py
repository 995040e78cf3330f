"""`ruinstruct eval ...`: the benchmarks, each runnable alone on one model folder.

The outer app's error handling (cli._Commands) covers these commands: an expected error prints one
line and exits 2. Heavy imports happen inside the commands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

eval_app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode="markdown",
                       help="Evaluate a model: MMLU / MMLU RU (`mmlu`), MT-Bench RU (`mt-bench`).")


@eval_app.command("mmlu")
def mmlu(
    model: Annotated[Path, typer.Option("--model", "-m", help="model folder (a fine-tuned run, full or LoRA, or any causal LM)")],
    output: Annotated[Path, typer.Option("--output", "-o", help="OUT.json: scores and per-question predictions")],
    data: Annotated[Path | None, typer.Option("--data", "-d", help="local folder (EN: dev/ and test/ CSVs as in "
                                              "hendrycks/test; RU: SUBJECT_dev.jsonl, SUBJECT_test.jsonl); default: the hub "
                                              "(cais/mmlu, NLPCoreTeam/mmlu_ru)")] = None,
    lang: Annotated[str, typer.Option("--lang", "-l", help="en (MMLU) | ru (MMLU RU)")] = "en",
    shots: Annotated[int, typer.Option("--shots", help="dev questions before each test question")] = 5,
    batch_size: Annotated[int, typer.Option("--batch-size", help="questions per forward pass")] = 8,
    subjects: Annotated[str | None, typer.Option("--subjects", help="comma-separated subjects (default: all)")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="first N test questions of each subject")] = None,
    max_length: Annotated[int | None, typer.Option("--max-length", help="prompt length limit in tokens "
                                                   "(default: the model's context); shots are dropped to fit")] = None,
) -> None:
    """MMLU or MMLU RU, k-shot, predicted by the answer letter's probability (one forward per
    question). Writes OUT.json, bad rows to OUT.rejects.jsonl; a rerun resumes from
    OUT.progress.jsonl, scoring only the subjects not done yet."""
    from ..errors import UserError

    if lang not in ("en", "ru"):
        raise UserError(f"--lang {lang}: expected en or ru")
    if shots < 0:
        raise UserError(f"--shots {shots}: must be 0 or more")
    if batch_size < 1:
        raise UserError(f"--batch-size {batch_size}: must be 1 or more")
    if limit is not None and limit < 1:
        raise UserError(f"--limit {limit}: must be 1 or more")
    if max_length is not None and max_length < 1:
        raise UserError(f"--max-length {max_length}: must be 1 or more")
    if data is not None and not data.is_dir():
        raise UserError(f"--data {data}: {'a file, not a folder' if data.exists() else 'no such folder'}")
    if not model.is_dir() and (model.exists() or model.is_absolute() or str(model).startswith(".")
                               or str(model).count("/") != 1):
        raise UserError(f"--model {model}: {'a file, not a model folder' if model.exists() else 'no such folder'}")
    if output.is_dir():
        raise UserError(f"--output {output}: a folder; give the JSON file to write")
    names = [s.strip() for s in subjects.split(",") if s.strip()] if subjects else None

    from tqdm import tqdm

    from .mmlu import evaluate_mmlu

    bar = tqdm(total=0, unit="q", desc=f"mmlu-{lang}", disable=None)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        scores = evaluate_mmlu(model, data, lang, shots, output, batch_size=batch_size, subjects=names,  # type: ignore[arg-type]
                               limit=limit, progress=progress, max_length=max_length)
    except UserError as e:
        # the domain names files, not options: say which option the subject list came from
        if names and str(e).startswith("subjects "):
            raise UserError(f"--{e}") from None
        raise
    finally:
        bar.close()
    typer.echo(json.dumps({k: scores[k] for k in ("headline", "micro", "category_mean", "by_category", "questions",
                                                  "shots_dropped", "too_long", "rejected")},
                          indent=2, ensure_ascii=False))
    typer.secho(f"output: {output}", fg="green")


@eval_app.command("mt-bench")
def mt_bench(
    model: Annotated[Path, typer.Option("--model", "-m", help="model folder (a fine-tuned run, full or LoRA); its "
                                        "tokenizer's chat template renders the questions")],
    questions: Annotated[Path, typer.Option("--questions", "-q", help="questions in FastChat's question.jsonl format")],
    judge: Annotated[str, typer.Option("--judge", "-j", help="local:DIR (a model folder, offline: expected rating under its "
                                       "next-token probabilities) | api:NAME (OpenAI-compatible endpoint; "
                                       "key from $RUINSTRUCT_JUDGE_API_KEY, or $OPENAI_API_KEY for OpenAI's own endpoint)")],
    output: Annotated[Path, typer.Option("--output", "-o", help="folder: model_answer/, model_judgment/ (FastChat "
                                         "layout), scores.json")],
    model_id: Annotated[str | None, typer.Option("--model-id", help="name in the files (default: the model "
                                                 "folder's name)")] = None,
    judge_prompts: Annotated[Path | None, typer.Option("--judge-prompts", help="judge prompts in FastChat's "
                                                       "judge_prompts.jsonl format (e.g. the Russian set); default: "
                                                       "FastChat's English single-answer prompts")] = None,
    references: Annotated[Path | None, typer.Option("--references", help="reference answers (FastChat's "
                                                    "reference_answer/gpt-4.jsonl) for math, reasoning, coding; "
                                                    "default: each question's `reference`")] = None,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", help="answer length limit per turn")] = 512,
    batch_size: Annotated[int, typer.Option("--batch-size", help="questions generated together")] = 8,
    api_base: Annotated[str | None, typer.Option("--api-base", help="api judge: base URL (default: "
                                                 "$RUINSTRUCT_JUDGE_API_BASE, else OpenAI's)")] = None,
    seed: Annotated[int, typer.Option("--seed", help="sampling seed (same seed and batch size: same answers on CPU)")] = 0,
) -> None:
    """MT-Bench (RU): two-turn answers with the paper's sampling settings, single-answer grading
    1-10 by the judge; prints turn 1, turn 2 and average (rows the judge could not rate are
    excluded and counted). API verdicts are cached in OUTPUT/judge_cache/: a rerun pays nothing twice."""
    from ..errors import UserError

    for opt, value in (("--max-new-tokens", max_new_tokens), ("--batch-size", batch_size)):
        if value < 1:
            raise UserError(f"{opt} {value}: must be 1 or more")
    if not model.is_dir():
        raise UserError(f"--model {model}: {'a file, not a model folder' if model.exists() else 'no such folder'}")
    for opt, path in (("--questions", questions), ("--judge-prompts", judge_prompts), ("--references", references)):
        if path is not None and not path.is_file():
            raise UserError(f"{opt} {path}: {'a folder, not a file' if path.is_dir() else 'no such file'}")
    if output.exists() and not output.is_dir():
        raise UserError(f"--output {output}: a file; give the folder to write")

    from .mt_bench import run_mt_bench

    scores = run_mt_bench(model, questions, judge, output, model_id=model_id, judge_prompts=judge_prompts,
                          references=references, max_new_tokens=max_new_tokens, batch_size=batch_size,
                          api_base=api_base, seed=seed)
    typer.echo(json.dumps(scores, indent=2, ensure_ascii=False))
    typer.secho(f"output: {output}", fg="green")
