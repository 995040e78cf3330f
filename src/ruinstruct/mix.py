"""Mix filtered Russian translations with the English originals into the final dataset.

Output is a Hugging Face datasets folder (`load_dataset(<dir>)` reads it): data/train.parquet,
data/validation.parquet and a README.md dataset card whose YAML header declares the splits and
licenses. Same inputs and seed give the same bytes.
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .config import MixConfig, SourceConfig
from .io import atomic_path, reject_row, write_json, write_jsonl, write_text
from .schema import Dialog


class LicenseError(ValueError):
    """A non-commercial source was asked for in commercial-only mode."""


def check_commercial(sources: Sequence[SourceConfig], cfg: MixConfig) -> None:
    """Refuse, before any work is done, a commercial-only run that names a non-commercial source."""
    if not cfg.commercial_only:
        return
    bad = [s for s in sources if not s.is_commercial]
    if bad:
        names = ", ".join(f"{s.name} ({s.effective_license})" for s in bad)
        raise LicenseError(
            f"mix.commercial_only is true but these sources are not licensed for commercial use: {names}. "
            "Remove them from data.sources or set mix.commercial_only: false (the dataset is then "
            "non-commercial)."
        )


def check_names(cfg: MixConfig, names: Iterable[str]) -> None:
    """mix.caps / mix.ratios may only name configured sources (a typo would silently cap nothing)."""
    unknown = sorted((set(cfg.caps) | set(cfg.ratios)) - set(names))
    if unknown:
        raise ValueError(f"mix.caps/mix.ratios name sources that are not in data.sources: {unknown}")


def check_mix_config(sources: Sequence[SourceConfig], cfg: MixConfig) -> None:
    """Everything about the mix that can be refused before any work is done."""
    check_commercial(sources, cfg)
    check_names(cfg, (s.name for s in sources))


_WS = re.compile(r"\s+")


def normalised_text(d: Dialog) -> str:
    """The dedup key: roles and contents, NFKC, case-folded, whitespace collapsed."""
    parts = [f"{m['role']}:{m['content']}" for m in d["messages"]]
    return _WS.sub(" ", unicodedata.normalize("NFKC", "\n".join(parts)).casefold()).strip()


# Hugging Face hub license ids for the card's YAML header.
_HF_LICENSE_IDS = {
    "cc-by-sa-3.0": "cc-by-sa-3.0",
    "apache-2.0": "apache-2.0",
    "mit": "mit",
    "cc-by-4.0": "cc-by-4.0",
}


def _hf_license(lic: str) -> str:
    key = lic.split()[0].lower()
    return _HF_LICENSE_IDS.get(key, "other")


def mix(
    groups: Iterable[tuple[SourceConfig, Iterable[Dialog]]],
    cfg: MixConfig,
    out_dir: str | Path,
    rejects_file: str | Path,
) -> dict[str, Any]:
    """Deduplicate, cap, shuffle and split; write the dataset folder and its rejects.

    `groups` yields each source with the dialogs it contributes (English originals and kept
    Russian translations), in a stable order. Returns counts per source and language.
    """
    sources: dict[str, SourceConfig] = {}
    per_source: dict[str, list[Dialog]] = defaultdict(list)
    seen: dict[str, str] = {}
    rejects: list[dict[str, Any]] = []
    counts: dict[str, Counter] = defaultdict(Counter)
    for src, dialogs in groups:
        if cfg.commercial_only and not src.is_commercial:
            check_commercial([src], cfg)
        sources[src.name] = src
        for d in dialogs:
            c = counts[src.name]
            c[f"in_{d['lang']}"] += 1
            key = normalised_text(d)
            if key in seen:
                c[f"duplicate_{d['lang']}"] += 1
                rejects.append(reject_row([f"duplicate: same normalised text as {seen[key]}"], record=d))
                continue
            seen[key] = d["id"]
            per_source[src.name].append(d)

    rng = random.Random(cfg.seed)
    selected: list[Dialog] = []
    for name in sorted(per_source):
        dialogs = sorted(per_source[name], key=lambda d: d["id"])
        keep = len(dialogs)
        if name in cfg.ratios:
            keep = round(keep * cfg.ratios[name])
        if name in cfg.caps:
            keep = min(keep, cfg.caps[name])
        if keep < len(dialogs):
            # Seeded sample, then back to id order so the later shuffle alone decides order.
            chosen = set(rng.sample(range(len(dialogs)), keep))
            for i, d in enumerate(dialogs):
                if i not in chosen:
                    counts[name][f"capped_{d['lang']}"] += 1
            dialogs = [d for i, d in enumerate(dialogs) if i in chosen]
        selected.extend(dialogs)

    check_names(cfg, sources)

    splits = _split(selected, cfg.validation_fraction, rng)

    out_dir = Path(out_dir)
    for split, rows in splits.items():
        for d in rows:
            counts[d["source"]][f"{split}_{d['lang']}"] += 1
    _write_dataset(out_dir, splits)
    write_jsonl(rejects_file, rejects)
    summary = {
        "splits": {k: len(v) for k, v in splits.items()},
        "per_source": {k: dict(sorted(v.items())) for k, v in sorted(counts.items())},
        "licenses": {k: s.effective_license for k, s in sorted(sources.items())},
        "commercial": all(s.is_commercial for s in sources.values()),
        "rejects": len(rejects),
        "rejects_file": str(rejects_file),
        "output": str(out_dir),
    }
    write_text(out_dir / "README.md", dataset_card(summary, sources))
    write_json(out_dir / "stats.json", summary)
    return summary


def _split(dialogs: list[Dialog], fraction: float, rng: random.Random) -> dict[str, list[Dialog]]:
    """Seeded train/validation split that keeps an English original and its translation on the
    same side (otherwise validation would score the model on dialogs it trained on in the other
    language)."""
    groups: dict[str, list[Dialog]] = {}
    for d in sorted(dialogs, key=lambda d: d["id"]):
        groups.setdefault(d.get("origin_id") or d["id"], []).append(d)
    keys = sorted(groups)
    rng.shuffle(keys)
    n_val = round(len(dialogs) * fraction)
    if fraction > 0 and n_val == 0 and len(keys) >= 2:
        n_val = 1
    train: list[Dialog] = []
    val: list[Dialog] = []
    for k in keys:
        (val if len(val) < n_val and len(keys) >= 2 else train).extend(groups[k])
    rng.shuffle(train)
    rng.shuffle(val)
    return {"train": train, "validation": val}


def split_file(out_dir: str | Path, split: str) -> Path:
    """Hub-style shard names, which `load_dataset(<dir>)` maps to splits by itself. (A `configs:`
    block in the card would do the same, but datasets then caches local folders by that block
    alone, and a second folder with the same block silently loads the first one's data.)"""
    return Path(out_dir) / "data" / f"{split}-00000-of-00001.parquet"


def _write_dataset(out_dir: Path, splits: dict[str, list[Dialog]]) -> None:
    import pyarrow.parquet as pq

    from .io import dialogs_to_table

    for split, rows in splits.items():
        with atomic_path(split_file(out_dir, split)) as tmp:
            pq.write_table(dialogs_to_table(rows), tmp)


def dataset_card(summary: dict[str, Any], sources: dict[str, SourceConfig]) -> str:
    licenses = sorted({_hf_license(s.effective_license) for s in sources.values()})
    header = [
        "---",
        "license:" + ("" if len(licenses) > 1 else f" {licenses[0]}"),
        *([f"- {lic}" for lic in licenses] if len(licenses) > 1 else []),
        "language:",
        "- ru",
        "- en",
        "task_categories:",
        "- text-generation",
        "---",
    ]
    use = "commercial use allowed by every source's license" if summary["commercial"] else (
        "NOT for commercial use: at least one source forbids it"
    )
    lines = [
        "# ruinstruct instruction dataset",
        "",
        "Russian machine translations (WMT21 En-X, paragraph-wise, corrupted translations removed by "
        "automatic filters) of open English instruction datasets, mixed with the English originals.",
        "",
        f"Usage: {use}. Each record carries its source's license in the `license` field.",
        "",
        f"Splits: train {summary['splits']['train']}, validation {summary['splits']['validation']}.",
        "",
        "| source | license | commercial | en | ru | duplicates dropped | capped |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, c in summary["per_source"].items():
        s = sources[name]
        en = c.get("train_en", 0) + c.get("validation_en", 0)
        ru = c.get("train_ru", 0) + c.get("validation_ru", 0)
        dup = c.get("duplicate_en", 0) + c.get("duplicate_ru", 0)
        cap = c.get("capped_en", 0) + c.get("capped_ru", 0)
        lines.append(
            f"| {name} | {s.effective_license} | {'yes' if s.is_commercial else 'no'} | {en} | {ru} | {dup} | {cap} |"
        )
    lines += [
        "",
        "Record fields: id, source, lang, messages (role/content), origin_id (the English dialog a "
        "translation came from), license, meta (JSON).",
        "",
    ]
    return "\n".join(header) + "\n" + "\n".join(lines)
