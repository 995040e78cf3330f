"""Process-wide state the stages share: loaded models, and the environment a run asks for.

Loading a model is the expensive part of a stage (a 4.7B translator, an LLM to fine-tune or to
evaluate), so a process keeps one object per key and hands out a lock with it that serialises
its use across task threads. Once a stage is done it releases what it loaded, so the next stage
in the same process (training after translation) starts with the accelerator free.

Keys are "<kind>:<id>" ("translator:<translator id>", later "model:<...>"), so a stage can
release its own kind with `release("translator:")` and leave the others.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from .config import TranslationConfig

T = TypeVar("T")

_OBJECTS: dict[str, Any] = {}
_LOCKS: dict[str, threading.Lock] = {}
# held while loading too: two shard threads asking for the same translator must not load it twice
_GLOBAL = threading.Lock()

TRANSLATOR = "translator:"


def get(key: str, loader: Callable[[], T]) -> tuple[T, threading.Lock]:
    """The process's object for `key` (built by `loader()` on first use) and its use lock."""
    with _GLOBAL:
        if key not in _OBJECTS:
            _OBJECTS[key] = loader()
            _LOCKS[key] = threading.Lock()
        return _OBJECTS[key], _LOCKS[key]


def loaded(prefix: str = "") -> list[str]:
    """Keys of the objects held now (those starting with `prefix`)."""
    with _GLOBAL:
        return sorted(k for k in _OBJECTS if k.startswith(prefix))


def release(prefix: str = "") -> int:
    """Drop the objects whose key starts with `prefix` (all with ""), then free accelerator
    memory. Returns how many were dropped."""
    with _GLOBAL:
        keys = [k for k in _OBJECTS if k.startswith(prefix)]
        for k in keys:
            del _OBJECTS[k]
            del _LOCKS[k]
    if keys:
        free_accelerator()
    return len(keys)


def release_all() -> int:
    return release("")


def free_accelerator() -> None:
    """Return cached GPU memory once the last reference to a model is gone."""
    import gc

    gc.collect()
    import sys

    torch = sys.modules.get("torch")  # never import torch just to free nothing
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---- translators -----------------------------------------------------------------------------

def get_translator(cfg: TranslationConfig, translator_id: str | None = None):
    """The process-wide translator for `cfg` (loading a 4.7B model per shard would dominate),
    with a lock that serialises generate() calls on it across task threads."""
    from .translate import engine

    tid = translator_id or cfg.translator_id
    return get(TRANSLATOR + tid, lambda: engine.load_translator(cfg))


def release_translators() -> int:
    """Free the translators (and their GPU memory) once translation is done."""
    return release(TRANSLATOR)


# ---- environment -----------------------------------------------------------------------------

HF_OFFLINE_VARS = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")


def set_hf_offline(offline: bool) -> None:
    """A profile's `data.hf_offline: true`, applied to this process. It must run before
    `datasets`/`huggingface_hub` are first imported: they read these variables at import time.
    False leaves the environment as the user set it."""
    if offline:
        for var in HF_OFFLINE_VARS:
            os.environ[var] = "1"
