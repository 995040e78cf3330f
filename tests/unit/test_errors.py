"""errors.is_retryable (only network trouble is retried) and errors.describe (the CLI's one-liners),
on real exception instances of the libraries that raise them."""

from __future__ import annotations

import errno
import socket

import pytest

from ruinstruct.errors import UserError, describe, is_retryable


@pytest.fixture
def online(monkeypatch):
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)


def _hub_response(status: int):
    import httpx2

    return httpx2.Response(status, request=httpx2.Request("GET", "https://huggingface.co/api/datasets/x"))


def _raised(exc: BaseException, cause: BaseException | None = None) -> BaseException:
    """`exc` as Python leaves it after `raise exc from cause` (chain and traceback set)."""
    try:
        raise exc from cause
    except BaseException as e:  # noqa: BLE001
        return e


def _network_errors() -> list[BaseException]:
    import httpx
    import httpx2
    import requests
    import urllib3
    from huggingface_hub.errors import HfHubHTTPError

    return [
        httpx.ConnectError("connection refused"),
        httpx.ReadTimeout("read timed out"),
        httpx2.ConnectError("connection refused"),
        httpx2.RemoteProtocolError("server disconnected"),
        requests.exceptions.ConnectionError("connection aborted"),
        requests.exceptions.ReadTimeout("read timed out"),
        urllib3.exceptions.NewConnectionError(None, "failed to establish a new connection"),
        ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"),
        OSError(errno.ENETUNREACH, "Network is unreachable"),
        TimeoutError("timed out"),
        socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"),
        HfHubHTTPError("503 Server Error", response=_hub_response(503)),
        HfHubHTTPError("429 Too Many Requests", response=_hub_response(429)),
    ]


@pytest.mark.parametrize("i", range(13))
def test_network_trouble_is_retried(online, i):
    exc = _network_errors()[i]
    assert is_retryable(exc), repr(exc)
    # and wherever it sits in the cause chain
    assert is_retryable(_raised(RuntimeError("download failed"), exc)), repr(exc)


def _permanent_errors() -> list[BaseException]:
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    from ruinstruct.config import ConfigError

    return [
        OfflineModeIsEnabled("Cannot reach https://huggingface.co: offline mode is enabled."),
        RepositoryNotFoundError("404 Repository Not Found", response=_hub_response(404)),
        GatedRepoError("401 gated", response=_hub_response(401)),
        RevisionNotFoundError("404 Revision Not Found", response=_hub_response(404)),
        HfHubHTTPError("403 Forbidden", response=_hub_response(403)),
        socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
        FileNotFoundError(errno.ENOENT, "No such file or directory", "data/x.jsonl"),
        ValueError("bad value"),
        KeyError("messages"),
        ConfigError("c.yaml: invalid config"),
        # datasets re-raises offline mode as a plain ConnectionError and drops the cause
        ConnectionError("Couldn't reach 'databricks/databricks-dolly-15k' on the Hub (OfflineModeIsEnabled)"),
    ]


@pytest.mark.parametrize("i", range(11))
def test_permanent_errors_fail_at_once(online, i):
    exc = _permanent_errors()[i]
    assert not is_retryable(exc), repr(exc)
    assert not is_retryable(_raised(RuntimeError("download failed"), exc)), repr(exc)


def test_a_permanent_cause_wins_over_a_network_symptom(online):
    from huggingface_hub.errors import OfflineModeIsEnabled

    # OfflineModeIsEnabled is itself a ConnectionError
    assert not is_retryable(_raised(ConnectionError("Couldn't reach the Hub"), OfflineModeIsEnabled("offline")))


def test_a_cache_miss_caused_by_the_network_is_retried(online):
    import httpx2
    from huggingface_hub.errors import LocalEntryNotFoundError

    miss = _raised(LocalEntryNotFoundError("file not in the cache and the Hub unreachable"), httpx2.ConnectError("refused"))
    assert is_retryable(miss)
    assert not is_retryable(LocalEntryNotFoundError("file not in the cache"))


def test_under_offline_mode_nothing_is_retried(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert not is_retryable(ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"))


def test_datasets_offline_error_is_not_retried(monkeypatch, tmp_path):
    """The exception datasets.load_dataset really raises for an uncached hub dataset offline."""
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    import datasets

    with pytest.raises(Exception) as info:
        datasets.load_dataset("ruinstruct-tests/no-such-dataset", split="train")
    assert isinstance(info.value, ConnectionError)  # the symptom looks like network trouble
    assert not is_retryable(info.value)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("HF_DATASETS_OFFLINE")
    assert not is_retryable(info.value)  # its message alone says offline mode


# ---- describe: the CLI's messages -------------------------------------------------------------

def test_missing_file_names_the_option_however_it_was_spelled(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exc = FileNotFoundError(errno.ENOENT, "No such file or directory", "in.jsonl")
    assert describe(exc, ["translate", "--input", "./in.jsonl", "--output", "o.jsonl"]) == \
        "--input ./in.jsonl: no such file or directory"
    assert describe(exc, ["translate", f"--input={tmp_path}/in.jsonl"]) == \
        f"--input {tmp_path}/in.jsonl: no such file or directory"
    assert describe(exc, ["data", "--config", "c.yaml"]) == "in.jsonl: no such file or directory"


def test_not_a_model_names_the_option(tmp_path, monkeypatch):
    from transformers import AutoTokenizer

    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "weights.bin").write_bytes(b"0")
    cases = {
        "./no-such-model": "no such folder",
        "./empty": "the folder has no config.json",
        "./weights.bin": "a file, not a folder",
    }
    for model, reason in cases.items():
        try:
            AutoTokenizer.from_pretrained(model)  # what the translator loads first
        except (OSError, ValueError, TypeError) as e:
            exc = e
        else:
            pytest.fail(f"{model} loaded")
        msg = describe(exc, ["translate", "--model", model, "--input", "x.jsonl"])
        assert msg.startswith(f"--model {model}: not a model folder or hub id ("), msg
        assert reason in msg, msg
        assert "\n" not in msg
        # from a profile there is no option to name
        assert describe(exc, ["data", "--config", "c.yaml"]).startswith(f"translation.model {model}: not a model")


def test_hub_id_offline_says_so(monkeypatch):
    from transformers import AutoConfig

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError) as info:
        AutoConfig.from_pretrained("ruinstruct-tests/no-such-model")
    msg = describe(info.value, ["translate", "-m", "ruinstruct-tests/no-such-model"])
    assert msg == ("-m ruinstruct-tests/no-such-model: not a model folder or hub id (not in the local "
                   "Hugging Face cache, and HF_HUB_OFFLINE=1 forbids a download)")


def test_expected_errors_keep_their_message_and_bugs_get_none():
    from ruinstruct.config import ConfigError
    from ruinstruct.mix import LicenseError

    assert describe(UserError("in.jsonl: no valid dialog (3 rejected)")) == "in.jsonl: no valid dialog (3 rejected)"
    assert describe(ConfigError("c.yaml: invalid config\n  mix.seed: bad")) == "c.yaml: invalid config\n  mix.seed: bad"
    assert describe(LicenseError("saiga/x is non-commercial")) == "saiga/x is non-commercial"
    assert describe(ValueError("a bug")) is None
    assert describe(KeyError("id")) is None
    assert describe(_raised(RuntimeError("a bug"))) is None
