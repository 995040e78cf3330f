"""Translate dialogs unit by unit: segment, dedupe, look up the cache, translate the misses in
chunks (writing each chunk to the cache at once, so a killed run keeps its work), reassemble.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from ..schema import Dialog, Message, make_dialog
from .cache import ParagraphCache
from .segment import Piece, join, segment

__all__ = ["DEFAULT_CHUNK_SIZE", "SupportsTranslate", "translate_dialogs", "translate_texts"]

#: Units per translator call; progress is reported and the cache written after each call.
DEFAULT_CHUNK_SIZE = 512

Progress = Callable[[int, int], None]


class SupportsTranslate(Protocol):
    """What this module needs from a translator (engine.Translator satisfies it)."""

    id: str

    def translate(self, texts: list[str]) -> list[str]: ...


def _translate_units(
    units: list[str],
    translator: SupportsTranslate,
    cache: ParagraphCache | None,
    *,
    progress: Progress | None,
    chunk_size: int,
) -> tuple[dict[str, str], dict[str, int]]:
    """Translations of the distinct `units` (given in first-appearance order) and counters."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if cache is not None and cache.translator_id != translator.id:
        raise ValueError(
            f"cache belongs to translator {cache.translator_id!r}, not {translator.id!r}: "
            "open the cache with the translator's id"
        )
    total = len(units)
    done: dict[str, str] = cache.get_many(units) if cache is not None else {}
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
        outputs = translator.translate(list(chunk))
        stats["translator_calls"] += 1
        if isinstance(outputs, str) or not isinstance(outputs, Sequence) or len(outputs) != len(chunk):
            got = len(outputs) if isinstance(outputs, Sequence) else type(outputs).__name__
            raise ValueError(f"translator {translator.id!r} returned {got} outputs for {len(chunk)} inputs")
        new: dict[str, str] = {}
        for unit, out in zip(chunk, outputs, strict=True):
            if not isinstance(out, str):
                raise TypeError(f"translator {translator.id!r} returned {type(out).__name__}, not str")
            # surrounding whitespace is kept verbatim by the segmenter; an empty output stays
            # empty (the filters reject it), the English is never substituted
            new[unit] = out.strip()
        if cache is not None:
            cache.put_many(new)
        done.update(new)
        stats["translated"] += len(chunk)
        stats["chars"] += sum(len(u) for u in chunk)
        stats["empty"] += sum(1 for v in new.values() if not v)
        if progress is not None:
            progress(hits + stats["translated"], total)
    return done, stats


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
    out, stats = _translate_segmented(segmented, translator, cache, progress=progress, chunk_size=chunk_size)
    return out, stats


def _translate_segmented(
    segmented: list[list[Piece]],
    translator: SupportsTranslate,
    cache: ParagraphCache | None,
    *,
    progress: Progress | None,
    chunk_size: int,
) -> tuple[list[str], dict[str, int]]:
    occurrences = [p.text for pieces in segmented for p in pieces if p.translate]
    units = list(dict.fromkeys(occurrences))  # exact-content dedupe, first-appearance order
    translations, stats = _translate_units(
        units, translator, cache, progress=progress, chunk_size=chunk_size
    )
    joined = [join(pieces, translations) for pieces in segmented]
    return joined, {"units": len(occurrences), **stats}


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
    meta["translator"] = translator.id; same roles, contents translated unit by unit.

    Counters: dialogs, messages, units (translatable pieces, with repeats), unique_units,
    cache_hits, translated (units sent to the translator), translator_calls, chars
    (characters sent to the translator), empty (units the translator returned empty).
    `progress(done, total)` counts unique units: called once after the cache lookup and
    after every translator call.
    """
    segmented = [segment(m["content"]) for d in dialogs for m in d["messages"]]
    contents, stats = _translate_segmented(
        segmented, translator, cache, progress=progress, chunk_size=chunk_size
    )
    out: list[Dialog] = []
    k = 0
    for d in dialogs:
        messages: list[Message] = []
        for m in d["messages"]:
            messages.append(Message(role=m["role"], content=contents[k]))
            k += 1
        out.append(
            make_dialog(
                id=f"{d['id']}:ru",
                source=d["source"],
                lang="ru",
                messages=messages,
                origin_id=d["id"],
                license=d["license"],
                meta={**(d.get("meta") or {}), "translator": translator.id},
            )
        )
    return out, {"dialogs": len(dialogs), "messages": k, **stats}
