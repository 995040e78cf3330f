"""The data stages as plain functions over files (what the CLI and the Prefect tasks both call).

Each stage reads its inputs from paths, writes its outputs and rejects atomically, and returns a
small JSON-able summary with counts, so that the data report can check that numbers add up.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .config import FilterConfig, RunConfig, SourceConfig, TranslationConfig
from .io import read_dialogs, write_dialogs, write_json, write_jsonl
from .paths import RunPaths


def load_to_raw(source: SourceConfig, paths: RunPaths, src_lang: str = "en") -> dict[str, Any]:
    """Download (or read local files of) one source, validate, write raw parquet + rejects."""
    from .sources import load_source

    result = load_source(source)
    raw = paths.raw_file(source.name)
    rejects = paths.raw_rejects(source.name)
    write_dialogs(raw, result.dialogs)
    write_jsonl(rejects, result.rejects)
    counts = dict(result.counts)
    # the dialogs the translation stage will take (the others go to the mix as they are)
    counts["to_translate"] = sum(d["lang"] == src_lang for d in result.dialogs) if source.translate else 0
    return {"source": source.name, "raw": str(raw), "rejects_file": str(rejects), "counts": counts}


# ---- translator handles: one per translator id per process ----------------------------------

_TRANSLATORS: dict[str, Any] = {}
_TRANSLATOR_LOCKS: dict[str, threading.Lock] = defaultdict(threading.Lock)
_GLOBAL = threading.Lock()


def get_translator(cfg: TranslationConfig, translator_id: str | None = None):
    """The process-wide translator for `cfg` (loading a 4.7B model per shard would dominate),
    with a lock that serialises generate() calls on it across task threads."""
    from .translate import engine

    tid = translator_id or cfg.translator_id
    with _GLOBAL:
        if tid not in _TRANSLATORS:
            _TRANSLATORS[tid] = engine.load_translator(cfg)
        return _TRANSLATORS[tid], _TRANSLATOR_LOCKS[tid]


def clear_translators() -> None:
    """Drop the process's translators (and their GPU memory) once translation is done, so a
    training stage in the same process starts with the accelerator free."""
    with _GLOBAL:
        had = bool(_TRANSLATORS)
        _TRANSLATORS.clear()
    if had:
        import gc

        gc.collect()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def stats_path(out_path: str | Path) -> Path:
    return Path(f"{out_path}.stats.json")


def translate_shard_file(
    ref: dict[str, Any], out_path: str | Path, cfg: TranslationConfig, cache_path: str | Path, translator_id: str
) -> dict[str, Any]:
    """Translate one shard to `out_path`; idempotent: a shard whose output and stats were both
    written (a run killed before its Prefect cache record was committed) is not redone."""
    from .io import read_json
    from .translate.cache import ParagraphCache
    from .translate.shards import translate_shard

    sidecar = stats_path(out_path)
    if Path(out_path).exists() and sidecar.exists():
        return {**read_json(sidecar), "reused": True}
    translator, lock = get_translator(cfg, translator_id)
    Path(cache_path).mkdir(parents=True, exist_ok=True)
    cache = ParagraphCache(cache_path, translator.id)
    with lock:
        stats = translate_shard(ref, out_path, translator, cache)
    stats = {**stats, "source": ref["source"], "index": ref["index"], "shard": ref["hash"]}
    write_json(sidecar, stats)
    return stats


# ---- filters --------------------------------------------------------------------------------

def filter_files(
    translated: Iterable[str | Path],
    originals: Iterable[str | Path],
    cfg: FilterConfig,
    kept_path: str | Path,
    rejects_path: str | Path,
    report_path: str | Path | None = None,
) -> dict[str, Any]:
    """Run the corruption filters on translated dialogs against their English originals."""
    from .filters import apply_filters, filter_report

    en = {}
    for f in originals:
        for d in read_dialogs(f):
            en[d["id"]] = d
    ru = [d for f in translated for d in read_dialogs(f)]
    pairs = [(d, en.get(d.get("origin_id") or "")) for d in ru]
    result = apply_filters(pairs, cfg)
    write_dialogs(kept_path, result.kept)
    write_jsonl(rejects_path, result.rejected)
    report = filter_report(result)
    per_source: dict[str, Counter] = defaultdict(Counter)
    for d in ru:
        per_source[d["source"]]["translated"] += 1
    for d in result.kept:
        per_source[d["source"]]["kept"] += 1
    for r in result.rejected:
        per_source[r["source"]]["rejected"] += 1
    summary = {
        "translated": len(ru),
        "kept": len(result.kept),
        "rejected": len(result.rejected),
        "per_source": {k: dict(v) for k, v in sorted(per_source.items())},
        "report": report,
        "kept_file": str(kept_path),
        "rejects_file": str(rejects_path),
    }
    if report_path:
        write_json(report_path, summary)
    return summary


# ---- mix --------------------------------------------------------------------------------------

def mix_run(config: RunConfig, paths: RunPaths, kept_ru: str | Path | None) -> dict[str, Any]:
    """Originals (+ untranslated sources) and kept translations -> the final dataset folder."""
    from .mix import mix

    ru_by_source: dict[str, list] = defaultdict(list)
    if kept_ru and Path(kept_ru).exists():
        for d in read_dialogs(kept_ru):
            ru_by_source[d["source"]].append(d)

    src_lang = config.translation.src_lang

    def groups():
        for src in config.data.sources:
            dialogs = read_dialogs(paths.raw_file(src.name))
            if src.translate and not config.mix.include_originals:
                dialogs = [d for d in dialogs if d["lang"] != src_lang]  # the originals of translations
            yield src, [*dialogs, *ru_by_source.get(src.name, [])]

    return mix(groups(), config.mix, paths.final, paths.rejects / "mix.rejects.jsonl")


def mix_only(config: RunConfig) -> dict[str, Any]:
    """`ruinstruct mix --config C`: re-mix a run whose filter stage has finished."""
    paths = RunPaths(config.root_path)
    kept = paths.filtered / "kept.parquet"
    if any(s.translate for s in config.data.sources) and not kept.exists():
        raise FileNotFoundError(
            f"{kept} is missing: run the data flow first (`ruinstruct data --config ...`); mixing now "
            "would silently build a dataset without the translations"
        )
    return mix_run(config, paths, kept)
