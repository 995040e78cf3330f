"""The data flow: download -> shard -> translate (cached shards) -> filter -> mix -> report.

    ruinstruct data --config configs/tiny.yaml          # ephemeral Prefect, no server needed
    PREFECT_API_URL=http://127.0.0.1:4200/api ruinstruct data --config configs/paper.yaml

Only wiring: the stages are ruinstruct.stages.data, the tasks around them tasks/data.py.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.states import Failed

from ruinstruct import runtime
from ruinstruct.config import RunConfig
from ruinstruct.stages import data as stages
from tasks.data import (
    data_report,
    filter_translations,
    load_source,
    make_shards,
    mix_dataset,
    shard_runner,
    translate_shards,
)


@flow(name="ruinstruct-data", log_prints=True, persist_result=False)
def data_flow(
    config: RunConfig | str | None = None, output: str | None = None
) -> dict[str, Any]:
    """Build the Russian+English instruction dataset of one run config."""
    run = stages.prepare_run(config, output)  # refuses a bad config before any work
    config, paths, root = run.config, run.paths, run.root
    logger = get_run_logger()
    src_lang = run.translation.src_lang

    loads = [load_source.submit(src, root, src_lang) for src in config.data.sources]
    loads = [f.result() for f in loads]
    stages.check_loads(loads)

    refs: list[dict[str, Any]] = []
    for src, ld in zip(config.data.sources, loads, strict=True):
        if src.translate:
            refs += make_shards(src.name, ld["raw"], run.translation.shard_size, str(paths.shards), src_lang)
    jobs = stages.shard_jobs(refs, paths, run.translator_id, config.faults.fail_shards_once)
    with shard_runner(config.runner, len(jobs)) as runner:
        done, failed = translate_shards(run, jobs, runner)
    runtime.release_translators()  # free the translator (and the GPU) for what comes after

    if failed:
        # Finished shards are persisted; a retry of this run recomputes only the failed ones.
        data_report(root, loads, done, None, None, failed, config.mix.include_originals)
        names = ", ".join(f"{f['source']}#{f['index']}" for f in failed)
        # The first shard's error too: when all fail alike (a bad ct2_dir, a missing model) it
        # is the one line the user needs, without reading each task's log
        first = failed[0]
        message = (f"{len(failed)} of {len(refs)} translation shards failed: {names}; "
                   f"{first['source']}#{first['index']}: {first['error'] or 'no message'}")
        logger.error("%s", message)
        return Failed(message=message)

    originals = [ld["raw"] for src, ld in zip(config.data.sources, loads, strict=True) if src.translate]
    filtered = filter_translations(config, [s["output"] for s in done], originals) if done else None
    mixed = mix_dataset(config, filtered["kept_file"] if filtered else None, run.translator_id if done else None)
    report = data_report(root, loads, done, filtered, mixed, [], config.mix.include_originals)
    outputs = {
        "dataset": str(paths.final),
        "report": str(paths.report),
        "rejects": str(paths.rejects),
        "splits": report["splits"],
        "summary": stages.summary_lines(report),
    }
    logger.info("dataset: %s | rejects: %s | report: %s", outputs["dataset"], outputs["rejects"], outputs["report"])
    return outputs


if __name__ == "__main__":
    import sys

    data_flow(config=sys.argv[1] if len(sys.argv) > 1 else "configs/tiny.yaml")
