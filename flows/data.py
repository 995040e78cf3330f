"""The data flow: download -> shard -> translate (cached shards) -> filter -> mix -> report.

    ruinstruct data --config configs/tiny.yaml          # ephemeral Prefect, no server needed
    PREFECT_API_URL=http://127.0.0.1:4200/api ruinstruct data --config configs/paper.yaml
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.futures import as_completed
from prefect.states import Failed
from tqdm import tqdm

from ruinstruct.config import RunConfig, load_config
from ruinstruct.mix import check_mix_config
from ruinstruct.paths import RunPaths
from ruinstruct.pipeline import clear_translators
from ruinstruct.translate.engine import resolve_config as resolve_translation
from ruinstruct.translate.shards import shard_output
from tasks.data import (
    data_report,
    filter_translations,
    load_source,
    make_shards,
    mix_dataset,
    shard_cache_policy,
    shard_result_storage,
    translate_shard,
)


def resolve_config(config: RunConfig | None, config_file: str | None, output: str | None) -> RunConfig:
    if config is None:
        if not config_file:
            raise ValueError("pass `config` (the run config) or `config_file` (a YAML profile)")
        config = load_config(config_file)
    return config.with_root(output)


@flow(name="ruinstruct-data", log_prints=True, persist_result=False)
def data_flow(
    config: RunConfig | None = None, config_file: str | None = None, output: str | None = None
) -> dict[str, Any]:
    """Build the Russian+English instruction dataset of one run config."""
    config = resolve_config(config, config_file, output)
    logger = get_run_logger()
    paths = RunPaths(config.root_path.resolve())
    root = str(paths.root)
    config = config.with_root(root)
    check_mix_config(config.data.sources, config.mix)  # refuse bad licenses before any work
    if config.data.hf_offline:  # before `datasets` is first imported in this process
        os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"
    translation = resolve_translation(config.translation)  # "auto" device/dtype made concrete
    src_lang = translation.src_lang

    loads = [load_source.submit(src, root, src_lang) for src in config.data.sources]
    loads = [f.result() for f in loads]

    translator_id = translation.translator_id
    cache_path = str(Path(translation.cache_dir or paths.paragraph_cache))
    refs: list[dict[str, Any]] = []
    for src, ld in zip(config.data.sources, loads, strict=True):
        if src.translate:
            refs += make_shards(src.name, ld["raw"], translation.shard_size, str(paths.shards), src_lang)

    progress_id = create_progress_artifact(
        progress=0.0, key="translation-progress", description=f"{len(refs)} shards, {translator_id}"
    )
    shard_task = translate_shard.with_options(
        cache_policy=shard_cache_policy(root), result_storage=shard_result_storage(root)
    )
    futures = []
    for ref in refs:
        out = shard_output(paths.translated, ref, translator_id)
        # No output file: never translated, or deleted by hand; either way compute (and record).
        task = shard_task.with_options(refresh_cache=not out.exists())
        futures.append(task.submit(ref, translation, translator_id, str(out), cache_path))
    done: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    by_future = dict(zip((id(f) for f in futures), refs, strict=True))
    bar = tqdm(total=len(futures), desc="translate", unit="shard", disable=None)  # the CLI's progress bar
    for i, fut in enumerate(as_completed(futures), 1):
        fut.wait()  # sets the future's final state; .state alone may still read a stale one
        state = fut.state
        ref = by_future[id(fut)]
        if state.is_completed():
            done.append({**fut.result(), "cached": state.name == "Cached"})
        else:
            failed.append({"source": ref["source"], "index": ref["index"], "shard": ref["hash"], "error": state.message})
        update_progress_artifact(progress_id, progress=100.0 * i / max(len(futures), 1))
        bar.update(1)
    bar.close()
    clear_translators()  # free the translator (and the GPU) for what comes after
    if not futures:
        update_progress_artifact(progress_id, progress=100.0)
    done.sort(key=lambda s: (s["source"], s["index"]))

    if failed:
        # Finished shards are persisted; a retry of this run recomputes only the failed ones.
        data_report(root, loads, done, None, None, failed, config.mix.include_originals)
        names = ", ".join(f"{f['source']}#{f['index']}" for f in failed)
        logger.error("%d of %d translation shards failed: %s", len(failed), len(refs), names)
        return Failed(message=f"{len(failed)} of {len(refs)} translation shards failed: {names}")

    originals = [ld["raw"] for src, ld in zip(config.data.sources, loads, strict=True) if src.translate]
    filtered = filter_translations([s["output"] for s in done], originals, config.filters, root) if done else None
    mixed = mix_dataset(config, filtered["kept_file"] if filtered else None)
    report = data_report(root, loads, done, filtered, mixed, [], config.mix.include_originals)
    outputs = {
        "dataset": str(paths.final),
        "report": str(paths.report),
        "rejects": str(paths.rejects),
        "splits": report["splits"],
    }
    logger.info("dataset: %s | rejects: %s | report: %s", outputs["dataset"], outputs["rejects"], outputs["report"])
    return outputs


if __name__ == "__main__":
    import sys

    data_flow(config_file=sys.argv[1] if len(sys.argv) > 1 else "configs/tiny.yaml")
