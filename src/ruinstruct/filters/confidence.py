"""Confidence: the translator's own score of each translated unit (unsupervised quality estimation).

Contract with the translation stage: a translated dialog carries `meta["mt_logprob"]`, a list
with one entry per message, each a list of floats: the length-normalised log-probability of
each translated unit of that message, in order (an empty list when nothing in the message was
translated; None for a unit whose score is unknown, e.g. a cache row written before scores were
stored). The filter drops a dialog whose lowest score is below `confidence.min_logprob`; with
None (the default, until calibrated on real WMT21 output) it keeps everything and only the
report shows the distribution (`report.score_distribution`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from ..schema import Dialog
from .base import Filter, Reason


def unit_scores(d: Any) -> list[tuple[int, float]]:
    """(message index, score) of every known unit score of dialog `d`; malformed entries are skipped."""
    meta = d.get("meta") if isinstance(d, dict) else None
    scores = meta.get("mt_logprob") if isinstance(meta, dict) else None
    out: list[tuple[int, float]] = []
    if not isinstance(scores, list):
        return out
    for i, msg in enumerate(scores):
        if not isinstance(msg, list):
            continue
        for s in msg:
            if isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s):
                out.append((i, float(s)))
    return out


def dialog_min_logprob(d: Any) -> float | None:
    """The lowest known unit score of a dialog, None when it has none."""
    scores = unit_scores(d)
    return min(s for _, s in scores) if scores else None


class ConfidenceFilter(Filter):
    name = "confidence"

    def check_dialog(self, ru: Dialog, en: Dialog) -> Iterator[Reason]:
        threshold = self.cfg.min_logprob
        if threshold is None:
            return
        scores = unit_scores(ru)
        if not scores:
            if not self.cfg.missing_ok:
                yield self.reason("missing", "no translator scores (meta['mt_logprob'])")
            return
        i, low = min(scores, key=lambda t: t[1])
        if low < threshold:
            yield self.reason("low_logprob", f"unit log-probability {low:.3f} < {threshold} in message {i + 1}")
