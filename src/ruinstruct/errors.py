"""Which errors are the user's to fix, and which are worth a retry.

- `UserError`: raise it for a mistake the user can fix (no valid input, a stage's input missing).
  The CLI prints its message, one or two lines, and exits 2; a traceback only with `--debug`.
- `describe(exc, args)`: the one- or two-line message for an expected error (UserError, a bad
  config, a license conflict, a missing file, a path or hub id that is not a model), naming the
  command-line option that carried the bad value; None for anything else, which is a bug and
  keeps its traceback.
- `is_retryable(exc)`: only network trouble is worth a retry. Offline mode, a repository that
  does not exist or is gated, 4xx answers, missing files and bad values fail at once.

Exceptions are recognised by class name along their MRO, so this module imports neither
huggingface_hub nor httpx nor requests (and matches httpx2 and urllib3 as well).
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path


class UserError(Exception):
    """An error the user can fix; its message is all the CLI prints (exit code 2)."""


# ---------------------------------------------------------------------------------------------
# retry policy

# Raised by the hub and datasets when retrying cannot help: offline mode, a repo that does not
# exist, is gated or disabled, a revision or file that is not there, an id that is not valid.
_PERMANENT = frozenset({
    "OfflineModeIsEnabled", "RepositoryNotFoundError", "GatedRepoError", "DisabledRepoError",
    "RevisionNotFoundError", "RemoteEntryNotFoundError", "HFValidationError", "DatasetNotFoundError",
    "LocalTokenNotFoundError", "SSLError", "SSLCertVerificationError",
})

# (module prefix, class name) of network trouble in the HTTP stacks the hub clients use.
_NETWORK = frozenset({
    ("httpx", "NetworkError"), ("httpx", "TimeoutException"), ("httpx", "RemoteProtocolError"),
    ("httpcore", "NetworkError"), ("httpcore", "TimeoutException"), ("httpcore", "RemoteProtocolError"),
    ("requests", "ConnectionError"), ("requests", "Timeout"), ("requests", "ChunkedEncodingError"),
    ("urllib3", "ProtocolError"), ("urllib3", "TimeoutError"), ("urllib3", "NewConnectionError"),
    ("aiohttp", "ClientConnectionError"), ("aiohttp", "ServerTimeoutError"),
})

_NETWORK_ERRNOS = frozenset({
    errno.ECONNRESET, errno.ECONNREFUSED, errno.ECONNABORTED, errno.ETIMEDOUT, errno.EHOSTUNREACH,
    errno.ENETUNREACH, errno.ENETDOWN, errno.ENETRESET, errno.EHOSTDOWN,
})

_OFFLINE_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


def chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and the exceptions behind it (__cause__, else __context__), each once."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or (None if cur.__suppress_context__ else cur.__context__)


def _names(exc: BaseException) -> set[tuple[str, str]]:
    return {(k.__module__.split(".")[0].removesuffix("2"), k.__name__) for k in type(exc).__mro__}


def _status(exc: BaseException) -> int | None:
    code = getattr(getattr(exc, "response", None), "status_code", None)
    return code if isinstance(code, int) else None


def hf_offline() -> bool:
    """Whether the user switched the Hugging Face libraries offline (as they parse it)."""
    return any(os.environ.get(v, "").upper() in ("1", "ON", "YES", "TRUE") for v in _OFFLINE_ENV)


def _permanent(exc: BaseException) -> bool:
    if {n for _, n in _names(exc)} & _PERMANENT:
        return True
    # datasets re-raises offline mode as a bare ConnectionError `from None`: only its text is left
    if "(OfflineModeIsEnabled)" in str(exc):
        return True
    code = _status(exc)
    return code is not None and 400 <= code < 500 and code not in (408, 429)


def _network(exc: BaseException) -> bool:
    if _names(exc) & _NETWORK:
        return True
    code = _status(exc)
    if code is not None:
        return code in (408, 429) or code >= 500
    if isinstance(exc, socket.gaierror):
        return exc.errno == socket.EAI_AGAIN  # "temporary failure in name resolution"
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    return isinstance(exc, OSError) and exc.errno in _NETWORK_ERRNOS


def is_retryable(exc: BaseException) -> bool:
    """True only for network trouble (connection refused or reset, timeouts, HTTP 408/429/5xx),
    looked for along the whole cause chain. A permanent error anywhere in the chain wins, and
    under HF offline mode nothing is retried: the network is off by the user's choice."""
    errs = list(chain(exc))
    if any(_permanent(e) for e in errs):
        return False
    return any(_network(e) for e in errs) and not hf_offline()


# ---------------------------------------------------------------------------------------------
# messages for the CLI

def _model_load(exc: BaseException) -> str | None:
    """The model id or path whose `from_pretrained` raised `exc`, if it did: an OSError,
    ValueError or TypeError from transformers (no such folder, not a model folder, hub id not
    found, a file that is not a config). Not a RuntimeError: out of memory is no bad path."""
    if not isinstance(exc, OSError | ValueError | TypeError):
        return None
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        if code.co_name == "from_pretrained" and "pretrained_model_name_or_path" in code.co_varnames:
            value = tb.tb_frame.f_locals.get("pretrained_model_name_or_path")
            if value is not None:
                return str(value)
        tb = tb.tb_next
    return None


def _first_sentence(text: str, limit: int = 160) -> str:
    line = " ".join(text.split())
    for end in (". ", "? "):
        if end in line:
            line = line[: line.index(end) + 1]
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _model_reason(model: str, exc: BaseException) -> str:
    path = Path(model).expanduser()
    if path.is_dir() and not (path / "config.json").exists():
        return "the folder has no config.json"
    if path.is_dir():
        return _first_sentence(str(exc))
    if path.exists():
        return "a file, not a folder"
    if model.startswith((".", "/", "~")) or model.count("/") > 1:
        return "no such folder"
    if hf_offline():
        return "not in the local Hugging Face cache, and HF_HUB_OFFLINE=1 forbids a download"
    return _first_sentence(str(list(chain(exc))[-1]))


def option_for(value: str, args: Sequence[str]) -> str:
    """`value` labelled with the command-line option that carried it ("--input ./x.jsonl"), or
    `value` alone when no option did. A path matches however it was spelled (./x, x, /abs/x)."""
    def same(given: str) -> bool:
        if given == value:
            return True
        try:
            return os.path.abspath(os.path.expanduser(given)) == os.path.abspath(os.path.expanduser(value))
        except (TypeError, ValueError):
            return False

    for i, tok in enumerate(args):
        if tok.startswith("-") and "=" in tok:
            opt, given = tok.split("=", 1)
            if same(given):
                return f"{opt} {given}"
        elif tok.startswith("-") and i + 1 < len(args) and same(args[i + 1]):
            return f"{tok} {args[i + 1]}"
    return value


def describe(exc: BaseException, args: Sequence[str] = ()) -> str | None:
    """One or two lines for an expected error (see the module docstring); None for a bug."""
    from .config import ConfigError
    from .mix import LicenseError

    model = _model_load(exc)
    if model is not None:
        label = option_for(model, args)
        if label == model:
            label = f"translation.model {model}"
        return f"{label}: not a model folder or hub id ({_model_reason(model, exc)})"
    if isinstance(exc, UserError | ConfigError | LicenseError):
        return str(exc)
    if isinstance(exc, FileNotFoundError | IsADirectoryError | NotADirectoryError | PermissionError):
        if exc.filename is None:
            return str(exc)
        what = (exc.strerror or type(exc).__name__).lower()
        return f"{option_for(os.fsdecode(exc.filename), args)}: {what}"
    return None
