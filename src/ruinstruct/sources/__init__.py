"""Source loaders: each upstream dataset (local files in its own format, or the hub) becomes a
list of dialog records (schema.py), the rejects with reasons, and counts that add up.

    result = load_source(cfg)      # cfg: config.SourceConfig
    result.dialogs                 # valid dialogs, deterministic order
    result.rejects                 # io.reject_row rows: record or raw line, reasons, where, source
    result.counts                  # read == kept + rejected + excluded; see base.py
    result.revision                # hub mode: the dataset commit read (also meta["upstream_revision"])

Hub mode (cfg.path unset) goes through datasets.load_dataset and the same per-row code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..config import SourceConfig
from . import chip2, dolly, local, oasst1, saiga
from .base import UPSTREAM_REVISION, LoadResult, Row, hub_commit, iter_rows

LOADERS: dict[str, Callable[[SourceConfig, Iterable[Row]], LoadResult]] = {
    "dolly": dolly.load,
    "oasst1": oasst1.load,
    "chip2": chip2.load,
    "saiga": saiga.load,
    "local": local.load,
}


def load_source(cfg: SourceConfig) -> LoadResult:
    """Load one source (local files when cfg.path is set, else the hub dataset cfg.hf_id)."""
    try:
        loader = LOADERS[cfg.kind]
    except KeyError:
        raise ValueError(f"source {cfg.name!r}: unknown kind {cfg.kind!r}") from None
    result = loader(cfg, iter_rows(cfg))
    if not cfg.path:
        # resolved after the download, so that offline the cache's refs name what was just read
        result.revision = hub_commit(cfg.hf_id, cfg.revision)
        if result.revision:
            for d in result.dialogs:
                d["meta"] = {**(d.get("meta") or {}), UPSTREAM_REVISION: result.revision}
    return result


__all__ = ["LOADERS", "UPSTREAM_REVISION", "LoadResult", "Row", "hub_commit", "iter_rows", "load_source"]
