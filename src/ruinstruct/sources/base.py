"""Shared machinery of the source loaders: reading upstream rows (local files or the hub) and
accounting for every one of them.

Every loader turns *units* of input into dialogs. A unit is one upstream record (a JSONL line, a
JSON list item, a parquet or hub row) except for oasst1, whose unit is one message. Each unit
read ends in exactly one bucket, so that

    counts["read"] == counts["kept"] + counts["rejected"] + counts["excluded"]

- kept: the unit is part of at least one output dialog;
- rejected: the unit is unusable; one row per unit goes to `LoadResult.rejects` with reasons and
  where it came from (`file:line` for JSONL, `file#index` for JSON lists and parquet rows,
  `hf_id[split]#index` for hub rows). A line that is not UTF-8 is rejected like a malformed one
  ("not UTF-8: ..."); a dialog whose id was already seen is rejected as "duplicate id" (its row's
  `first_at` says where the kept one came from);
- excluded: left out by design, not an error (another language, not on the chosen oasst path,
  an unanswered prompt, past `limit`); `counts["excluded_<why>"]` break it down.

`counts["dialogs"]` is the number of output dialogs (equal to `kept` except for oasst1).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import SourceConfig
from ..io import iter_jsonl_lines, not_utf8_error, reject_row
from ..schema import Dialog, validate

FILE_SUFFIXES = (".jsonl", ".json", ".parquet")


@dataclass
class LoadResult:
    """What `load_source` returns: valid dialogs, reject rows and the counts that add up."""

    dialogs: list[Dialog] = field(default_factory=list)
    rejects: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    # hub sources: the commit of the dataset repo that was read (hub_commit); None for local files
    # or when it could not be found. Each dialog also carries it in meta[UPSTREAM_REVISION].
    revision: str | None = None


@dataclass(frozen=True)
class Row:
    """One upstream record. `obj` is None when the line did not decode or parse (then `raw`
    holds it and `error` says why: "malformed JSON line" or "not UTF-8: ...")."""

    obj: Any
    raw: str | None
    where: str
    key: str  # upstream position: "<index>" or "<file>/<index>" when a folder has several files
    error: str | None = None

    @property
    def parsed(self) -> bool:
        return self.raw is None

    @property
    def unparsed_reason(self) -> str:
        return self.error or "malformed JSON line"


class Excluded(Exception):
    """Raised by a row converter for a record left out by design (counted, not rejected)."""

    def __init__(self, why: str):
        super().__init__(why)
        self.why = why


class Rejected(Exception):
    """Raised by a row converter for an unusable record."""

    def __init__(self, *reasons: str):
        super().__init__("; ".join(reasons))
        self.reasons = list(reasons)


# ---- reading ---------------------------------------------------------------------------------

def iter_rows(cfg: SourceConfig) -> Iterator[Row]:
    """Rows of `cfg`: local files when `cfg.path` is set, else the hub dataset."""
    if cfg.path:
        yield from iter_local_rows(cfg.path)
    else:
        yield from iter_hub_rows(cfg)


def local_files(path: str | Path) -> list[Path]:
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = [
            p for p in path.rglob("*")
            if p.is_file() and p.suffix in FILE_SUFFIXES
            and not any(part.startswith((".", "_")) for part in p.relative_to(path).parts)
        ]
        if not files:
            raise FileNotFoundError(f"{path}: no {', '.join(FILE_SUFFIXES)} files")
        return sorted(files, key=lambda p: p.relative_to(path).as_posix())
    raise FileNotFoundError(f"{path}: no such file or folder")


def iter_local_rows(path: str | Path) -> Iterator[Row]:
    path = Path(path)
    files = local_files(path)
    multi = len(files) > 1
    for f in files:
        prefix = f"{f.relative_to(path).with_suffix('').as_posix()}/" if multi else ""
        for i, (obj, raw, where, error) in enumerate(_iter_file(f)):
            yield Row(obj=obj, raw=raw, where=where, key=f"{prefix}{i}", error=error)


def _iter_file(f: Path) -> Iterator[tuple[Any, str | None, str, str | None]]:
    """(parsed object, raw line if it did not decode/parse, where, why) per record of `f`."""
    if f.suffix == ".parquet":
        import pyarrow.parquet as pq

        for i, obj in enumerate(pq.read_table(f).to_pylist()):
            yield obj, None, f"{f}#{i}", None
        return
    if f.suffix == ".json":
        data = _json_document(f)
        if isinstance(data, list):
            for i, obj in enumerate(data):
                yield obj, None, f"{f}#{i}", None
            return
        if isinstance(data, dict):
            yield data, None, f"{f}#0", None
            return
    for line in iter_jsonl_lines(f):
        if line.error:
            yield None, line.raw, f"{f}:{line.lineno}", line.error
        else:
            yield line.obj, None, f"{f}:{line.lineno}", None


def _json_document(f: Path) -> Any:
    """The parsed content of a .json file that is one JSON document, or None when it is JSON
    Lines under a .json name (common on the hub). A document cannot be read line by line, so
    one that is not UTF-8 is an InputFileError naming the file and the place; a JSON Lines file
    goes on to the per-line reader, where a bad line is only that line's reject."""
    data = f.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        # Parse with the bad bytes smuggled through as surrogates, only to tell the shapes apart.
        try:
            doc = json.loads(data.decode("utf-8-sig", "surrogateescape"))
        except json.JSONDecodeError:
            return None
        if isinstance(doc, dict) and sum(1 for ln in data.splitlines() if ln.strip()) <= 1:
            return None  # a single JSON line: one record, rejected on its own
        raise not_utf8_error(f, data, e) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def iter_hub_rows(cfg: SourceConfig) -> Iterator[Row]:
    import datasets

    kwargs: dict[str, Any] = {"split": cfg.split, "revision": cfg.revision}
    data_files = getattr(cfg, "data_files", None)
    if data_files:
        kwargs["data_files"] = data_files
    ds = datasets.load_dataset(cfg.hf_id, **kwargs)
    for i, obj in enumerate(ds):
        yield Row(obj=obj, raw=None, where=f"{cfg.hf_id}[{cfg.split}]#{i}", key=str(i))


#: meta key of a hub dialog's upstream commit: the mix reads it back from the records it is
#: given (it may run in another process, long after the download) for the card and stats.json.
UPSTREAM_REVISION = "upstream_revision"

_COMMIT = re.compile(r"[0-9a-f]{40}")


def hub_commit(hf_id: str, revision: str | None) -> str | None:
    """The commit sha of hub dataset `hf_id` at `revision` (default main), best effort: the
    revision itself when it is a full sha; online, the hub's answer; offline (HF_HUB_OFFLINE) or
    when the hub does not answer, the local HF cache's refs/<revision> (written by the download
    just made) or the one cached snapshot whose name starts with `revision`; else None. Never
    raises: the rows are read already, and a missing provenance line must not fail the load."""
    if revision and _COMMIT.fullmatch(revision):
        return revision
    if not _hf_offline():
        try:
            from huggingface_hub import HfApi

            sha = HfApi().dataset_info(hf_id, revision=revision, timeout=30).sha
            if sha:
                return sha
        except Exception:  # noqa: BLE001 - any hub trouble: fall back to the local cache
            pass
    return _cached_commit(hf_id, revision or "main")


def _hf_offline() -> bool:
    import os

    from huggingface_hub import constants

    # the constant is read at import; the environment may have been set since (runtime.set_hf_offline)
    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}


def _cached_commit(hf_id: str, ref: str) -> str | None:
    from huggingface_hub import constants

    repo = Path(constants.HF_HUB_CACHE) / f"datasets--{hf_id.replace('/', '--')}"
    try:
        ref_file = repo / "refs" / ref
        if ref_file.is_file() and _COMMIT.fullmatch(sha := ref_file.read_text(encoding="utf-8").strip()):
            return sha
        snapshots = repo / "snapshots"
        matches = [p.name for p in snapshots.iterdir() if p.name.startswith(ref)] if snapshots.is_dir() else []
    except OSError:
        return None
    return matches[0] if len(matches) == 1 and _COMMIT.fullmatch(matches[0]) else None


# ---- accounting ---------------------------------------------------------------------------------

def make_reject(cfg: SourceConfig, reasons: list[str], row: Row, record: Any = None, **extra: Any) -> dict[str, Any]:
    """A rejects-file row for `row` (its parsed record, or the raw line when it did not parse).
    An upstream field called "source" is kept as "upstream_source" so that "source" names ours."""
    if not row.parsed:
        return reject_row(reasons, raw=row.raw, where=row.where, source=cfg.name, **extra)
    record = row.obj if record is None else record
    if isinstance(record, dict) and "source" in record:
        record = {("upstream_source" if k == "source" else k): v for k, v in record.items()}
    return reject_row(reasons, record=record, where=row.where, source=cfg.name, **extra)


class Collector:
    """Counts units into kept / rejected / excluded and builds the LoadResult."""

    def __init__(self, cfg: SourceConfig):
        self.cfg = cfg
        self.counts: Counter[str] = Counter()
        self.dialogs: list[Dialog] = []
        self.rejects: list[dict[str, Any]] = []
        self.first_at: dict[str, str] = {}  # dialog id -> where it was read

    def read(self, n: int = 1) -> None:
        self.counts["read"] += n

    def reject(self, reasons: list[str], row: Row, record: Any = None, **extra: Any) -> None:
        self.counts["rejected"] += 1
        self.rejects.append(make_reject(self.cfg, reasons, row, record, **extra))

    def exclude(self, why: str, n: int = 1) -> None:
        self.counts["excluded"] += n
        self.counts[f"excluded_{why}"] += n

    def limit_reached(self) -> bool:
        return self.cfg.limit is not None and len(self.dialogs) >= self.cfg.limit

    def check(self, dialog: Dialog) -> list[str]:
        """Reasons why `dialog` cannot be kept (schema problems)."""
        return validate(dialog)

    def add_dialog(self, dialog: Dialog, where: str) -> None:
        self.first_at[dialog["id"]] = where
        self.dialogs.append(dialog)

    def result(self) -> LoadResult:
        counts = dict(self.counts)
        for k in ("read", "kept", "rejected", "excluded"):
            counts.setdefault(k, 0)
        counts["dialogs"] = len(self.dialogs)
        if counts["read"] != counts["kept"] + counts["rejected"] + counts["excluded"]:
            raise AssertionError(f"{self.cfg.name}: counts do not add up: {counts}")
        if counts["rejected"] != len(self.rejects):
            raise AssertionError(f"{self.cfg.name}: {counts['rejected']} rejected, {len(self.rejects)} reject rows")
        return LoadResult(dialogs=self.dialogs, rejects=self.rejects, counts=dict(sorted(counts.items())))


@dataclass
class Part:
    """One dialog of a record that holds several (each is its own unit in the counts)."""

    row: Row
    dialog: Dialog | None = None
    reasons: list[str] | None = None
    record: Any = None


RowConverter = Callable[[dict[str, Any], Row, SourceConfig], "Dialog | list[Part]"]


def load_per_row(cfg: SourceConfig, rows: Iterable[Row], convert: RowConverter) -> LoadResult:
    """The loop for sources where one upstream record gives one dialog.

    `convert(obj, row, cfg)` returns the dialog or raises Rejected / Excluded. A converter may
    instead return a list of Part for a record that holds several dialogs (saiga's roleplay
    format); then each part is one unit.
    """
    col = Collector(cfg)
    for row in rows:
        if not row.parsed:
            col.read()
            col.reject([row.unparsed_reason], row)
            continue
        if not isinstance(row.obj, dict):
            col.read()
            col.reject([f"not a JSON object: {type(row.obj).__name__}"], row)
            continue
        try:
            out = convert(row.obj, row, cfg)
        except Rejected as e:
            col.read()
            col.reject(e.reasons, row)
            continue
        except Excluded as e:
            col.read()
            col.exclude(e.why)
            continue
        parts = out if isinstance(out, list) else [Part(row=row, dialog=out)]
        if not parts:
            col.read()
            col.reject(["record holds no dialog"], row)
            continue
        for part in parts:
            col.read()
            if part.reasons or part.dialog is None:
                col.reject(part.reasons or ["no dialog"], part.row, record=part.record)
                continue
            reasons = col.check(part.dialog)
            first = col.first_at.get(part.dialog["id"])
            if reasons:
                col.reject(reasons, part.row, record=part.record)
            elif first is not None:
                # later stages pair a translation with its original by id: the first one stays
                col.reject(["duplicate id"], part.row, record=part.record, first_at=first)
            elif col.limit_reached():
                col.exclude("limit")
            else:
                col.counts["kept"] += 1
                col.add_dialog(part.dialog, part.row.where)
    return col.result()


# ---- helpers for converters ------------------------------------------------------------------

_LEADING_BLANK_LINES = re.compile(r"\A(?:[ \t]*\r?\n)+")


def clean_text(text: str) -> str:
    """Trim trailing whitespace and leading blank lines, but keep the first line's indentation
    (an ASCII drawing, a board or indented code may start a message)."""
    return _LEADING_BLANK_LINES.sub("", text.rstrip())


def text_field(obj: dict[str, Any], name: str, *, required: bool = True) -> str:
    """A string field, cleaned (clean_text). Missing/None: error when required, else ''."""
    value = obj.get(name)
    if value is None:
        if required:
            raise Rejected(f"missing field: {name}")
        return ""
    if not isinstance(value, str):
        raise Rejected(f"field {name} is not a string: {type(value).__name__}")
    return clean_text(value)


def dialog_id(cfg: SourceConfig, upstream_id: Any) -> str:
    return f"{cfg.name}:{upstream_id}"
