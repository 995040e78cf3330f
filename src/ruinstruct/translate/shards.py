"""Cutting a source's dialogs into content-addressed shards, and translating one shard to a file.

A shard is the unit of caching and retry: its file name is the hash of its dialogs, so the same
dialogs always make the same shard, and its translation is stored under that hash plus the
translator id. A retried or restarted run finds finished shards by name and does nothing for them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..io import batched, iter_dialogs, read_dialogs, write_dialogs
from ..paths import safe_name
from ..schema import content_hash


def plan_shards(
    source: str, raw_file: str | Path, shard_size: int, shards_dir: str | Path, lang: str = "en"
) -> list[dict[str, Any]]:
    """Cut the `lang` dialogs of `raw_file` (one source's valid dialogs, in load order) into
    shards of `shard_size` dialogs and write each shard's input file (atomic, idempotent).
    Dialogs in other languages are not translated (the mix takes them as they are).

    Returns small JSON-able refs: {"source", "index", "hash", "path", "dialogs"}.
    """
    shards_dir = Path(shards_dir)
    refs = []
    chunks = batched((d for d in iter_dialogs(raw_file) if d["lang"] == lang), shard_size)
    for index, chunk in enumerate(chunks):
        # the whole record: a changed license or meta must not come back from an old shard
        h = content_hash(chunk)
        path = shards_dir / safe_name(source) / f"{index:05d}-{h[:16]}.parquet"
        if not path.exists():
            write_dialogs(path, chunk)
        refs.append({"source": source, "index": index, "hash": h, "path": str(path), "dialogs": len(chunk)})
    return refs


def shard_output(translated_dir: str | Path, ref: dict[str, Any], translator_id: str) -> Path:
    key = content_hash({"shard": ref["hash"], "translator": translator_id})[:16]
    return Path(translated_dir) / safe_name(ref["source"]) / f"{ref['index']:05d}-{key}.parquet"


def translate_shard(
    ref: dict[str, Any],
    out_path: str | Path,
    translator,
    cache,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Translate one shard's dialogs into `out_path` (atomic). Returns the translation stats."""
    from .dialogs import translate_dialogs

    dialogs = read_dialogs(ref["path"])
    translated, stats = translate_dialogs(dialogs, translator, cache, progress=progress)
    write_dialogs(out_path, translated)
    return {**stats, "dialogs": len(translated), "output": str(out_path)}
