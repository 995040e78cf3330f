"""Shared test setup: offline Hugging Face, and the tiny models built once per session."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Many tests start Prefect's temporary server in a subprocess; on a loaded 2-core CI machine its
# start once took over Prefect's default 20 s and failed a test that had nothing to do with it.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402


def _is_built(d: Path) -> bool:
    return (d / ".done").exists() or (d / "translator" / "config.json").exists()


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder with the tiny models (translator, llama, xglm, gpt2). Reuses $RUINSTRUCT_TINY_DIR
    when it holds a build (`ruinstruct make-tiny --out DIR`), else builds one for this session."""
    env = os.environ.get("RUINSTRUCT_TINY_DIR")
    if env and _is_built(Path(env)):
        return Path(env)
    from ruinstruct.tiny import build_tiny

    out = tmp_path_factory.mktemp("tiny")
    build_tiny(out)
    return out
