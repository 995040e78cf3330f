"""The run output layout (DESIGN.md): every piece of a run's state lives under its root."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


def safe_name(name: str) -> str:
    """A source name as a file name: saiga/ru_turbo_saiga -> saiga__ru_turbo_saiga."""
    return name.replace("/", "__")


@dataclass(frozen=True)
class RunPaths:
    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def raw(self) -> Path:
        return self.data / "raw"

    @property
    def shards(self) -> Path:
        return self.data / "shards"

    @property
    def translated(self) -> Path:
        return self.data / "translated"

    @property
    def filtered(self) -> Path:
        return self.data / "filtered"

    @property
    def rejects(self) -> Path:
        return self.data / "rejects"

    @property
    def final(self) -> Path:
        return self.data / "final"

    @property
    def report(self) -> Path:
        return self.data / "report.json"

    @property
    def paragraph_cache(self) -> Path:
        """Folder of the persistent paragraph cache (translate.cache.ParagraphCache)."""
        return self.data / "cache"

    @property
    def prefect(self) -> Path:
        """Persisted task results and cache records (so two roots never share a cache)."""
        return self.root / ".prefect"

    def raw_file(self, source: str) -> Path:
        return self.raw / f"{safe_name(source)}.parquet"

    def raw_rejects(self, source: str) -> Path:
        return self.rejects / f"{safe_name(source)}.rejects.jsonl"
