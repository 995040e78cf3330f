"""Evaluation stage: every fine-tuned model of a run x every configured benchmark (Table 1's
columns), planned into jobs, each run by the benchmark's own function, then collected into the
results rows (ruinstruct.reports).

- `plan_eval(config, cells=None)`: one `EvalJob` per trained model (``models/<cell>/`` holding
  train_summary.json) x benchmark, outputs ``eval/<cell>/mmlu_en.json``, ``mmlu_ru.json``,
  ``mt_bench/``; and the matrix cells that have no trained model (not evaluated, listed).
- `eval_key(...)`: what a finished evaluation depends on: the model folder (its training key and
  summary: a retrained model is a new model), the benchmark's settings, its data (a local folder
  or file by content, a hub set by name), the judge, the evaluation code's version, the output.
- `run_eval(job, api_key=None, log=print)`: run one job (idempotent, see its docstring).
- `collect(config, results, failed)`: the `reports.result_rows` input, in the matrix's order.

The Prefect tasks (tasks/evaluate.py) and any script call these; nothing here imports Prefect.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from ..config import BENCHMARKS, MtBenchConfig, RunConfig, _model_identity
from ..errors import UserError
from ..io import read_json, write_json
from ..paths import MT_BENCH_JUDGE_CACHE, TRAIN_KEY, TRAIN_SUMMARY, RunPaths
from ..schema import content_hash

Log = Callable[[str], None]
#: settings that change no score: where the judge's key comes from
_NOT_IN_KEY = {"api_key_env", "api_key_secret"}


class EvalJob(BaseModel):
    """One benchmark on one fine-tuned model, with its cache key, and whether a cached result
    must be recomputed (`refresh`: no finished evaluation of this key in its output)."""

    model_config = ConfigDict(frozen=True)

    cell: str  # <model>-<method>-<data>
    model: str
    method: str
    data: str
    benchmark: str  # mt_bench | mmlu_en | mmlu_ru
    model_dir: str
    output: str
    record: str  # eval/<cell>/<benchmark>.key.json: the key, whether it finished, the scores
    settings: dict[str, Any]  # the benchmark's config section
    key: str
    refresh: bool

    @property
    def name(self) -> str:
        return f"{self.cell}-{self.benchmark.replace('_', '-')}"


# ---- cache key -----------------------------------------------------------------------------------


@functools.cache
def eval_code_version() -> str:
    """Hash of the code a score depends on: ruinstruct/evaluate/*.py and chat.py (the templates
    the answers are rendered with)."""
    import ruinstruct
    import ruinstruct.evaluate as evaluate_pkg

    from .data import code_version_of

    pkg = Path(ruinstruct.__file__).parent
    return code_version_of((Path(evaluate_pkg.__file__).parent, "*.py"), (pkg, "chat.py"))


def model_fingerprint(model_dir: str | Path) -> str:
    """A trained folder by its training key and summary (both rewritten by every training run),
    not by its weights: hashing a 13B model on every plan would take minutes."""
    h = hashlib.sha256()
    for name in (TRAIN_KEY, TRAIN_SUMMARY):
        f = Path(model_dir) / name
        h.update(name.encode() + b"\0" + (hashlib.sha256(f.read_bytes()).digest() if f.is_file() else b"-"))
    return h.hexdigest()


def _path_identity(path: str | None) -> str | None:
    """A file by its content, a folder by its files' content, None as None."""
    from .train import _file_identity, dataset_fingerprint

    return dataset_fingerprint(path) if path is not None and Path(path).is_dir() else _file_identity(path)


def data_identity(benchmark: str, settings: dict[str, Any]) -> dict[str, Any]:
    """What a benchmark reads besides the model: its questions (and for MT-Bench the judge, its
    prompts and the references)."""
    if benchmark == "mt_bench":
        kind, _, judge = settings["judge"].partition(":")
        return {
            "questions": _path_identity(settings["questions"]),
            "judge": _model_identity(judge) if kind == "local" else f"api:{judge}@{settings.get('api_base')}",
            "judge_prompts": _path_identity(settings.get("judge_prompts")),
            "references": _path_identity(settings.get("references")),
        }
    data = settings.get("data")
    return {"data": _path_identity(data) if data else f"hub:{benchmark}"}


def eval_key(benchmark: str, model_dir: str | Path, settings: dict[str, Any], output: str | Path,
             code: str | None = None) -> str:
    """The cache key of one evaluation (see the module docstring)."""
    return "eval-" + content_hash({
        "benchmark": benchmark, "model": model_fingerprint(model_dir),
        "settings": {k: v for k, v in settings.items() if k not in _NOT_IN_KEY},
        "data": data_identity(benchmark, settings), "code": code or eval_code_version(), "out": str(output),
    })


# ---- planning ------------------------------------------------------------------------------------


def preflight(config: RunConfig) -> None:
    """The evaluation's local inputs exist (checked before the data and training stages, so a
    typo fails in one line and not after hours of fine-tuning): MMLU folders, the questions,
    judge prompts and references files, and a local judge's folder."""
    from .data import require_file

    ev = config.evaluation
    if ev is None:
        return
    for bench in ("mmlu_en", "mmlu_ru"):
        section = getattr(ev, bench)
        if section is not None and section.data:
            require_file(section.data, f"evaluation.{bench}.data (folder)")
    mt = ev.mt_bench
    if mt is not None:
        require_file(mt.questions, "evaluation.mt_bench.questions (file)", "a FastChat question.jsonl")
        for field in ("judge_prompts", "references"):
            if getattr(mt, field):
                require_file(getattr(mt, field), f"evaluation.mt_bench.{field} (file)")
        if mt.judge_kind == "local":
            require_file(mt.judge.removeprefix("local:"), "evaluation.mt_bench.judge (local model folder)")



def finished_eval(record: str | Path, key: str) -> dict[str, Any] | None:
    """The scores of an evaluation of `key` that finished (its key record), or None."""
    record = Path(record)
    if not record.is_file():
        return None
    rec = read_json(record)
    return rec.get("scores") if rec.get("key") == key and rec.get("finished") else None


def plan_eval(config: RunConfig, cells: list[str] | None = None) -> tuple[list[EvalJob], list[dict[str, str]]]:
    """The jobs of every trained model of the matrix (or of `cells` only) x configured benchmark,
    model by model in the matrix's order, and the cells with no trained model ({"cell", "error"}:
    their training failed or never ran)."""
    if config.evaluation is None or config.training is None:
        return [], []
    paths = RunPaths(config.root_path)
    benchmarks = config.evaluation.benchmarks()
    jobs: list[EvalJob] = []
    missing: list[dict[str, str]] = []
    for _, model, method, data in config.training.cells():
        cell = f"{model}-{method}-{data}"
        if cells is not None and cell not in cells:
            continue
        model_dir = paths.model_dir(model, method, data)
        if not (model_dir / TRAIN_SUMMARY).is_file():
            missing.append({"cell": cell, "error": f"not trained: no {TRAIN_SUMMARY} in {model_dir}"})
            continue
        for bench in benchmarks:
            settings = getattr(config.evaluation, bench).model_dump(mode="json")
            out = paths.eval_output(model_dir.name, bench)
            key = eval_key(bench, model_dir, settings, out)
            record = paths.eval_key(model_dir.name, bench)
            jobs.append(EvalJob(cell=cell, model=model, method=method, data=data, benchmark=bench,
                                model_dir=str(model_dir), output=str(out), record=str(record), settings=settings,
                                key=key, refresh=finished_eval(record, key) is None))
    return jobs, missing


# ---- running -------------------------------------------------------------------------------------


def api_key_from_env(settings: dict[str, Any]) -> str | None:
    """The API judge's key from the environment variable the config names (None when unset)."""
    return os.environ.get(settings.get("api_key_env") or "") or None


def _remove(path: Path) -> None:
    """An output of other inputs. MT-Bench's judge cache stays: a verdict depends only on the
    judge prompt it was given, and an API judge's verdicts are paid for."""
    if not path.is_dir():
        path.unlink(missing_ok=True)
        return
    for child in path.iterdir():
        if child.name == MT_BENCH_JUDGE_CACHE:
            continue
        shutil.rmtree(child) if child.is_dir() else child.unlink()


def run_eval(job: EvalJob, api_key: str | None = None, log: Log = print) -> dict[str, Any]:
    """Run one evaluation into its output and return {"cell", "benchmark", "output", "scores", ...}.

    Idempotent: an evaluation of this key that already finished (its Prefect record lost) is
    returned from its key record; an output left by another key (a retrained model, other
    settings) is removed first, so the benchmark's own resumption never mixes the old model's
    answers into the new scores; an unfinished run of the same key resumes where it stopped.
    The API key goes to the judge only; it is never written or logged."""
    out = Path(job.output)
    record = Path(job.record)
    base = {"cell": job.cell, "model": job.model, "method": job.method, "data": job.data, "benchmark": job.benchmark,
            "output": str(out)}
    done = finished_eval(record, job.key)
    if done is not None:
        log(f"{job.name}: already evaluated in {out} (same inputs)")
        return {**base, "scores": done, "reused": True}
    if out.exists() and (not record.is_file() or read_json(record).get("key") != job.key):
        log(f"{job.name}: {out} holds an evaluation of other inputs; starting afresh")
        _remove(out)
    write_json(record, {"key": job.key, "cell": job.cell, "benchmark": job.benchmark, "finished": False})
    try:
        scores = _run_benchmark(job, api_key, log)
    finally:
        from ..runtime import free_accelerator

        free_accelerator()
    write_json(record, {"key": job.key, "cell": job.cell, "benchmark": job.benchmark, "finished": True,
                        "scores": scores})
    return {**base, "scores": scores}


def _progress(job: EvalJob, log: Log, unit: str) -> Callable[[int, int], None]:
    """A log line per tenth done, not per batch (MMLU has 14k questions)."""
    last = [-1]

    def progress(done: int, total: int) -> None:
        tenth = (10 * done) // max(total, 1)
        if tenth > last[0]:
            last[0] = tenth
            log(f"{job.name}: {done}/{total} {unit}")

    return progress


def _run_benchmark(job: EvalJob, api_key: str | None, log: Log) -> dict[str, Any]:
    s = job.settings
    if job.benchmark == "mt_bench":
        from ..evaluate.mt_bench import run_mt_bench

        cfg = MtBenchConfig.model_validate(s)
        if cfg.judge_kind == "api":
            api_key = api_key or api_key_from_env(s)
            # no fallback to the judge's own variables (OPENAI_API_KEY...): that key would go to
            # whatever api_base the profile names, when the profile asked for another one
            if api_key is None:
                where = f"the Prefect Secret block {cfg.api_key_secret!r} or " if cfg.api_key_secret else ""
                raise UserError(f"evaluation.mt_bench: the API judge {cfg.judge} needs a key: set {where}"
                                f"${cfg.api_key_env}")
        else:
            api_key = None
        log(f"{job.name}: MT-Bench, judge {cfg.judge}")
        return run_mt_bench(job.model_dir, cfg.questions, cfg.judge, job.output, model_id=job.cell,
                            judge_prompts=cfg.judge_prompts, references=cfg.references,
                            max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size,
                            api_base=cfg.api_base, api_key=api_key, progress=_progress(job, log, "answers"))
    if job.benchmark in ("mmlu_en", "mmlu_ru"):
        from ..evaluate.mmlu import evaluate_mmlu

        lang = job.benchmark.removeprefix("mmlu_")
        log(f"{job.name}: MMLU {lang}, {s['shots']}-shot, data {s.get('data') or 'from the hub'}")
        return evaluate_mmlu(job.model_dir, s.get("data"), lang, s["shots"], job.output, batch_size=s["batch_size"],
                             subjects=s.get("subjects"), limit=s.get("limit"),
                             progress=_progress(job, log, "questions"))
    raise ValueError(f"unknown benchmark {job.benchmark!r}: expected one of {', '.join(BENCHMARKS)}")


# ---- collecting ----------------------------------------------------------------------------------


def collect(jobs: list[EvalJob], results: list[dict[str, Any]], failed: list[dict[str, str]]) -> list[dict[str, Any]]:
    """`reports.result_rows`'s input: one entry per evaluated model, in the jobs' order, with the
    scores of its finished benchmarks and the messages of its failed ones ({"cell", "benchmark",
    "error"} in `failed`)."""
    models: dict[str, dict[str, Any]] = {}
    for job in jobs:
        models.setdefault(job.cell, {"cell": job.cell, "model": job.model, "method": job.method, "data": job.data,
                                     "scores": {}, "failed": {}})
    for r in results:
        models[r["cell"]]["scores"][r["benchmark"]] = r["scores"]
    for f in failed:
        if f["cell"] in models:
            models[f["cell"]]["failed"][f["benchmark"]] = f["error"]
    return list(models.values())
