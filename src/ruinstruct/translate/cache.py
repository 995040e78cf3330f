"""Persistent paragraph cache: translation unit -> translation, per translator.

One SQLite file (WAL mode) holds the entries of any number of translators. The key of an entry
is sha256(translator_id + "\\0" + text), so a cache opened with another translator id never sees
these entries; the source text and the translator id are stored beside the translation (plain
text, no pickle) so a hit is checked against the exact text and the file can be inspected with
the `sqlite3` shell. Each entry also keeps the translator's score of the translation (`logprob`,
the mean log-probability of its tokens; NULL when unknown), so a cache hit carries the same
confidence as a fresh translation.

Schema versions: files written before the `logprob` column existed are upgraded in place when
opened (the column is added, old rows read as None), so an old cache keeps serving its entries.

Safety:
- every `put_many` is one transaction (BEGIN IMMEDIATE ... COMMIT): a process killed mid-write
  leaves the batch either fully in or fully out;
- threads: each thread gets its own connection (sqlite3 objects are not shared);
- processes: SQLite's file locking, with a busy timeout so writers wait for each other
  instead of failing; WAL lets readers run while one process writes;
- fork: a connection inherited from the parent process is never reused by the child.
"""

from __future__ import annotations

import hashlib
import math
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

__all__ = ["CacheEntry", "CacheStats", "DEFAULT_FILENAME", "ParagraphCache", "cache_key"]

DEFAULT_FILENAME = "paragraphs.sqlite3"
_BATCH = 500  # host parameters per SELECT (SQLite's default limit is 999 or more)

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS paragraphs (
        key         TEXT PRIMARY KEY,
        translator  TEXT NOT NULL,
        source      TEXT NOT NULL,
        target      TEXT NOT NULL,
        created     REAL NOT NULL DEFAULT (julianday('now')),
        logprob     REAL
    ) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS paragraphs_translator ON paragraphs (translator)",
)
# Columns added after the first release: (name, declaration) for ALTER TABLE on older files.
_ADDED_COLUMNS = (("logprob", "REAL"),)


class CacheEntry(NamedTuple):
    """A cached translation and the translator's score of it (None: not recorded)."""

    target: str
    logprob: float | None


def cache_key(text: str, translator_id: str) -> str:
    """sha256 hex of translator id and text (a NUL separates them, so no two pairs collide)."""
    return hashlib.sha256(f"{translator_id}\0{text}".encode()).hexdigest()


@dataclass(frozen=True)
class CacheStats:
    """Lookups answered from the cache (hits) and not (misses), counted per distinct text."""

    hits: int = 0
    misses: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class ParagraphCache:
    """`get_many` / `put_many` translations of units for one translator, backed by SQLite.

    `path` is the database file; when it is an existing directory, the file
    `paragraphs.sqlite3` inside it is used. Parent directories are created.
    """

    def __init__(self, path: str | os.PathLike[str], translator_id: str, *, timeout: float = 60.0) -> None:
        if not translator_id:
            raise ValueError("translator_id must be a non-empty string")
        path = Path(path)
        if path.is_dir():
            path = path / DEFAULT_FILENAME
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.translator_id = translator_id
        self.timeout = timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._hits = 0
        self._misses = 0
        self._closed = False
        conn = self._conn()
        self._write(conn, lambda: self._create_or_upgrade(conn))

    @staticmethod
    def _create_or_upgrade(conn: sqlite3.Connection) -> None:
        """Create the table, or add the columns an older file lacks. Runs inside the write
        transaction, so two processes opening one old file do not both add a column."""
        for stmt in _SCHEMA:
            conn.execute(stmt)
        have = {row[1] for row in conn.execute("PRAGMA table_info(paragraphs)")}
        for name, decl in _ADDED_COLUMNS:
            if name not in have:
                conn.execute(f"ALTER TABLE paragraphs ADD COLUMN {name} {decl}")

    # -- connections ------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise RuntimeError(f"cache {self.path} is closed")
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        conn = sqlite3.connect(
            self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
        )
        conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")  # with WAL: survives a killed process
        self._local.conn = conn
        self._local.pid = os.getpid()
        with self._lock:
            self._connections.append(conn)
        return conn

    @staticmethod
    def _write(conn: sqlite3.Connection, body: Callable[[], object]) -> None:
        """Run `body` inside one write transaction: all of it is stored, or none."""
        conn.execute("BEGIN IMMEDIATE")  # take the write lock now (waits up to busy_timeout)
        try:
            body()
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        """Close every connection this object opened (in any thread). Idempotent."""
        with self._lock:
            conns, self._connections = self._connections, []
            self._closed = True
        for conn in conns:
            try:
                conn.close()
            except sqlite3.Error:  # pragma: no cover - closing is best effort
                pass

    def __enter__(self) -> ParagraphCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - depends on the garbage collector
        try:
            self.close()
        except Exception:
            pass

    # -- API --------------------------------------------------------------------------------

    def get_many(self, texts: Iterable[str]) -> dict[str, str]:
        """Translations of the texts that are cached (misses are simply absent)."""
        return {t: e.target for t, e in self.get_entries(texts).items()}

    def get_entries(self, texts: Iterable[str]) -> dict[str, CacheEntry]:
        """Translations and scores of the texts that are cached (misses are simply absent)."""
        unique = list(dict.fromkeys(texts))
        keys = {cache_key(t, self.translator_id): t for t in unique}
        found: dict[str, CacheEntry] = {}
        conn = self._conn()
        key_list = list(keys)
        for start in range(0, len(key_list), _BATCH):
            batch = key_list[start : start + _BATCH]
            marks = ",".join("?" * len(batch))
            rows = conn.execute(
                f"SELECT key, source, target, logprob FROM paragraphs WHERE translator = ? AND key IN ({marks})",
                [self.translator_id, *batch],
            ).fetchall()
            for key, source, target, logprob in rows:
                text = keys[key]
                if source == text:  # guards against a (practically impossible) hash collision
                    found[text] = CacheEntry(target, logprob)
        with self._lock:
            self._hits += len(found)
            self._misses += len(unique) - len(found)
        return found

    def get(self, text: str) -> str | None:
        return self.get_many([text]).get(text)

    def put_many(
        self, translations: Mapping[str, str], logprobs: Mapping[str, float | None] | None = None
    ) -> int:
        """Store all `translations` (text -> translation) in one transaction, each with its score
        from `logprobs` (text -> score; absent or None: unknown); returns the count."""
        logprobs = logprobs or {}
        rows = []
        for text, target in translations.items():
            if not isinstance(text, str) or not isinstance(target, str):
                raise TypeError(
                    f"cache entries must be str -> str, got {type(text).__name__} -> {type(target).__name__}"
                )
            score = logprobs.get(text)
            if score is not None:
                if isinstance(score, bool) or not isinstance(score, (int, float)):
                    raise TypeError(f"a score must be a float or None, got {type(score).__name__}")
                # NaN would come back as None anyway (SQLite stores it as NULL): say so here
                score = float(score) if math.isfinite(score) else None
            rows.append((cache_key(text, self.translator_id), self.translator_id, text, target, score))
        if not rows:
            return 0
        conn = self._conn()
        self._write(
            conn,
            lambda: conn.executemany(
                "INSERT OR REPLACE INTO paragraphs (key, translator, source, target, logprob) "
                "VALUES (?, ?, ?, ?, ?)",
                rows,
            ),
        )
        return len(rows)

    def put(self, text: str, translation: str, logprob: float | None = None) -> None:
        self.put_many({text: translation}, {text: logprob})

    def __len__(self) -> int:
        (n,) = self._conn().execute(
            "SELECT COUNT(*) FROM paragraphs WHERE translator = ?", [self.translator_id]
        ).fetchone()
        return int(n)

    @property
    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(hits=self._hits, misses=self._misses)

    def __repr__(self) -> str:
        return f"ParagraphCache({str(self.path)!r}, {self.translator_id!r})"
