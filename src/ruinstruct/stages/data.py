"""Data stages: load -> shard -> translate -> filter -> mix -> report, each a function over files.

The flow (flows/data.py) calls them through Prefect tasks; the CLI's `translate`, `filter` and
`mix` commands call the same functions directly.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import runtime
from ..config import FilterConfig, RunConfig, SourceConfig, TranslationConfig, resolve_config
from ..errors import UserError
from ..io import (
    read_dialog_records,
    read_dialogs,
    read_json,
    rejects_path,
    write_dialogs,
    write_json,
    write_jsonl,
    write_text,
)
from ..paths import RunPaths, stats_sidecar
from ..schema import Dialog, content_hash

log = logging.getLogger(__name__)

PathLike = str | Path


class NoValidInput(UserError, ValueError):
    """A stage was given input with not a single valid record: an error, not an empty output."""


def require_file(path: PathLike, what: str = "input", hint: str = "") -> Path:
    """`path`, or a one-line FileNotFoundError naming it (and what to do about it)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} not found: {path}" + (f" ({hint})" if hint else ""))
    return path


# ---- run setup --------------------------------------------------------------------------------

@dataclass(frozen=True)
class DataRun:
    """A data run's resolved settings: its config (absolute root), its paths, and the translation
    settings with "auto" device/dtype made concrete (the translator id names the real dtype)."""

    config: RunConfig
    translation: TranslationConfig

    @property
    def paths(self) -> RunPaths:
        return RunPaths(self.config.root_path)

    @property
    def root(self) -> str:
        return str(self.config.root_path)

    @functools.cached_property
    def translator_id(self) -> str:
        # computed once: for a local model folder it hashes the model files (config.py
        # _model_identity reads each one up to 64 MB), and a run asks for it once per shard
        return self.translation.translator_id

    @property
    def cache_dir(self) -> str:
        return str(self.translation.cache_dir or self.paths.paragraph_cache)


def resolve_translation(cfg: TranslationConfig) -> TranslationConfig:
    """Device and dtype resolved for this machine (never "auto" in a translator id: a shared
    cache must not serve CPU fp32 translations as GPU bf16 ones)."""
    from ..translate.engine import resolve_config as resolve_engine

    return resolve_engine(cfg)


def check_translator(cfg: TranslationConfig) -> None:
    """A local translator folder must exist (load_config makes local paths absolute; a hub id
    never starts with /): otherwise from_pretrained would take it for a hub id and fail later
    with a long traceback."""
    model = cfg.model or ""
    if model.startswith("/") and not Path(model).is_dir():
        raise FileNotFoundError(f"translation.model: no such model folder: {model}")


def preflight(config: RunConfig) -> None:
    """What a run can check before any work, so a typo fails in one line and not as a traceback
    from inside a task: the translator folder and every local source path exist."""
    if any(s.translate for s in config.data.sources):
        check_translator(config.translation)
        if config.translation.backend == "ctranslate2":
            from ..translate.ct2 import check_writable

            check_writable(config.translation)
    for i, src in enumerate(config.data.sources):
        if src.path:
            require_file(src.path, f"data.sources[{i}].path ({src.name})")
    if config.runner.kind == "dask":
        import importlib.util

        missing = [m for m in ("prefect_dask", "distributed") if importlib.util.find_spec(m) is None]
        if missing:
            raise UserError(f"runner.kind: dask needs {' and '.join(missing)}: pip install '.[dask]' (or prefect-dask)")


def prepare_run(
    config: RunConfig | PathLike | None = None, output: PathLike | None = None
) -> DataRun:
    """Everything a data run settles before any work: the validated config with an absolute
    root, the profile's environment (hf_offline), and the resolved translation settings."""
    config = resolve_config(config, output)
    runtime.set_hf_offline(config.data.hf_offline)  # before `datasets` is first imported
    translation = config.translation
    preflight(config)
    if any(s.translate for s in config.data.sources):
        translation = resolve_translation(translation)
    return DataRun(config=config, translation=translation)


# ---- load -------------------------------------------------------------------------------------

def load_source(source: SourceConfig, paths: RunPaths, src_lang: str = "en") -> dict[str, Any]:
    """Download (or read local files of) one source, validate, write raw parquet + rejects.
    A source that yields no dialog is not an error (others may), but says so in `warnings`."""
    from ..sources import load_source as load

    result = load(source)
    raw = paths.raw_file(source.name)
    rejects = paths.raw_rejects(source.name)
    write_dialogs(raw, result.dialogs)
    write_jsonl(rejects, result.rejects)
    counts = dict(result.counts)
    # the dialogs the translation stage will take (the others go to the mix as they are)
    counts["to_translate"] = sum(d["lang"] == src_lang for d in result.dialogs) if source.translate else 0
    warnings = []
    if not result.dialogs:
        where = source.path or source.hf_id
        warnings.append(
            f"source {source.name} yielded no valid dialogs from {where} "
            f"({counts.get('rejected', 0)} rejected, see {rejects})"
        )
    return {"source": source.name, "raw": str(raw), "rejects_file": str(rejects), "counts": counts,
            "warnings": warnings}


def check_loads(loads: Sequence[dict[str, Any]]) -> None:
    """No valid dialog from any source: an error (an empty dataset is never what was asked)."""
    if loads and not any(ld["counts"].get("dialogs", ld["counts"].get("kept", 0)) for ld in loads):
        names = ", ".join(ld["source"] for ld in loads)
        raise NoValidInput(f"no valid dialogs in any source ({names}); see the rejects files in "
                           f"{Path(loads[0]['rejects_file']).parent}")


# ---- translate --------------------------------------------------------------------------------

def code_version(package_dir: PathLike | None = None, pattern: str = "*.py") -> str:
    """Hash of the translation code (file names and contents of `pattern` in `package_dir`): a
    fix in segmentation, the engine or reassembly must not bring back shards translated by the
    old code as cached."""
    from .. import __version__

    if package_dir is None:
        import ruinstruct.translate as tr

        package_dir = Path(tr.__file__).parent
    h = hashlib.sha256(__version__.encode())
    for f in sorted(Path(package_dir).glob(pattern)):
        h.update(f.name.encode() + b"\0" + hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()[:16]


CODE_VERSION = code_version()


def code_version_of(*sources: tuple[PathLike, str]) -> str:
    """One hash over several (folder, pattern) code sources (a stage's package plus the shared
    modules it depends on), each hashed by `code_version`."""
    parts = [code_version(folder, pattern) for folder, pattern in sources]
    return hashlib.sha256("".join(parts).encode()).hexdigest()[:16]


def shard_key(shard_hash: str, translator_id: str, out_path: PathLike, code: str | None = None) -> str:
    """What a translated shard depends on: its content hash, the translator id (model, revision,
    generation settings, dtype), the code version; the output path too, so two run roots never
    share a cached result."""
    return "translate-" + content_hash(
        {"shard": shard_hash, "translator": translator_id, "out": str(out_path), "code": code or CODE_VERSION}
    )


@dataclass(frozen=True)
class ShardJob:
    """One translation task to submit: the shard, where its output goes, and whether a cached
    result must be recomputed (its output is not a finished one of this code: never written,
    deleted by hand, or written by another code version, whose Prefect record may still exist
    when the code went back to an earlier version)."""

    ref: dict[str, Any]
    out: str
    refresh: bool
    fault: str | None = None  # an injected fault's marker (config `faults`): fail once, then run


def finished_shard(out_path: PathLike, code: str | None = None) -> dict[str, Any] | None:
    """The stats of a shard output finished by this code version, or None. The output path
    names the shard and the translator but not the code (a new code version overwrites the
    file in place, so no stale file stays behind); the stats sidecar, written after the
    output, records the code version that wrote it. An output without its sidecar was killed
    before it finished, or is being overwritten by a newer code version: not finished."""
    sidecar = stats_sidecar(out_path)
    if not (Path(out_path).exists() and sidecar.exists()):
        return None
    stats = read_json(sidecar)
    return stats if stats.get("code") == (code or CODE_VERSION) else None


def shard_jobs(
    refs: Iterable[dict[str, Any]], paths: RunPaths, translator_id: str, fail_once: Iterable[str] = ()
) -> list[ShardJob]:
    fail_once = set(fail_once)
    jobs = []
    for ref in refs:
        out = paths.shard_output(ref, translator_id)
        fault = f"{ref['source']}#{ref['index']}" in fail_once
        jobs.append(ShardJob(ref=ref, out=str(out), refresh=finished_shard(out) is None,
                             fault=str(paths.fault_marker(ref["source"], ref["index"])) if fault else None))
    return jobs


class InjectedFault(UserError):
    """The failure a test asked for (config `faults`). A UserError, so the task does not retry it
    at once: the flow run fails, and a retry of the flow run is what recovers."""


def inject_fault(marker: PathLike | None, ref: dict[str, Any]) -> None:
    """Fail the first time a shard with an injected fault runs in this root; the marker file
    makes the next attempt (a retry of the flow run) go through."""
    if marker is None or Path(marker).exists():
        return
    write_text(marker, f"{ref['source']}#{ref['index']}\n")
    raise InjectedFault(f"injected fault (faults.fail_shards_once): shard {ref['source']}#{ref['index']}")


def translate_shard(
    ref: dict[str, Any], out_path: PathLike, cfg: TranslationConfig, cache_path: PathLike, translator_id: str,
    fault: PathLike | None = None,
) -> dict[str, Any]:
    """Translate one shard to `out_path`; idempotent: a shard whose output and stats were both
    written by this code version (a run killed before its Prefect cache record was committed)
    is not redone. One written by another code version is translated again, in place."""
    from ..translate import shards
    from ..translate.cache import ParagraphCache

    finished = finished_shard(out_path)
    if finished is not None:
        return {**finished, "reused": True}
    inject_fault(fault, ref)
    require_file(ref["path"], "shard input")
    sidecar = stats_sidecar(out_path)
    # the old stats go before the output is replaced: a run killed in between finds an output
    # without stats, which it redoes, and never a new output under old stats or the reverse
    sidecar.unlink(missing_ok=True)
    translator, lock = runtime.get_translator(cfg, translator_id)
    Path(cache_path).mkdir(parents=True, exist_ok=True)
    # Known limit: the paragraph cache is keyed by the translator id and the unit's text, not by
    # the code version. A fix in segmentation or reassembly changes the units or their joining,
    # so it takes effect here; a fix in the engine (how one unit is generated) does not reach
    # units already cached: delete the cache folder after such a fix (README, known limits).
    cache = ParagraphCache(cache_path, translator.id)
    with lock:
        stats = shards.translate_shard(ref, out_path, translator, cache)
    stats = {**stats, "source": ref["source"], "index": ref["index"], "shard": ref["hash"], "code": CODE_VERSION}
    write_json(sidecar, stats)
    return stats


def read_any(path: PathLike) -> tuple[list[Dialog], list[dict[str, Any]]]:
    """A run's own parquet file (written validated), or a user's JSONL (validated here)."""
    path = require_file(path)
    if path.suffix == ".jsonl":
        return read_dialog_records(path)
    return read_dialogs(path), []


def read_all(files: Iterable[PathLike]) -> tuple[list[Dialog], list[dict[str, Any]]]:
    """read_any of each file, concatenated: (valid dialogs, reject rows)."""
    ok: list[Dialog] = []
    bad: list[dict[str, Any]] = []
    for f in files:
        dialogs, rejects = read_any(f)
        ok += dialogs
        bad += rejects
    return ok, bad


def translate_file(
    input: PathLike,
    output: PathLike,
    cfg: TranslationConfig,
    cache_dir: PathLike | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """`ruinstruct translate`: a file of dialog records -> their translations, paragraph by
    paragraph (the same code path as a shard). Invalid records go to <output>.rejects.jsonl;
    a file without a single valid record is an error (NoValidInput), not an empty output."""
    from ..translate.cache import ParagraphCache
    from ..translate.dialogs import translate_dialogs

    dialogs, rejects = read_dialog_records(input)  # the input first: a wrong file needs no model loaded
    rejects_file = rejects_path(output)
    write_jsonl(rejects_file, rejects)
    if not dialogs:
        raise NoValidInput(f"{input}: no valid dialog records ({len(rejects)} rejected, reasons in {rejects_file})")
    check_translator(cfg)
    cfg = resolve_translation(cfg)
    translator, lock = runtime.get_translator(cfg)
    cache = None
    if cache_dir is not None:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        cache = ParagraphCache(cache_dir, translator.id)  # see translate_shard's known limit
    with lock:
        translated, stats = translate_dialogs(dialogs, translator, cache, progress=progress)
    write_dialogs(output, translated)
    # stats: dialogs (translated dialogs), units/unique_units, cache_hits, translated (units sent
    # to the model), translator_calls
    return {"input": len(dialogs) + len(rejects), "rejected": len(rejects), **stats,
            "translator_id": translator.id, "output": str(output), "rejects_file": str(rejects_file)}


# ---- filter -----------------------------------------------------------------------------------

def filter_files(
    translated: Iterable[PathLike],
    originals: Iterable[PathLike],
    cfg: FilterConfig,
    kept_path: PathLike,
    rejects_path: PathLike,
    report_path: PathLike | None = None,
    originals_rejects_path: PathLike | None = None,
) -> dict[str, Any]:
    """Run the corruption filters on translated dialogs against their originals.

    Inputs are a run's parquet files or a user's JSONL files. An invalid translation record goes
    to `rejects_path` (before the filtered-out ones); an invalid original to
    `originals_rejects_path` when given. Not a single valid translation record is an error
    (NoValidInput naming the files), not an empty output."""
    from ..filters import apply_filters, filter_report, pair_with_originals

    translated, originals = list(translated), list(originals)
    en, bad_en = read_all(originals)
    ru, bad_ru = read_all(translated)
    if not ru:
        # as translate_file: an empty kept file and exit 0 would hide that nothing was usable
        write_jsonl(rejects_path, bad_ru)
        names = ", ".join(str(f) for f in translated)
        raise NoValidInput(f"{names}: no valid dialog records ({len(bad_ru)} rejected, reasons in {rejects_path})")
    result = apply_filters(pair_with_originals(ru, en), cfg)
    write_dialogs(kept_path, result.kept)
    write_jsonl(rejects_path, [*bad_ru, *result.rejected])
    if originals_rejects_path is not None and bad_en:
        write_jsonl(originals_rejects_path, bad_en)
    summary = {
        "translated": result.total,
        "kept": len(result.kept),
        "rejected": len(result.rejected),
        "invalid_input": len(bad_ru),
        "invalid_originals": len(bad_en),
        # the counts apply_filters kept (one count, which the report's per_source also shows)
        "per_source": {k: {"translated": c.total, "kept": c.kept, "rejected": c.rejected}
                       for k, c in sorted(result.per_source.items())},
        "report": filter_report(result),
        "kept_file": str(kept_path),
        "rejects_file": str(rejects_path),
    }
    if report_path:
        write_json(report_path, summary)
    return summary


def filter_run(config: RunConfig, translated: Iterable[PathLike], originals: Iterable[PathLike]) -> dict[str, Any]:
    """The flow's filter stage: outputs at the run's paths."""
    paths = RunPaths(config.root_path)
    return filter_files(translated, originals, config.filters, paths.kept, paths.filter_rejects, paths.filter_report)


_RUN_DATA_FIRST = "run `ruinstruct data --config ...` with the same config and --output first"


# ---- mix --------------------------------------------------------------------------------------

def mix_run(
    config: RunConfig, paths: RunPaths, kept_ru: PathLike | None, translator_id: str | None = None
) -> dict[str, Any]:
    """Originals (+ untranslated sources) and kept translations -> the final dataset folder.
    The card names `translator_id`, by default the id the kept translations record in their
    meta (the one actually used, whatever machine mixes)."""
    from ..mix import mix

    ru_by_source: dict[str, list] = defaultdict(list)
    if kept_ru and Path(kept_ru).exists():
        for d in read_dialogs(kept_ru):
            ru_by_source[d["source"]].append(d)
    for src in config.data.sources:
        require_file(paths.raw_file(src.name), f"mix input of source {src.name}", _RUN_DATA_FIRST)
    if translator_id is None:
        used = sorted({str(d["meta"]["translator"]) for ds in ru_by_source.values() for d in ds
                       if (d.get("meta") or {}).get("translator")})
        translator_id = ", ".join(used) or None

    src_lang = config.translation.src_lang

    def groups():
        for src in config.data.sources:
            dialogs = read_dialogs(paths.raw_file(src.name))
            if src.translate and not config.mix.include_originals:
                dialogs = [d for d in dialogs if d["lang"] != src_lang]  # the originals of translations
            yield src, [*dialogs, *ru_by_source.get(src.name, [])]

    return mix(groups(), config.mix, paths.final, paths.mix_rejects, translator_id=translator_id)


def mix_only(config: RunConfig) -> dict[str, Any]:
    """`ruinstruct mix --config C`: re-mix a run whose filter stage has finished."""
    config = resolve_config(config)
    paths = RunPaths(config.root_path)
    if any(s.translate for s in config.data.sources):
        # mixing without it would silently build a dataset without the translations
        require_file(paths.kept, "filtered translations", _RUN_DATA_FIRST)
    return mix_run(config, paths, paths.kept)


# ---- report -----------------------------------------------------------------------------------

def summary_lines(report: dict[str, Any]) -> list[str]:
    """A few lines for the terminal, from a data report (report.json)."""
    t = report.get("totals") or {}
    lines = [
        f"records read: {t.get('downloaded', 0)}, invalid: {t.get('invalid', 0)}, "
        f"excluded: {t.get('excluded', 0)}, dialogs: {t.get('dialogs', 0)}",
    ]
    by_filter: Counter = Counter()
    for per_filter in (report.get("filtered_out_by_filter") or {}).values():
        by_filter.update(per_filter)
    # every filter that ran, at 0 too: "numbers 0" says the filter ran and found nothing
    detail = ", ".join(f"{k} {v}" for k, v in sorted(by_filter.items(), key=lambda kv: (-kv[1], kv[0])))
    lines.append(
        f"translated: {t.get('translated', 0)}, filtered out: {t.get('filtered_out', 0)}"
        + (f" (by filter, a dialog may fail several: {detail})" if detail else "")
    )
    splits = report.get("splits") or {}
    split_text = ", ".join(f"{k} {v}" for k, v in splits.items())
    lines.append(f"final: en {t.get('final_en', 0)}, ru {t.get('final_ru', 0)}"
                 + (f" ({split_text})" if split_text else ""))
    lines += [f"warning: {w}" for w in report.get("warnings") or []]
    return lines
