"""`ruinstruct` command line: every stage runnable alone (DESIGN.md, "Stage contracts").

Flows run in Prefect's ephemeral mode unless PREFECT_API_URL is set. Heavy imports (torch,
transformers, prefect) happen inside the commands so `ruinstruct --help` is instant.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.split("\n")[0])

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="run config (YAML profile)")]
OutputOpt = Annotated[Path | None, typer.Option("--output", "-o", help="run root (overrides the config's)")]


def _config(path: Path, output: Path | None = None):
    from .config import ConfigError, load_config

    try:
        return load_config(path).with_root(output)
    except ConfigError as e:
        typer.secho(str(e), fg="red", err=True)
        raise typer.Exit(2) from None


def _run_flow(flow_fn, config) -> Any:
    from .config import RunConfig

    assert isinstance(config, RunConfig)
    if config.data.hf_offline:
        os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"
    state = flow_fn(config=config, return_state=True)
    if not state.is_completed():
        typer.secho(f"flow {state.name}: {state.message}", fg="red", err=True)
        raise typer.Exit(1)
    return state.result()


def _print_outputs(outputs: dict[str, Any]) -> None:
    typer.echo(json.dumps(outputs, indent=2, ensure_ascii=False))


def _print_data_outputs(data: dict[str, Any]) -> None:
    typer.secho(
        f"\ndataset: {data.get('dataset')}\nrejects: {data.get('rejects')}\nreport:  {data.get('report')}",
        fg="green",
    )


@app.command()
def run(config: ConfigOpt, output: OutputOpt = None) -> None:
    """The whole DAG of a run config."""
    cfg = _config(config, output)
    from flows.pipeline import pipeline_flow

    out = _run_flow(pipeline_flow, cfg)
    _print_outputs(out)
    _print_data_outputs(out.get("data", {}))


@app.command()
def data(config: ConfigOpt, output: OutputOpt = None) -> None:
    """The data flow alone: download, translate, filter, mix."""
    cfg = _config(config, output)
    from flows.data import data_flow

    out = _run_flow(data_flow, cfg)
    _print_outputs(out)
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
    from .io import rejects_path, write_dialogs, write_jsonl
    from .pipeline import get_translator
    from .translate.cache import ParagraphCache
    from .translate.dialogs import translate_dialogs

    base = _config(config).translation if config else TranslationConfig()
    tcfg = base.model_copy(update={"model": str(Path(model).resolve()) if Path(model).is_dir() else model, "revision": revision or base.revision})
    dialogs, rejects = _read_valid(input)
    translator, _ = get_translator(tcfg)
    if cache:
        cache.mkdir(parents=True, exist_ok=True)
    pcache = ParagraphCache(cache, translator.id) if cache else None
    bar = tqdm(total=0, unit="para", desc="translate", disable=None)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    translated, stats = translate_dialogs(dialogs, translator, pcache, progress=progress)
    bar.close()
    write_dialogs(output, translated)
    write_jsonl(rejects_path(output), rejects)
    # stats: dialogs (translated dialogs), units/unique_units, cache_hits, translated (units sent
    # to the model), translator_calls
    _print_outputs({"input": len(dialogs) + len(rejects), "rejected": len(rejects), **stats,
                    "output": str(output), "rejects_file": str(rejects_path(output))})


def _read_valid(path: Path) -> tuple[list, list]:
    """Dialog records from JSONL; malformed or invalid lines become rejects with file:line."""
    from .io import iter_jsonl, normalise_dialog, reject_row
    from .schema import validate

    dialogs, rejects = [], []
    for lineno, obj, raw in iter_jsonl(path):
        where = f"{path}:{lineno}"
        if obj is None:
            rejects.append(reject_row(["malformed JSON"], raw=raw, where=where))
            continue
        reasons = validate(obj if not isinstance(obj, dict) else normalise_dialog(obj))
        if reasons:
            rejects.append(reject_row(reasons, record=obj, where=where))
        else:
            dialogs.append(normalise_dialog(obj))
    return dialogs, rejects


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
    from .filters import apply_filters
    from .io import write_dialogs, write_jsonl

    fcfg = _config(config).filters if config else FilterConfig()
    ru, bad_ru = _read_valid(input)
    en, bad_en = _read_valid(originals)
    by_id = {d["id"]: d for d in en}
    result = apply_filters([(d, by_id.get(d.get("origin_id") or "")) for d in ru], fcfg)
    write_dialogs(kept, result.kept)
    write_jsonl(rejected, [*bad_ru, *result.rejected])
    if bad_en:
        write_jsonl(Path(rejected).with_name(Path(originals).stem + ".rejects.jsonl"), bad_en)
    _print_outputs({"input": len(ru) + len(bad_ru), "kept": len(result.kept),
                    "rejected": len(result.rejected) + len(bad_ru), "invalid_input": len(bad_ru),
                    "invalid_originals": len(bad_en), "kept_file": str(kept), "rejects_file": str(rejected)})


@app.command()
def mix(config: ConfigOpt, output: OutputOpt = None) -> None:
    """Re-mix a run's filtered translations and originals into the final dataset folder."""
    from .pipeline import mix_only

    cfg = _config(config, output)
    _print_outputs(mix_only(cfg))


if __name__ == "__main__":
    app()
