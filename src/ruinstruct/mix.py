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
from .paths import DATASET_CARD, DATASET_STATS
from .schema import Dialog
from .sources.base import UPSTREAM_REVISION
from .translate.dialogs import MT_LOGPROB


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
    *,
    translator_id: str | None = None,
) -> dict[str, Any]:
    """Deduplicate, cap, shuffle and split; write the dataset folder and its rejects.

    `groups` yields each source with the dialogs it contributes (English originals and kept
    Russian translations), in a stable order. `translator_id` (TranslationConfig.translator_id
    of the run; None when nothing was translated) is named in the dataset card. Returns counts
    per source and language, plus the output paths for the run report; the dataset folder itself
    (README.md, stats.json) holds no path of this machine, since it is meant to be shared.
    """
    sources: dict[str, SourceConfig] = {}
    per_source: dict[str, list[Dialog]] = defaultdict(list)
    seen: dict[str, str] = {}
    rejects: list[dict[str, Any]] = []
    counts: dict[str, Counter] = defaultdict(Counter)
    commits: dict[str, set[str]] = defaultdict(set)  # hub commits the records were read from
    for src, dialogs in groups:
        if cfg.commercial_only and not src.is_commercial:
            check_commercial([src], cfg)
        sources[src.name] = src
        counts[src.name].update()  # every source appears in the summary and the card, an empty one with zeros
        for d in dialogs:
            if commit := (d.get("meta") or {}).get(UPSTREAM_REVISION):
                commits[src.name].add(str(commit))
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
    stats = {
        "splits": {k: len(v) for k, v in splits.items()},
        "per_source": {k: dict(sorted(v.items())) for k, v in sorted(counts.items())},
        "licenses": {k: s.effective_license for k, s in sorted(sources.items())},
        "commercial": all(s.is_commercial for s in sources.values()),
        "rejects": len(rejects),
        "translator_id": translator_id,
        "upstream": {k: upstream(s, sorted(commits[k])) for k, s in sorted(sources.items())},
    }
    meta_keys = {k for rows in splits.values() for d in rows for k in (d.get("meta") or {})}
    write_text(out_dir / DATASET_CARD, dataset_card(stats, sources, meta_keys))
    write_json(out_dir / DATASET_STATS, stats)
    # the paths are for the run report only, never for the shared folder
    return {**stats, "rejects_file": str(rejects_file), "output": str(out_dir)}


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


def upstream(src: SourceConfig, commits: Sequence[str] = ()) -> dict[str, Any]:
    """Where a source came from, without machine paths: the hub id, the revision asked for, the
    commit(s) actually read (`commits`, from the records' meta; normally one) and the data files,
    or the base name of the local file or folder."""
    if src.path:
        return {"local": Path(src.path).name}
    out: dict[str, Any] = {
        "hf_id": src.hf_id,
        "revision": src.revision,
        "commit": ", ".join(commits) or None,
        "split": src.split,
    }
    if src.data_files:
        out["data_files"] = src.data_files
    return out


def _upstream_cells(src: SourceConfig, up: dict[str, Any]) -> tuple[str, str]:
    if "local" in up:
        return f"local files `{up['local']}` ({src.kind} format)", "-"
    files = up.get("data_files")
    files = f" ({', '.join(files) if isinstance(files, list) else files})" if files else ""
    hub = f"[{up['hf_id']}](https://huggingface.co/datasets/{up['hf_id']}){files}, split {up['split']}"
    asked, commit = up["revision"], up.get("commit")
    if commit:
        return hub, f"`{commit}`" if commit == asked else f"`{commit}` (resolved from {asked or 'main'})"
    if asked:
        return hub, f"`{asked}`"
    return hub, "not pinned (the latest at download time; commit not recorded)"


# What each license asks of whoever shares these records (keys: lower-cased SPDX ids).
LICENSE_OBLIGATIONS: dict[str, str] = {
    "cc-by-sa-3.0": "Attribution: credit the source, link the license and say that the records were changed "
    "(reformatted, machine-translated). Share-alike: the records derived from these sources, translations "
    "included, must be shared under CC-BY-SA-3.0 (or a later or compatible version of it).",
    "cc-by-sa-4.0": "Attribution and share-alike, as for CC-BY-SA-3.0: derived records must be shared under "
    "CC-BY-SA-4.0 or a compatible license.",
    "cc-by-4.0": "Attribution: credit the source, link the license and say that the records were changed.",
    "apache-2.0": "Keep the license text and any NOTICE or attribution that the source ships, and state that "
    "the records were changed (reformatted, machine-translated).",
    "mit": "Keep the copyright notice and the license text with the records.",
}
UNKNOWN_LICENSE = "Unknown: the source states no license this tool knows; check its terms before you use or share it."


def license_obligations(lic: str) -> str:
    """What `lic` (a source's effective_license, e.g. "CC-BY-4.0 (OpenAI-generated: ...)")
    obliges a user to do; anything after the SPDX id is a further condition and is repeated."""
    key, _, rest = lic.partition(" ")
    text = LICENSE_OBLIGATIONS.get(key.lower(), UNKNOWN_LICENSE)
    rest = rest.strip().strip("()")
    return f"{text} Also: {rest}." if rest and text is not UNKNOWN_LICENSE else text


LOAD_SNIPPET = """```python
from datasets import load_dataset

ds = load_dataset("path/to/final")  # this folder (or its Hub repo id, once pushed)
print(ds)                            # DatasetDict with train and validation splits
print(ds["train"][0]["messages"])    # [{"role": "user", "content": ...}, {"role": "assistant", ...}]
```"""


# meta keys that this tool writes, described in the card when the dataset's records carry them
# (the others come from the upstream records and are only named).
META_KEYS: dict[str, str] = {
    MT_LOGPROB: "machine translations: the translator's confidence, one list per message with the "
    "length-normalised log-probability (mean token log-probability, at most 0; nearer 0 = more confident) of "
    "each translated unit (a paragraph, or a piece of a long one) of that message, in order; an empty list for "
    "a message with nothing translated, null for a unit whose score is unknown",
    "translator": "machine translations: the id of the translator that made it (model@revision#settings hash)",
    UPSTREAM_REVISION: "sources read from the Hub: the commit of the upstream dataset the record was read from",
}


def _record_fields(meta_keys: Iterable[str]) -> list[str]:
    keys = set(meta_keys)
    ours = [f"- `meta.{k}`: {text}." for k, text in META_KEYS.items() if k in keys]
    theirs = sorted(keys - set(META_KEYS))
    return [
        "id, source, lang, messages (role/content), origin_id (the English dialog a translation came "
        "from), license, meta (a JSON object as a string: `json.loads(record[\"meta\"])`).",
        *([""] + ours if ours else []),
        *([f"- other `meta` keys, as the upstream records state them: {', '.join(theirs)}."] if theirs else []),
    ]


def dataset_card(stats: dict[str, Any], sources: dict[str, SourceConfig], meta_keys: Iterable[str] = ()) -> str:
    """The folder's README.md: what is in it, how to load it, where each part came from and what
    each license obliges, and the record fields (`meta_keys`: the meta keys the records carry).
    Uses no path of this machine (`stats` is the path-free mix summary)."""
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
    use = "commercial use allowed by every source's license" if stats["commercial"] else (
        "NOT for commercial use: at least one source forbids it"
    )
    tid = stats.get("translator_id")
    made_by = (
        f"translated paragraph by paragraph by `{tid}` (model@revision#settings hash), with the "
        "translations that automatic filters found corrupted removed" if tid else
        "no translator recorded: this dataset holds no machine translation made by this run"
    )
    lines = [
        "# ruinstruct instruction dataset",
        "",
        "Instruction dialogs in English and Russian from the sources below. The Russian dialogs of "
        f"translated sources are machine translations: {made_by}.",
        "",
        f"Usage: {use}. Each record carries its source's license in the `license` field.",
        "",
        "## Load",
        "",
        LOAD_SNIPPET,
        "",
        f"Splits: train {stats['splits']['train']}, validation {stats['splits']['validation']}. An English "
        "original and its translation are always in the same split.",
        "",
        "## Sources",
        "",
        "| source | license | commercial | en | ru | duplicates dropped | capped | upstream | revision |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, c in stats["per_source"].items():
        s = sources[name]
        en = c.get("train_en", 0) + c.get("validation_en", 0)
        ru = c.get("train_ru", 0) + c.get("validation_ru", 0)
        dup = c.get("duplicate_en", 0) + c.get("duplicate_ru", 0)
        cap = c.get("capped_en", 0) + c.get("capped_ru", 0)
        where, rev = _upstream_cells(s, stats["upstream"][name])
        lines.append(
            f"| {name} | {s.effective_license} | {'yes' if s.is_commercial else 'no'} | {en} | {ru} | {dup} | {cap} "
            f"| {where} | {rev} |"
        )
    by_license: dict[str, list[str]] = defaultdict(list)
    for name in stats["per_source"]:
        by_license[sources[name].effective_license].append(name)
    lines += [
        "",
        "## Licenses and what they oblige",
        "",
        "Records keep the license of the source they came from; a translation keeps its original's.",
        "",
        "| license | sources | obligations |",
        "|---|---|---|",
        *(f"| {lic} | {', '.join(names)} | {license_obligations(lic)} |" for lic, names in sorted(by_license.items())),
        "",
        "## Record fields",
        "",
        *_record_fields(meta_keys),
        "",
    ]
    return "\n".join(header) + "\n" + "\n".join(lines)
