"""Thresholds of the corruption filters (the `filters:` section of a run config)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class FilterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: list[str] | None = Field(default=None, description="filter names to run; None = all")
