"""ParagraphCache: hits and misses, isolation per translator, persistence, atomic batches,
threads and processes."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from ruinstruct.translate.cache import DEFAULT_FILENAME, CacheEntry, CacheStats, ParagraphCache, cache_key

SRC = os.path.join(os.path.dirname(__file__), "..", "..", "src")


@pytest.fixture
def db(tmp_path):
    return tmp_path / "cache" / "paragraphs.sqlite3"


def test_get_put_len_stats(db):
    with ParagraphCache(db, "m@main#1") as cache:
        assert len(cache) == 0
        assert cache.get_many(["Hello.", "Bye."]) == {}
        assert cache.put_many({"Hello.": "Привет.", "Bye.": "Пока."}) == 2
        assert cache.get_many(["Hello.", "Bye.", "Other.", "Hello."]) == {"Hello.": "Привет.", "Bye.": "Пока."}
        assert cache.get("Other.") is None
        assert len(cache) == 2
        assert cache.stats == CacheStats(hits=2, misses=2 + 1 + 1)
        assert cache.stats.as_dict() == {"hits": 2, "misses": 4}


def test_put_overwrites_and_empty_translation_is_kept(db):
    with ParagraphCache(db, "m") as cache:
        cache.put("A text", "old")
        cache.put_many({"A text": "new", "Empty one": ""})
        assert cache.get_many(["A text", "Empty one"]) == {"A text": "new", "Empty one": ""}
        assert len(cache) == 2
        assert cache.put_many({}) == 0


def test_other_translator_never_sees_entries(db):
    with ParagraphCache(db, "model-a#1") as a, ParagraphCache(db, "model-a#2") as b:
        a.put_many({"Hello.": "Привет."})
        assert b.get_many(["Hello."]) == {}
        assert len(b) == 0 and len(a) == 1
        b.put_many({"Hello.": "Здравствуйте."})
        assert a.get("Hello.") == "Привет."
        assert b.get("Hello.") == "Здравствуйте."


def test_survives_reopen_and_accepts_a_directory(tmp_path):
    with ParagraphCache(tmp_path, "m") as cache:
        assert cache.path == tmp_path / DEFAULT_FILENAME
        cache.put_many({f"text {i}": f"текст {i}" for i in range(1200)})  # > one SELECT batch
    with ParagraphCache(tmp_path / DEFAULT_FILENAME, "m") as again:
        got = again.get_many([f"text {i}" for i in range(1300)])
        assert len(got) == 1200 and got["text 7"] == "текст 7"
        assert again.stats == CacheStats(hits=1200, misses=100)


def test_storage_is_plain_text_with_sha256_keys(db):
    with ParagraphCache(db, "m@r#h") as cache:
        cache.put_many({"Hello.": "Привет."})
        conn = sqlite3.connect(db)
        rows = conn.execute("SELECT key, translator, source, target FROM paragraphs").fetchall()
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        conn.close()
    assert rows == [(cache_key("Hello.", "m@r#h"), "m@r#h", "Hello.", "Привет.")]
    assert len(rows[0][0]) == 64
    assert mode == "wal"
    assert cache_key("a", "b") != cache_key("b", "a")


def test_rejects_non_strings_and_writes_nothing(db):
    with ParagraphCache(db, "m") as cache:
        with pytest.raises(TypeError):
            cache.put_many({"ok": "ок", "bad": None})  # type: ignore[dict-item]
        assert len(cache) == 0
        with pytest.raises(ValueError):
            ParagraphCache(db, "")


def test_failed_transaction_rolls_back(db):
    with ParagraphCache(db, "m") as cache:
        conn = cache._conn()

        def body():
            conn.execute(
                "INSERT INTO paragraphs (key, translator, source, target) VALUES (?, ?, ?, ?)",
                [cache_key("x", "m"), "m", "x", "икс"],
            )
            raise RuntimeError("killed mid-batch")

        with pytest.raises(RuntimeError):
            cache._write(conn, body)
        assert len(cache) == 0
        cache.put_many({"y": "игрек"})  # the connection is usable afterwards
        assert len(cache) == 1


def test_closed_cache_refuses_work(db):
    cache = ParagraphCache(db, "m")
    cache.close()
    cache.close()
    with pytest.raises(RuntimeError):
        cache.get_many(["a"])


def test_concurrent_threads(db):
    cache = ParagraphCache(db, "m")
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for j in range(20):
                batch = {f"t{k}-{j}-{i}": f"п{k}-{j}-{i}" for i in range(10)}
                cache.put_many(batch)
                assert cache.get_many(list(batch)) == batch
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(cache) == 8 * 20 * 10
    assert cache.stats == CacheStats(hits=8 * 20 * 10, misses=0)
    cache.close()


def _python(code: str) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]))
    return [sys.executable, "-c", textwrap.dedent(code)], env


def test_concurrent_processes(db):
    code = """
        import sys
        from ruinstruct.translate.cache import ParagraphCache
        cache = ParagraphCache(sys.argv[1], "m", timeout=60)
        for j in range(15):
            cache.put_many({f"p{sys.argv[2]}-{j}-{i}": "x" for i in range(50)})
            cache.get_many([f"p{sys.argv[2]}-{j}-0"])
        cache.close()
    """
    cmd, env = _python(code)
    ParagraphCache(db, "m").close()  # create the file first
    procs = [subprocess.Popen([*cmd, str(db), str(k)], env=env) for k in range(3)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    with ParagraphCache(db, "m") as cache:
        assert len(cache) == 3 * 15 * 50


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_killed_writer_leaves_whole_batches(db):
    code = """
        import sys
        from ruinstruct.translate.cache import ParagraphCache
        cache = ParagraphCache(sys.argv[1], "m")
        j = 0
        while True:
            cache.put_many({f"k{j}-{i}": "v" * 200 for i in range(1000)})
            j += 1
    """
    cmd, env = _python(code)
    ParagraphCache(db, "m").close()
    proc = subprocess.Popen([*cmd, str(db)], env=env)
    try:
        deadline = time.monotonic() + 60
        with ParagraphCache(db, "m") as watcher:
            while len(watcher) < 3000 and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    with ParagraphCache(db, "m") as cache:
        n = len(cache)
        assert n >= 3000 and n % 1000 == 0
        (check,) = cache._conn().execute("PRAGMA integrity_check").fetchone()
        assert check == "ok"


# ---- translator scores and the schema upgrade ---------------------------------------------------

#: The table as the first release wrote it (no logprob column).
OLD_SCHEMA = """CREATE TABLE paragraphs (
    key TEXT PRIMARY KEY, translator TEXT NOT NULL, source TEXT NOT NULL, target TEXT NOT NULL,
    created REAL NOT NULL DEFAULT (julianday('now'))) WITHOUT ROWID"""


def test_scores_stored_beside_translations(db):
    with ParagraphCache(db, "m") as cache:
        assert cache.put_many({"A.": "А.", "B.": "Б.", "C.": "В."}, {"A.": -0.125, "B.": None}) == 3
        cache.put("D.", "Г.", -1 / 3)
        entries = cache.get_entries(["A.", "B.", "C.", "D.", "E."])
        assert entries == {
            "A.": CacheEntry("А.", -0.125),
            "B.": CacheEntry("Б.", None),
            "C.": CacheEntry("В.", None),  # no score given: unknown
            "D.": CacheEntry("Г.", -1 / 3),  # a REAL keeps the float exactly
        }
        assert cache.get_many(["A.", "E."]) == {"A.": "А."}
        cache.put_many({"A.": "А!"}, {"A.": float("nan")})  # NaN is no score
        assert cache.get_entries(["A."]) == {"A.": CacheEntry("А!", None)}
        with pytest.raises(TypeError, match="score"):
            cache.put_many({"A.": "А."}, {"A.": "-0.1"})  # type: ignore[dict-item]


def test_old_cache_file_is_upgraded_and_keeps_its_entries(db):
    db.parent.mkdir(parents=True)
    with sqlite3.connect(db) as conn:
        conn.execute(OLD_SCHEMA)
        conn.execute(
            "INSERT INTO paragraphs (key, translator, source, target) VALUES (?, ?, ?, ?)",
            [cache_key("Hello.", "m"), "m", "Hello.", "Привет."],
        )
    conn.close()
    with ParagraphCache(db, "m") as cache:
        assert cache.get_entries(["Hello."]) == {"Hello.": CacheEntry("Привет.", None)}
        cache.put("Bye.", "Пока.", -0.5)
        assert cache.get_entries(["Bye."])["Bye."].logprob == -0.5
    with ParagraphCache(db, "m") as again:  # a second open finds the column and adds nothing
        assert len(again) == 2 and again.get("Hello.") == "Привет."
    with sqlite3.connect(db) as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(paragraphs)")]
    conn.close()
    assert columns == ["key", "translator", "source", "target", "created", "logprob"]


def test_two_processes_upgrade_one_old_file(db):
    """Both open the old file at once: one adds the column, the other must not fail on it."""
    db.parent.mkdir(parents=True)
    with sqlite3.connect(db) as conn:
        conn.execute(OLD_SCHEMA)
    conn.close()
    code = textwrap.dedent(
        """
        import sys
        sys.path.insert(0, sys.argv[2])
        from ruinstruct.translate.cache import ParagraphCache
        with ParagraphCache(sys.argv[1], "m") as cache:
            cache.put(sys.argv[3], "x", -1.0)
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(db), SRC, f"text {i}"], stderr=subprocess.PIPE)
        for i in range(2)
    ]
    errors = [p.communicate(timeout=120)[1].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    with ParagraphCache(db, "m") as cache:
        assert cache.get_entries(["text 0", "text 1"]) == {
            "text 0": CacheEntry("x", -1.0), "text 1": CacheEntry("x", -1.0)
        }
