"""Atomic file IO for dialog records (JSONL and parquet) and rejects files.

Every write goes to a temporary file in the target directory and is renamed into place, so a
killed run leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from .errors import UserError
from .paths import REJECTS_SUFFIX
from .schema import FIELDS, Dialog, null_non_finite, validate

# Read once at import: os.umask can only be read by setting it, which is not thread-safe
_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` if the block succeeds."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        # name the file the user asked for, not the temporary one beside it
        raise type(e)(e.errno, f"cannot write there ({e.strerror})", str(path)) from None
    os.close(fd)
    # mkstemp makes the file 0600; what lands at `path` gets the mode any new file would (0644
    # under the usual umask), so other users and a container's other uid can read the dataset
    os.chmod(tmp, 0o666 & ~_UMASK)
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
    return write_text(path, _dumps(obj, path, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _dumps(obj: Any, path: str | os.PathLike[str] | None = None, **kw: Any) -> str:
    # allow_nan=False: NaN/Infinity are not JSON, and other tools (jq, JavaScript, datasets'
    # JSON reader) refuse files that hold them. A value that reaches here is a bug upstream.
    try:
        return json.dumps(obj, ensure_ascii=False, allow_nan=False, **kw)
    except ValueError as e:
        where = f"{path}: " if path is not None else ""
        raise ValueError(f"{where}cannot write NaN or Infinity as JSON ({e}); see io.json_safe") from None


def dumps_line(obj: Any) -> str:
    return _dumps(obj, separators=(",", ":"))


def write_jsonl(path: str | os.PathLike[str], rows: Iterable[Any]) -> int:
    n = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(_dumps(row, path, separators=(",", ":")) + "\n")
            n += 1
    return n


def json_safe(obj: Any) -> Any:
    """`obj` with every NaN/Infinity float replaced by its name as a string ("NaN", "Infinity",
    "-Infinity"), so that evidence in a rejects file stays standard JSON and still shows what was
    there."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "NaN" if obj != obj else ("Infinity" if obj > 0 else "-Infinity")
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    return obj


class JsonlLine(NamedTuple):
    """One non-blank line of a JSONL file. `obj` is None when the line did not decode or parse;
    then `error` says why and `raw` holds the text (undecodable bytes as \\xNN escapes)."""

    lineno: int
    obj: Any
    raw: str
    error: str | None


class InputFileError(UserError, ValueError):
    """An input file that cannot be read at all (the message names the file and the place); a
    UserError, so the CLI prints the message alone and no retry is attempted."""


def _decode_error(e: UnicodeDecodeError, data: bytes) -> str:
    return f"not UTF-8: byte 0x{data[e.start]:02x} at byte offset {e.start} ({e.reason})"


def iter_jsonl_lines(path: str | os.PathLike[str]) -> Iterator[JsonlLine]:
    """Every non-blank line of a JSONL file, decoded and parsed one by one, so that one line that
    is not UTF-8 or not JSON is that line's problem and not the whole file's. A UTF-8 byte order
    mark at the start of the file is skipped."""
    with open(path, "rb") as f:
        for lineno, data in enumerate(f, 1):
            if lineno == 1 and data.startswith(b"\xef\xbb\xbf"):
                data = data[3:]
            data = data.rstrip(b"\r\n")
            if not data.strip():
                continue
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as e:
                yield JsonlLine(lineno, None, data.decode("utf-8", "backslashreplace"), _decode_error(e, data))
                continue
            try:
                yield JsonlLine(lineno, json.loads(text), text, None)
            except json.JSONDecodeError:
                yield JsonlLine(lineno, None, text, "malformed JSON line")


def read_jsonl(path: str | os.PathLike[str]) -> list[Any]:
    """Strict reader for files this project wrote (a bad line is an error naming file:line)."""
    out = []
    for line in iter_jsonl_lines(path):
        if line.error:
            raise InputFileError(f"{path}:{line.lineno}: {line.error}")
        out.append(line.obj)
    return out


def not_utf8_error(path: str | os.PathLike[str], data: bytes, e: UnicodeDecodeError) -> InputFileError:
    """The error for a whole document (not a line-wise file) that is not UTF-8: names the file,
    the line and the byte offset."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]  # decode("utf-8-sig") counts positions after the BOM
    line = data.count(b"\n", 0, e.start) + 1
    offset = e.start - (data.rfind(b"\n", 0, e.start) + 1)
    return InputFileError(
        f"{path}: not UTF-8 at line {line}, byte offset {offset} (byte 0x{data[e.start]:02x}: {e.reason}); "
        "save the file as UTF-8"
    )


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
                v = _dumps(v or {}, sort_keys=True)
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
    """Fill optional fields of a dialog read from JSON written by someone else: origin_id
    defaults to None ("" too), meta to {} (a JSON string is parsed: parquet stores it so; raises
    json.JSONDecodeError when it is not JSON), NaN/Infinity inside meta become null."""
    d = dict(d)
    d.setdefault("origin_id", None)
    if d["origin_id"] == "":
        d["origin_id"] = None
    d.setdefault("meta", {})
    if isinstance(d.get("meta"), str):
        d["meta"] = json.loads(d["meta"])
    if d["meta"] is None:
        d["meta"] = {}
    d["meta"] = null_non_finite(d["meta"])
    return d  # type: ignore[return-value]


def read_dialog_records(path: str | os.PathLike[str]) -> tuple[list[Dialog], list[dict[str, Any]]]:
    """Dialog records (schema.py) from a user's JSONL (or parquet) file, for `translate`,
    `filter` and the filter stage: (valid dialogs in file order, reject rows).

    Every record that cannot be used becomes one reject row with its place (`file:line`, or
    `file#row` for parquet) and reasons, so that valid + rejected = records read:
    a line that is not UTF-8 ("not UTF-8: ..."), malformed JSON ("malformed JSON line"), a
    record that fails schema.validate (including a NaN or non-string origin_id), meta that is
    not JSON, and a record whose id was already seen ("duplicate id"; the row's `first_at`
    names the first one, which is kept: later stages pair translations with originals by id).
    Raises FileNotFoundError (IsADirectoryError for a folder) with the path as its filename.
    """
    path = Path(path)
    if not path.is_file():
        # errno + filename: the CLI names the option that carried the path (errors.describe)
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, "a folder, not a dialog file", str(path))
        raise FileNotFoundError(errno.ENOENT, "input file not found", str(path))
    dialogs: list[Dialog] = []
    rejects: list[dict[str, Any]] = []
    first_at: dict[str, str] = {}
    for where, obj, raw, error in _dialog_rows(path):
        if error is not None:
            rejects.append(reject_row([error], raw=raw, where=where))
            continue
        if not isinstance(obj, dict):
            rejects.append(reject_row([f"not an object: {type(obj).__name__}"], record=obj, where=where))
            continue
        try:
            d = normalise_dialog(obj)
        except json.JSONDecodeError as e:
            rejects.append(reject_row([f"meta is not valid JSON: {e}"], record=obj, where=where))
            continue
        reasons = validate(d)
        if reasons:
            rejects.append(reject_row(reasons, record=obj, where=where))
        elif d["id"] in first_at:
            rejects.append(reject_row(["duplicate id"], record=obj, where=where, first_at=first_at[d["id"]]))
        else:
            first_at[d["id"]] = where
            dialogs.append(d)
    return dialogs, rejects


def _dialog_rows(path: Path) -> Iterator[tuple[str, Any, str | None, str | None]]:
    """(where, parsed object, raw line, error) per record of a JSONL or parquet file."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        for i, obj in enumerate(pq.read_table(path).to_pylist()):
            yield f"{path}#{i}", obj, None, None
        return
    for line in iter_jsonl_lines(path):
        yield f"{path}:{line.lineno}", line.obj, line.raw if line.error else None, line.error


# ---- rejects ---------------------------------------------------------------------------------

def rejects_path(output: str | os.PathLike[str], folder: str | os.PathLike[str] | None = None) -> Path:
    """`<output stem>.rejects.jsonl` beside `output` (every stage's rejects contract), or in `folder`
    (the rejects of an input file that must not be written beside the input)."""
    output = Path(output)
    return Path(folder if folder is not None else output.parent) / f"{output.stem}{REJECTS_SUFFIX}"


def reject_row(
    reasons: list[str],
    *,
    record: Any | None = None,
    raw: str | None = None,
    where: str | None = None,
    source: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One rejects-file row: the record (or the raw line when it did not parse) plus reasons,
    and any `extra` fields (such as first_at for a duplicate). NaN/Infinity in the record are
    kept as the strings "NaN"/"Infinity" (json_safe) so the file stays standard JSON."""
    row: dict[str, Any] = {}
    record = json_safe(record)
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
    row.update(extra)
    row["reasons"] = list(reasons)
    return row
