"""Translate dialogs unit by unit: segment, dedupe, look up the cache, translate the misses in
chunks (writing each chunk to the cache at once, so a killed run keeps its work), reassemble.

Every translated dialog records the translator's confidence in each unit it translated:
`meta["mt_logprob"]` holds one list per message, with the score (mean token log-probability,
`engine.Translation.logprob`) of each translated unit of that message in order, repeats
included; an empty list for a message with nothing translated; None for a unit whose score is
unknown (a translator that gives none, a cache entry written before scores were stored).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from ..schema import Dialog, Message, make_dialog
from .cache import ParagraphCache
from .segment import Piece, join, segment

__all__ = ["DEFAULT_CHUNK_SIZE", "MT_LOGPROB", "SupportsTranslate", "translate_dialogs", "translate_texts"]

#: Units per translator call; progress is reported and the cache written after each call.
DEFAULT_CHUNK_SIZE = 512

Progress = Callable[[int, int], None]

#: meta key of the per-message, per-unit translator scores (see the module docstring).
MT_LOGPROB = "mt_logprob"


class SupportsTranslate(Protocol):
    """What this module needs from a translator (engine.Translator satisfies it). A translator
    that also has `translate_scored` (engine.ScoringTranslator) has its scores recorded."""

    id: str

    def translate(self, texts: list[str]) -> list[str]: ...


def _translate_units(
    units: list[str],
    translator: SupportsTranslate,
    cache: ParagraphCache | None,
    *,
    progress: Progress | None,
    chunk_size: int,
) -> tuple[dict[str, str], dict[str, float | None], dict[str, int]]:
    """Translations and scores of the distinct `units` (given in first-appearance order), and
    counters."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if cache is not None and cache.translator_id != translator.id:
        raise ValueError(
            f"cache belongs to translator {cache.translator_id!r}, not {translator.id!r}: "
            "open the cache with the translator's id"
        )
    total = len(units)
    cached = cache.get_entries(units) if cache is not None else {}
    done: dict[str, str] = {u: e.target for u, e in cached.items()}
    scores: dict[str, float | None] = {u: e.logprob for u, e in cached.items()}
    hits = len(done)
    misses = [u for u in units if u not in done]
    stats = {
        "unique_units": total,
        "cache_hits": hits,
        "translated": 0,
        "translator_calls": 0,
        "chars": 0,
        "empty": 0,
    }
    if progress is not None:
        progress(hits, total)
    for start in range(0, len(misses), chunk_size):
        chunk = misses[start : start + chunk_size]
        outputs = _checked(translator, chunk)
        stats["translator_calls"] += 1
        new: dict[str, str] = {}
        new_scores: dict[str, float | None] = {}
        for unit, (out, score) in zip(chunk, outputs, strict=True):
            # surrounding whitespace is kept verbatim by the segmenter; an empty output stays
            # empty (the filters reject it), the English is never substituted
            new[unit] = out.strip()
            new_scores[unit] = score
        if cache is not None:
            cache.put_many(new, new_scores)
        done.update(new)
        scores.update(new_scores)
        stats["translated"] += len(chunk)
        stats["chars"] += sum(len(u) for u in chunk)
        stats["empty"] += sum(1 for v in new.values() if not v)
        if progress is not None:
            progress(hits + stats["translated"], total)
    return done, scores, stats


def _checked(translator: SupportsTranslate, chunk: list[str]) -> list[tuple[str, float | None]]:
    """The translator's (translation, score) per unit of `chunk`; a wrong count or type fails
    loudly rather than shifting every later translation by one."""
    scored = getattr(translator, "translate_scored", None)
    outputs = scored(list(chunk)) if scored is not None else translator.translate(list(chunk))
    if isinstance(outputs, str) or not isinstance(outputs, Sequence) or len(outputs) != len(chunk):
        got = len(outputs) if isinstance(outputs, Sequence) else type(outputs).__name__
        raise ValueError(f"translator {translator.id!r} returned {got} outputs for {len(chunk)} inputs")
    checked = []
    for out in outputs:
        text, score = out if scored is not None else (out, None)
        if not isinstance(text, str):
            raise TypeError(f"translator {translator.id!r} returned {type(text).__name__}, not str")
        if score is not None:
            if isinstance(score, bool) or not isinstance(score, (int, float)):
                raise TypeError(f"translator {translator.id!r} returned a {type(score).__name__} score")
            score = float(score) if math.isfinite(score) else None
        checked.append((text, score))
    return checked


def translate_texts(
    texts: list[str],
    translator: SupportsTranslate,
    cache: ParagraphCache | None = None,
    *,
    progress: Progress | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> tuple[list[str], dict[str, int]]:
    """Translate plain texts (same pipeline as dialogs: segment, dedupe, cache, join)."""
    segmented = [segment(t) for t in texts]
    out, _, stats = _translate_segmented(segmented, translator, cache, progress=progress, chunk_size=chunk_size)
    return out, stats


def _translate_segmented(
    segmented: list[list[Piece]],
    translator: SupportsTranslate,
    cache: ParagraphCache | None,
    *,
    progress: Progress | None,
    chunk_size: int,
) -> tuple[list[str], list[list[float | None]], dict[str, int]]:
    """Joined translations, the scores of each text's units in order, and counters."""
    occurrences = [p.text for pieces in segmented for p in pieces if p.translate]
    units = list(dict.fromkeys(occurrences))  # exact-content dedupe, first-appearance order
    translations, scores, stats = _translate_units(
        units, translator, cache, progress=progress, chunk_size=chunk_size
    )
    joined = [join(pieces, translations) for pieces in segmented]
    unit_scores = [[scores[p.text] for p in pieces if p.translate] for pieces in segmented]
    return joined, unit_scores, {"units": len(occurrences), **stats}


def translate_dialogs(
    dialogs: list[Dialog],
    translator: SupportsTranslate,
    cache: ParagraphCache | None,
    *,
    progress: Progress | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> tuple[list[Dialog], dict[str, Any]]:
    """Translate every message of every dialog; returns the Russian dialogs and counters.

    Output dialog i is the translation of input dialog i: id "<en id>:ru", lang "ru",
    origin_id the English id, source and license copied, meta copied plus
    meta["translator"] = translator.id and meta["mt_logprob"] (the unit scores per message, see
    the module docstring); same roles, contents translated unit by unit.

    Counters: dialogs, messages, units (translatable pieces, with repeats), unique_units,
    cache_hits, translated (units sent to the translator), translator_calls, chars
    (characters sent to the translator), empty (units the translator returned empty).
    `progress(done, total)` counts unique units: called once after the cache lookup and
    after every translator call.
    """
    segmented = [segment(m["content"]) for d in dialogs for m in d["messages"]]
    contents, unit_scores, stats = _translate_segmented(
        segmented, translator, cache, progress=progress, chunk_size=chunk_size
    )
    out: list[Dialog] = []
    k = 0
    for d in dialogs:
        messages: list[Message] = []
        logprobs: list[list[float | None]] = []
        for m in d["messages"]:
            messages.append(Message(role=m["role"], content=contents[k]))
            logprobs.append(unit_scores[k])
            k += 1
        out.append(
            make_dialog(
                id=f"{d['id']}:ru",
                source=d["source"],
                lang="ru",
                messages=messages,
                origin_id=d["id"],
                license=d["license"],
                meta={**(d.get("meta") or {}), "translator": translator.id, MT_LOGPROB: logprobs},
            )
        )
    return out, {"dialogs": len(dialogs), "messages": k, **stats}
