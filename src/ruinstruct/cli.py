"""`ruinstruct` command line: every stage runnable alone.

Flows run in Prefect's ephemeral mode unless PREFECT_API_URL is set. Heavy imports (torch,
transformers, prefect) happen inside the commands so `ruinstruct --help` is instant.

Errors: an expected one (a missing file, a path that is not a model, a bad config, a license
conflict, `errors.UserError`) prints one or two lines naming the option and the problem and
exits 2; a traceback only with `--debug` or RUINSTRUCT_DEBUG=1. SIGTERM and Ctrl-C stop a run
within seconds with no process left behind (exit 143 / 130; see ruinstruct.signals).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

# Prefect's analytics are off unless the user set them: the temporary server's heartbeat logged
# "Failed to send telemetry" on every run without network. (Prefect reads these on import.)
for _var, _value in (("PREFECT_SERVER_ANALYTICS_ENABLED", "false"), ("DO_NOT_TRACK", "1")):
    os.environ.setdefault(_var, _value)


class _Commands(TyperGroup):
    """Turns expected errors into one or two lines and exit code 2, for every command."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        ctx.meta["ruinstruct.args"] = list(args)  # to name the option that carried a bad value
        return super().parse_args(ctx, args)

    def invoke(self, ctx: typer.Context) -> Any:
        from . import errors, signals

        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):  # usage errors: typer's own exit 2
            raise
        except BaseException as e:
            if signals.installed() and (signals.received or isinstance(e, KeyboardInterrupt)
                                        or type(e).__name__ == "TerminationSignal"):
                raise typer.Exit(128 + (signals.received or getattr(e, "signal", None) or 2)) from None
            message = errors.describe(e, ctx.meta.get("ruinstruct.args", ())) if isinstance(e, Exception) else None
            if message is None:
                raise
            if ctx.params.get("debug"):
                import traceback

                traceback.print_exc()
            typer.secho(message, fg="red", err=True)
            raise typer.Exit(2) from None


# markdown, not rich: rich markup ate literal brackets ('"reasons": [str]')
app = typer.Typer(cls=_Commands, add_completion=False, no_args_is_help=True, rich_markup_mode="markdown",
                  pretty_exceptions_enable=False)


@app.callback()
def _options(
    debug: Annotated[bool, typer.Option("--debug", envvar="RUINSTRUCT_DEBUG",
                                        help="print the traceback of an error")] = False,
) -> None:
    """Russian instruction datasets by machine translation of open English ones: download,
    translate, filter, mix (and the whole run). Every stage runs alone; `ruinstruct COMMAND
    --help` lists its options. README.md has the config reference and the dialog record format."""


def main() -> None:
    """The `ruinstruct` console script: the app, with SIGTERM/SIGINT handling."""
    from . import signals

    signals.run(app)


ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="run config (YAML profile)")]
OutputOpt = Annotated[Path | None, typer.Option("--output", "-o", help="run root (overrides the config's)")]
RunnerOpt = Annotated[str | None, typer.Option(
    "--runner", help="where translation shards run: default (threads) or dask (overrides the config's runner.kind)")]


def _config(path: Path, output: Path | None = None, runner: str | None = None):
    from .config import ConfigError, load_config

    if runner is not None and runner not in ("default", "dask"):
        typer.secho(f"--runner: {runner!r} is not one of: default, dask", fg="red", err=True)
        raise typer.Exit(2)
    try:
        cfg = load_config(path).with_root(output)
    except ConfigError as e:
        typer.secho(str(e), fg="red", err=True)
        raise typer.Exit(2) from None
    if runner is not None:
        # --runner default also drops the profile's Dask address (it is only valid with dask)
        update = {"kind": runner, **({"address": None} if runner == "default" else {})}
        cfg = cfg.model_copy(update={"runner": cfg.runner.model_copy(update=update)})
    return cfg


def _run_flow(flow_fn, config) -> Any:
    from .config import RunConfig
    from .errors import describe
    from .runtime import set_hf_offline
    from .stages.data import preflight

    assert isinstance(config, RunConfig)
    preflight(config)  # a missing path fails here in one line, before Prefect starts
    set_hf_offline(config.data.hf_offline)  # before the flow imports `datasets`
    state = flow_fn(config=config, return_state=True)
    if not state.is_completed():
        exc = state.result(raise_on_failure=False)
        message = describe(exc) if isinstance(exc, Exception) else None
        if message is not None:  # an expected error raised inside a task (bad input, a license)
            typer.secho(message, fg="red", err=True)
            raise typer.Exit(2)
        typer.secho(f"flow {state.name}: {state.message}", fg="red", err=True)
        raise typer.Exit(1)
    return state.result()


def _print_outputs(outputs: dict[str, Any]) -> None:
    typer.echo(json.dumps(outputs, indent=2, ensure_ascii=False))


def _print_data_outputs(data: dict[str, Any]) -> None:
    """The run's summary (from its report.json), then where its outputs are."""
    from .io import read_json
    from .stages.data import summary_lines

    report = data.get("report")
    if report and Path(report).exists():
        typer.echo("\n".join(summary_lines(read_json(report))))
    typer.secho(
        f"\ndataset: {data.get('dataset')}\nrejects: {data.get('rejects')}\nreport:  {data.get('report')}",
        fg="green",
    )


@app.command()
def run(config: ConfigOpt, output: OutputOpt = None, runner: RunnerOpt = None) -> None:
    """The whole DAG of a run config."""
    cfg = _config(config, output, runner)
    import time

    from flows.pipeline import pipeline_flow

    started = time.time()
    try:
        out = _run_flow(pipeline_flow, cfg)
    except typer.Exit:
        _print_results(cfg.root_path, since=started)  # the models that were evaluated, beside the error
        raise
    _print_data_outputs(out.get("data") or {})
    _print_models((out.get("train") or {}).get("models") or {})
    if cfg.evaluation is not None:
        _print_results(cfg.root_path)


def _print_results(root: Path, since: float | None = None) -> None:
    """The run's results table (results/table.md: Table 1's columns, the paper's figures beside);
    after a failed run only when this run wrote it (`since`), with the evaluations that finished."""
    import logging

    from .paths import RunPaths

    # the run is over: keep the temporary server's "Stopping" line (at exit) from following the table
    logging.getLogger("prefect").setLevel(logging.WARNING)
    table = RunPaths(root.resolve()).results_table
    if table.is_file() and (since is None or table.stat().st_mtime >= since):
        typer.echo(f"\nresults{' (of the evaluations that finished)' if since else ''}: {table.parent}\n")
        typer.echo(table.read_text(encoding="utf-8"), nl=False)


def _print_models(models: dict[str, Any]) -> None:
    """Where each fine-tuned model of the matrix is."""
    if models:
        width = max(len(n) for n in models)
        lines = [f"{name:<{width}}  {m['output']}{'  (cached)' if m.get('cached') else ''}"
                 for name, m in models.items()]
        typer.secho("\nmodels:\n  " + "\n  ".join(lines), fg="green")


@app.command()
def data(config: ConfigOpt, output: OutputOpt = None, runner: RunnerOpt = None) -> None:
    """The data flow alone: download, translate, filter, mix."""
    cfg = _config(config, output, runner)
    from flows.data import data_flow

    out = _run_flow(data_flow, cfg)
    _print_data_outputs(out)


@app.command("make-tiny")
def make_tiny(
    out: Annotated[Path, typer.Option("--out", help="output folder")],
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    epochs: Annotated[int | None, typer.Option(help="translator training epochs (default: the full recipe)")] = None,
) -> None:
    """Build tiny offline models: OUT/translator (M2M100, WMT21 codes), OUT/llama, OUT/xglm, OUT/gpt2."""
    from .tiny import build_tiny

    info = build_tiny(out, seed=seed, **({"max_epochs": epochs} if epochs else {}))
    _print_outputs(info)


@app.command()
def translate(
    model: Annotated[str, typer.Option("--model", "-m", help="HF id or local folder of the translator")],
    input: Annotated[Path, typer.Option("--input", "-i", help="English dialogs (JSONL, dialog records)")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Russian dialogs (JSONL)")],
    cache: Annotated[Path | None, typer.Option("--cache", help="paragraph cache folder")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="take translation settings from a run config")] = None,
    revision: Annotated[str | None, typer.Option(help="model revision")] = None,
) -> None:
    """Translate dialogs paragraph by paragraph; invalid input lines go to OUT.rejects.jsonl."""
    from tqdm import tqdm

    from .config import TranslationConfig
    from .stages.data import translate_file

    base = _config(config).translation if config else TranslationConfig()
    tcfg = base.model_copy(update={"model": str(Path(model).resolve()) if Path(model).is_dir() else model, "revision": revision or base.revision})
    bar = tqdm(total=0, unit="para", desc="translate", disable=None)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    try:
        summary = translate_file(input, output, tcfg, cache, progress=progress)
    finally:
        bar.close()
    _print_outputs(summary)


@app.command("filter")
def filter_cmd(
    input: Annotated[Path, typer.Option("--input", "-i", help="translated dialogs (JSONL)")],
    originals: Annotated[Path, typer.Option("--originals", help="English originals (JSONL)")],
    kept: Annotated[Path, typer.Option("--kept", help="kept dialogs (JSONL)")],
    rejected: Annotated[Path, typer.Option("--rejected", help="rejected dialogs with reasons (JSONL)")],
    config: Annotated[Path | None, typer.Option("--config", "-c", help="take filter thresholds from a run config")] = None,
) -> None:
    """Run the corruption filters; rejected rows carry "reasons": [str]."""
    from .config import FilterConfig
    from .io import rejects_path
    from .stages.data import filter_files

    fcfg = _config(config).filters if config else FilterConfig()
    bad_originals = rejects_path(originals, Path(rejected).parent)  # beside the outputs, not the input
    s = filter_files([input], [originals], fcfg, kept, rejected, originals_rejects_path=bad_originals)
    _print_outputs({"input": s["translated"] + s["invalid_input"], "kept": s["kept"],
                    "rejected": s["rejected"] + s["invalid_input"], "invalid_input": s["invalid_input"],
                    "invalid_originals": s["invalid_originals"], "kept_file": s["kept_file"],
                    "rejects_file": s["rejects_file"]})


@app.command()
def mix(config: ConfigOpt, output: OutputOpt = None) -> None:
    """Re-mix a run's filtered translations and originals into the final dataset folder."""
    from .stages.data import mix_only

    cfg = _config(config, output)
    _print_outputs(mix_only(cfg))


def _train_request(config: Path | None, model: str, method: str, data: Path, output: Path, family: str | None,
                   data_name: str | None, num_processes: int | None):
    """The TrainRequest of `ruinstruct train`: settings and extra models from the config's
    `training:` section (the paper's defaults without one)."""
    from .config import METHODS
    from .errors import UserError
    from .models import FAMILIES, REGISTRY, resolve_model
    from .stages.train import deepspeed_for, resolve_entry
    from .train import TrainSettings
    from .train.launch import TrainRequest

    if method not in METHODS:
        raise UserError(f"--method {method}: expected full or lora")
    if family is not None and family not in FAMILIES:
        raise UserError(f"--family {family}: unknown family {family!r}, expected {' | '.join(FAMILIES)}")
    cfg = _config(config) if config else None
    training = cfg.training if cfg else None
    if not data.is_dir():
        what = "a file, not a dataset folder" if data.exists() else "dataset folder not found"
        raise UserError(f"--data {data}: {what} (train/validation splits, e.g. a run's data/final)")
    entries = {e.name: (i, e) for i, e in enumerate(training.models)} if training else {}
    if model in entries:
        index, entry = entries[model]
        if family is not None and family != entry.family:
            raise UserError(f"--family {family}: the config's training.models[{index}] ({model}) says family "
                            f"{entry.family}")
        spec = resolve_entry(entry, index)
    elif model in REGISTRY:
        spec = resolve_model(model, family)
    elif family is None:
        known = ", ".join([*REGISTRY, *entries])
        raise UserError(f"--model {model}: not a registered model ({known}); for another model give its HF id or "
                        "folder with --family llama|xglm|gpt2")
    else:
        local = Path(model).expanduser()
        if not local.is_dir() and (local.exists() or model.startswith((".", "/", "~"))):
            # a path, not a hub id: without this the hub lookup fails with a message about the hub
            raise UserError(f"--model {model}: not a model folder ({'a file' if local.exists() else 'no such folder'})")
        spec = resolve_model(str(local.resolve()) if local.is_dir() else model, family)
    settings = training.settings_for(method) if training else TrainSettings(method=method)
    data = data.resolve()
    # a run's data/final is named after its run (runs/tiny/data/final -> tiny), not "final"
    name = data_name or (data.parent.parent.name if data.parent.name == "data" else data.name)
    settings = settings.model_copy(update={"deepspeed": deepspeed_for(cfg, method), "dataset_name": name})
    processes = num_processes or (training.num_processes if training else 1)
    return TrainRequest(model=spec, data_dir=str(data), out_dir=str(output.resolve()), data_name=name,
                        settings=settings, num_processes=processes)


@app.command("train")
def train_cmd(
    model: Annotated[str, typer.Option("--model", "-m", help="a registry name, a training.models name of the "
                                       "config, or an HF id / local folder with --family")],
    method: Annotated[str, typer.Option("--method", help="full | lora")],
    data: Annotated[Path, typer.Option("--data", "-d", help="dataset folder (train/validation splits)")],
    output: Annotated[Path, typer.Option("--output", "-o", help="the run's output folder (model, card, logs)")],
    config: Annotated[Path | None, typer.Option("--config", "-c", help="take settings and extra models from "
                                                "a run config's training: section")] = None,
    family: Annotated[str | None, typer.Option("--family", help="llama | xglm | gpt2, for an unregistered "
                                               "model")] = None,
    data_name: Annotated[str | None, typer.Option("--data-name", help="dataset name for the model card (default: "
                                                  "the folder's; a run's data/final: the run's)")] = None,
    num_processes: Annotated[int | None, typer.Option("--num-processes", min=1, help="training processes "
                                                      "(GPUs); default: the config's, else 1")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the launch command and DeepSpeed's memory "
                                          "estimate, then exit without training")] = False,
) -> None:
    """Fine-tune one model on one dataset (full or LoRA) in its own process, streaming its log.
    An output folder holding a checkpoint resumes from it."""
    import shlex

    from .stages.train import TrainProcessError, run_request
    from .train.launch import launch_command, memory_estimate, write_request

    req = _train_request(config, model, method, data, output, family, data_name, num_processes)
    if dry_run:
        request_file = write_request(req)
        typer.echo(f"request: {request_file}")
        typer.echo(" ".join(shlex.quote(c) for c in launch_command(req, request_file)))
        if method == "lora":
            typer.echo("(LoRA trains without DeepSpeed; the ZeRO-3 estimate below is what full fine-tuning "
                       "would need)")
        typer.echo("\n".join(memory_estimate(req.model, req.num_processes)))
        return
    try:
        summary = run_request(req, typer.echo)
    except TrainProcessError as e:
        # the process's output (its error, or its traceback) is already on the screen
        typer.secho(str(e).splitlines()[0], fg="red", err=True)
        raise typer.Exit(2 if e.returncode == 2 else 1) from None
    typer.secho(f"model: {summary.get('output') or req.out_dir}", fg="green")


# Prompt formats: the outer app's error handling (_Commands) covers these commands too.
chat_app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode="markdown",
                       help="The paper's prompt templates (full: Human/Assistant, lora: system/user/bot).")
app.add_typer(chat_app, name="chat")

from .evaluate.cli import eval_app  # noqa: E402  (typer only; the benchmarks import lazily)

app.add_typer(eval_app, name="eval", help="Evaluate a model folder: MMLU / MMLU RU, MT-Bench RU.")


@chat_app.command("render")
def chat_render(
    model: Annotated[Path, typer.Option("--model", "-m", help="model folder whose tokenizer renders the text")],
    template: Annotated[str, typer.Option("--template", "-t", help="full | lora")],
    input: Annotated[Path, typer.Option("--input", "-i", help="dialog records (JSONL or parquet)")],
    output: Annotated[Path, typer.Option("--output", "-o", help="rows {id, text, input_ids, labels} (JSONL)")],
    max_length: Annotated[int | None, typer.Option("--max-length", min=1,
                                                   help="context in tokens (default: the tokenizer's)")] = None,
    policy: Annotated[str, typer.Option("--policy", help="a dialog longer than the context: drop | truncate "
                                        "(at a turn boundary)")] = "drop",
) -> None:
    """Show what a model trains on: one row per dialog, labels -100 where there is no loss. Invalid
    records and dialogs the context policy drops go to OUT.rejects.jsonl with reasons."""
    from .chat import render_file

    _print_outputs(render_file(model, template, input, output, max_length=max_length, policy=policy))


@app.command("deploy")
def deploy_cmd(
    gpu_pool: Annotated[str, typer.Option("--gpu-pool", help="type of the ruinstruct-gpu pool when it must be "
                                          "created: docker | kubernetes")] = "docker",
    name: Annotated[list[str] | None, typer.Option("--name", "-n", help="deploy only these: FLOW/DEPLOYMENT or "
                                                   "a name, wildcards allowed ('*/tiny'); repeatable")] = None,
    prefect_file: Annotated[Path | None, typer.Option("--prefect-file", help="default: ./prefect.yaml, else "
                                                      "the installed project's")] = None,
) -> None:
    """Create the work pools prefect.yaml names that are missing (ruinstruct-cpu: process;
    ruinstruct-gpu: docker or kubernetes with deployments/*-gpu.json next to prefect.yaml), never
    changing an existing one, then `prefect --no-prompt deploy` them. Needs PREFECT_API_URL.
    RUINSTRUCT_IMAGE=NAME:TAG builds and pushes the GPU image; with RUINSTRUCT_BUILD=0 as well the
    paper deployments just name it. Exit 130/143 on Ctrl-C/SIGTERM (prefect deploy is stopped)."""
    import sys

    from deployments.deploy import deploy

    code = deploy(name or (), gpu_pool=gpu_pool, prefect_file=prefect_file)
    if code > 128:
        # interrupted: deploy said so in one line; leave without the signal handler's "a rerun
        # resumes from what was written" (signals.finish)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise typer.Exit(code)


@app.command("trigger")
def trigger_cmd(
    deployment: Annotated[str, typer.Argument(help="FLOW/DEPLOYMENT, e.g. ruinstruct-pipeline/tiny")],
    config: Annotated[str | None, typer.Option("--config", "-c", help="run config, a YAML profile's path: "
                                               "relative to the deployment's working directory (the checkout "
                                               "for */tiny, /opt/ruinstruct for */paper); a file here outside "
                                               "the checkout goes absolute. Default: the deployment's own")] = None,
    output: Annotated[str | None, typer.Option("--output", "-o", help="run root on the worker (a relative "
                                        "path: under the flow run's working directory)")] = None,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="another flow parameter, "
                                                    "NAME=VALUE (JSON or text); repeatable")] = None,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="follow the run; exit 0 Completed, 1 "
                                        "Failed/Crashed/Cancelled. Without it exit 0 means the run was "
                                        "created")] = False,
    timeout: Annotated[float | None, typer.Option("--timeout", help="stop watching after S seconds "
                                                  "(exit 1; the run goes on); implies --watch")] = None,
) -> None:
    """Create a run of a deployment on its work pool and print its id and UI address; exit 0 once
    it is created (with --watch: when it ends Completed). Needs PREFECT_API_URL and a worker on the
    deployment's pool. Exit 2 on an expected error (unknown deployment, no server, server lost
    while watching), 130/143 on Ctrl-C/SIGTERM (a created run goes on)."""
    import sys

    from deployments.deploy import trigger

    code = trigger(deployment, config, output, param or (), watch=watch, timeout=timeout)
    if code > 128:
        # the run goes on on the worker: nothing of ours to stop or resume, so leave without the
        # signal handler's "a rerun resumes" line (signals.finish)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise typer.Exit(code)


if __name__ == "__main__":
    main()
