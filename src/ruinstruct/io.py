"""Atomic file IO for dialog records (JSONL and parquet) and rejects files.

Every write goes to a temporary file in the target directory and is renamed into place, so a
killed run leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .schema import FIELDS, Dialog


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    return write_text(path, json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def dumps_line(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def write_jsonl(path: str | os.PathLike[str], rows: Iterable[Any]) -> int:
    n = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(dumps_line(row) + "\n")
            n += 1
    return n


def iter_jsonl(path: str | os.PathLike[str]) -> Iterator[tuple[int, Any | None, str]]:
    """Yield (line number, parsed object or None if malformed, raw line) for non-blank lines."""
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line), line.rstrip("\n")
            except json.JSONDecodeError:
                yield lineno, None, line.rstrip("\n")


def read_jsonl(path: str | os.PathLike[str]) -> list[Any]:
    """Strict reader for files this project wrote (a malformed line is an error)."""
    out = []
    for lineno, obj, _ in iter_jsonl(path):
        if obj is None:
            raise ValueError(f"{path}:{lineno}: malformed JSON line")
        out.append(obj)
    return out


# ---- dialogs <-> parquet -------------------------------------------------------------------

def _arrow_schema():
    import pyarrow as pa

    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    return pa.schema(
        [
            ("id", pa.string()),
            ("source", pa.string()),
            ("lang", pa.string()),
            ("messages", pa.list_(message)),
            ("origin_id", pa.string()),
            ("license", pa.string()),
            ("meta", pa.string()),  # JSON: sources have different extras
        ]
    )


def dialogs_to_table(dialogs: Iterable[Dialog]):
    import pyarrow as pa

    cols: dict[str, list[Any]] = {f: [] for f in FIELDS}
    for d in dialogs:
        for f in FIELDS:
            v = d.get(f)
            if f == "meta":
                v = json.dumps(v or {}, ensure_ascii=False, sort_keys=True)
            elif f == "messages":
                v = [{"role": m["role"], "content": m["content"]} for m in v]
            cols[f].append(v)
    return pa.table(cols, schema=_arrow_schema())


def write_dialogs(path: str | os.PathLike[str], dialogs: Iterable[Dialog]) -> int:
    """Write dialogs to `.parquet` or `.jsonl` (by suffix), atomically. Returns the count."""
    path = Path(path)
    dialogs = list(dialogs)
    if path.suffix == ".jsonl":
        return write_jsonl(path, dialogs)
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        pq.write_table(dialogs_to_table(dialogs), tmp)
    return len(dialogs)


def read_dialogs(path: str | os.PathLike[str]) -> list[Dialog]:
    path = Path(path)
    if path.suffix == ".jsonl":
        return [normalise_dialog(d) for d in read_jsonl(path)]
    import pyarrow.parquet as pq

    rows = pq.read_table(path).to_pylist()
    for r in rows:
        r["meta"] = json.loads(r["meta"]) if r.get("meta") else {}
    return rows  # type: ignore[return-value]


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Lists of `size` items (the last may be shorter); itertools.batched needs Python 3.12."""
    buf: list[Any] = []
    for item in items:
        buf.append(item)
        if len(buf) == size:
            yield buf
            buf = []
    if buf:
        yield buf


def iter_dialogs(path: str | os.PathLike[str], chunk: int = 1024) -> Iterator[Dialog]:
    """Dialogs of a parquet file, read in chunks (memory stays flat however large the file is)."""
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk):
        for r in batch.to_pylist():
            r["meta"] = json.loads(r["meta"]) if r.get("meta") else {}
            yield r  # type: ignore[misc]


def normalise_dialog(d: dict[str, Any]) -> Dialog:
    """Fill optional fields of a dialog read from JSON written by someone else."""
    d = dict(d)
    d.setdefault("origin_id", None)
    d.setdefault("meta", {})
    if isinstance(d.get("meta"), str):
        d["meta"] = json.loads(d["meta"])
    return d  # type: ignore[return-value]


# ---- rejects ---------------------------------------------------------------------------------

def rejects_path(output: str | os.PathLike[str]) -> Path:
    """`<output stem>.rejects.jsonl` beside `output` (DESIGN.md stage contract)."""
    output = Path(output)
    return output.with_name(f"{output.stem}.rejects.jsonl")


def reject_row(
    reasons: list[str],
    *,
    record: Any | None = None,
    raw: str | None = None,
    where: str | None = None,
    source: str | None = None,
) -> dict[str, Any]:
    """One rejects-file row: the record (or the raw line when it did not parse) plus reasons."""
    row: dict[str, Any] = {}
    if isinstance(record, dict):
        row.update(record)
    elif record is not None:
        row["record"] = record
    if raw is not None:
        row["raw"] = raw
    if source is not None:
        row.setdefault("source", source)
    if where is not None:
        row["where"] = where
    row["reasons"] = list(reasons)
    return row
