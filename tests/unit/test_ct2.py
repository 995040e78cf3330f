"""The CTranslate2 backend on the tiny trained M2M100 (real conversion and decoding, CPU)."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from ruinstruct.config import TranslationConfig
from ruinstruct.tiny import load_corpus
from ruinstruct.translate import ct2
from ruinstruct.translate.engine import (
    HFTranslator,
    Translation,
    load_translator,
    resolve_config,
    translator_id,
)

REPO = Path(__file__).resolve().parents[2]
OOM = "CUDA failed with error out of memory"


def tiny_cfg(tiny_dir: Path, ct2_dir: Path, **kw) -> TranslationConfig:
    base = {"model": str(tiny_dir / "translator"), "device": "cpu", "dtype": "float32", "ct2_dir": str(ct2_dir),
            "backend": "ctranslate2", "compute_type": "float32", "max_input_tokens": 200}
    return TranslationConfig(**{**base, **kw})


@pytest.fixture(autouse=True)
def one_ct2_thread(monkeypatch):
    """One CPU worker: batch by batch, as the spies below expect (several workers: the test
    `test_cpu_workers_run_the_planned_batches_in_parallel`)."""
    monkeypatch.setenv("RUINSTRUCT_CT2_THREADS", "1")


@pytest.fixture(scope="module")
def ct2_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ct2")


@pytest.fixture(scope="module")
def converted(tiny_dir, ct2_dir) -> Path:
    return ct2.convert(tiny_cfg(tiny_dir, ct2_dir))


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return [en for en, _ in load_corpus()]


def make(tiny_dir, ct2_dir, **kw) -> ct2.CT2Translator:
    tr = load_translator(tiny_cfg(tiny_dir, ct2_dir, **kw))
    assert isinstance(tr, ct2.CT2Translator)
    return tr


class SpyCT2:
    """Stands in for the ctranslate2.Translator: records each translate_batch call's batch size
    and options; `fail_above` makes batches larger than it fail with CUDA's OOM error."""

    def __init__(self, real, fail_above: int | None = None):
        self.real, self.fail_above, self.calls = real, fail_above, []

    def translate_batch(self, source, target_prefix=None, **options):
        self.calls.append({"size": len(source), "width": max(map(len, source)), "prefix": target_prefix, **options})
        if self.fail_above is not None and len(source) > self.fail_above:
            raise RuntimeError(OOM)
        return self.real.translate_batch(source, target_prefix=target_prefix, **options)


def spy(tr: ct2.CT2Translator, fail_above: int | None = None) -> SpyCT2:
    tr.load()
    s = SpyCT2(tr._model.translator, fail_above)
    tr._model = tr._model._replace(translator=s)
    return s


# --------------------------------------------------------------------------- conversion


def test_vocabulary_is_the_token_of_every_id(tiny_dir, converted):
    """The stock converter's M2M100 vocabulary misses the language codes under transformers 5;
    the converted one has a token per model id, in id order, the language codes at their ids."""
    from transformers import AutoConfig, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_dir / "translator")
    size = AutoConfig.from_pretrained(tiny_dir / "translator").vocab_size
    assert len(tok.get_vocab()) < size  # what the stock converter starts from
    vocab = json.loads((converted / "shared_vocabulary.json").read_text())
    assert vocab == ct2.id_order_vocabulary(tok, size)
    assert len(vocab) == size == 1019 and len(set(vocab)) == size
    assert [vocab[tok.get_lang_id(c)] for c in ("en", "ru")] == ["__en__", "__ru__"]
    assert vocab[: tok.unk_token_id + 1] == ["<s>", "<pad>", "</s>", "<unk>"]
    assert vocab[-1] == "madeupword1018"
    marker = json.loads((converted / ct2.MARKER).read_text())
    assert marker["vocabulary_size"] == 1019 and marker["quantization"] == "float32"


def test_stock_converter_fails_without_the_fix(tiny_dir, tmp_path):
    from ctranslate2.converters import TransformersConverter

    with pytest.raises(ValueError, match="vocabulary 0 has size 1011 but the model expected a vocabulary of size 1019"):
        TransformersConverter(str(tiny_dir / "translator")).convert(str(tmp_path / "out"), force=True)
    # the fix is scoped: the converter's own loaders are back afterwards
    from ctranslate2.converters import transformers as ct2t

    assert type(ct2t._MODEL_LOADERS["M2M100Config"]) is ct2t.M2M100Loader


def test_converted_once_per_model_revision_and_quantization(tiny_dir, ct2_dir, converted, monkeypatch):
    cfg = tiny_cfg(tiny_dir, ct2_dir)
    stamp = (converted / ct2.MARKER).stat().st_mtime_ns
    monkeypatch.setattr(ct2, "_converter", lambda *a: pytest.fail("converted again"))
    assert ct2.convert(cfg) == converted  # the same folder, reused
    assert ct2.convert(cfg.model_copy(update={"num_beams": 4, "max_batch_size": 3})) == converted
    assert (converted / ct2.MARKER).stat().st_mtime_ns == stamp
    keys = {ct2.model_key(cfg, "float32"), ct2.model_key(cfg, "int8"),
            ct2.model_key(cfg.model_copy(update={"revision": "v2"}), "float32")}
    assert len(keys) == 3 and converted.name in keys
    assert converted.parent == ct2_dir and converted.name.startswith("translator@main-")
    assert not list(ct2_dir.glob("*.tmp-*"))  # the temporary folder went away with the rename


def test_default_folder_is_beside_the_hf_cache(monkeypatch, tmp_path):
    cfg = TranslationConfig(model="m")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert ct2.ct2_root(cfg) == tmp_path / "hf" / "ctranslate2"
    monkeypatch.delenv("HF_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert ct2.ct2_root(cfg) == tmp_path / "xdg" / "huggingface" / "ctranslate2"
    assert ct2.ct2_root(cfg.model_copy(update={"ct2_dir": str(tmp_path / "mine")})) == tmp_path / "mine"


def test_folder_without_marker_is_converted_again(tiny_dir, tmp_path):
    """What a conversion that died leaves (a half-written folder without its marker, a temporary
    folder) is never used: the next convert() removes it and converts from scratch."""
    cfg = tiny_cfg(tiny_dir, tmp_path, compute_type="int8")
    target = tmp_path / ct2.model_key(cfg, "int8")
    target.mkdir()
    (target / "model.bin").write_bytes(b"half written")
    stale = tmp_path / f"{target.name}.tmp-dead"
    (stale / "model").mkdir(parents=True)
    assert ct2.convert(cfg) == target
    assert ct2.is_converted(target) and (target / "model.bin").stat().st_size > 1000
    assert not stale.exists()
    assert json.loads((target / ct2.MARKER).read_text())["quantization"] == "int8"
    assert make(tiny_dir, tmp_path, compute_type="int8").translate(["Hello"])[0]


KILLED_CHILD = """
import sys, time
from pathlib import Path
from ruinstruct.config import TranslationConfig
from ruinstruct.translate import ct2
real = ct2._write_marker
def stall(out, *a):  # the model is written, its marker not yet: stop here until killed
    Path(sys.argv[2]).write_text(str(out))
    time.sleep(600)
ct2._write_marker = stall
ct2.convert(TranslationConfig.model_validate_json(sys.argv[1]))
"""


def test_killed_conversion_is_redone_and_the_waiter_converts(tiny_dir, tmp_path):
    """A converter killed (SIGKILL) mid-way: another process waiting on the lock meanwhile, gets
    it when the first dies, and converts afresh; nothing of the killed one is used."""
    cfg = tiny_cfg(tiny_dir, tmp_path)
    target = tmp_path / ct2.model_key(cfg, "float32")
    ready = tmp_path / "ready"
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_CHILD, cfg.model_dump_json(), str(ready)],
        cwd=REPO, start_new_session=True, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert child.poll() is None, child.stderr.read().decode()[-2000:]  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the child never reached the marker"
            time.sleep(0.1)
        half = Path(ready.read_text())
        assert (half / "model.bin").is_file() and not target.exists()  # converted, not yet in place
        result: dict = {}
        waiter = threading.Thread(target=lambda: result.update(path=ct2.convert(cfg)))
        waiter.start()
        waiter.join(1.0)
        assert waiter.is_alive()  # waiting for the child's lock
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(10)
        waiter.join(120)
        assert not waiter.is_alive()
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait(10)
    assert result["path"] == target and ct2.is_converted(target)
    assert not half.parent.exists() and not list(tmp_path.glob("*.tmp-*"))  # the killed one's folder removed
    vocab = json.loads((target / "shared_vocabulary.json").read_text())
    assert len(vocab) == 1019


# --------------------------------------------------------------------------- id and config


def test_translator_id_names_backend_and_resolved_compute_type(tiny_dir, tmp_path):
    base = TranslationConfig(model="m", device="cpu", dtype="float32", max_input_tokens=100)
    c32 = base.model_copy(update={"backend": "ctranslate2", "compute_type": "float32"})
    ids = {translator_id(base), translator_id(c32),
           translator_id(c32.model_copy(update={"compute_type": "int8"})),
           translator_id(c32.model_copy(update={"compute_type": "int8_float16"}))}
    assert len(ids) == 4
    # what plays no part in a translation stays out: torch's dtype on this backend, the folder
    assert translator_id(c32.model_copy(update={"dtype": "bfloat16", "ct2_dir": "/x"})) == translator_id(c32)
    # the transformers path's ids (and its caches) are what they were before the backend choice
    assert translator_id(base.model_copy(update={"compute_type": "int8", "ct2_dir": "/x"})) == translator_id(base)
    assert "backend" not in base.generation_key() and c32.generation_key()["backend"] == "ctranslate2"

    auto = tiny_cfg(tiny_dir, tmp_path, compute_type="auto")
    resolved = resolve_config(auto)
    assert resolved.compute_type == ct2.CPU_AUTO and resolved.device == "cpu"
    assert resolve_config(resolved) == resolved  # idempotent
    tr = load_translator(auto)
    assert isinstance(tr, ct2.CT2Translator) and tr.id == resolved.translator_id != auto.translator_id
    assert tr.id == translator_id(auto.model_copy(update={"compute_type": ct2.CPU_AUTO}))
    assert tr._model is None  # nothing converted or loaded before the first translate()
    assert isinstance(load_translator(auto.model_copy(update={"backend": "transformers"})), HFTranslator)


def test_compute_type_resolution():
    assert ct2.resolve_compute_type("auto", "cpu") == ct2.CPU_AUTO
    assert ct2.resolve_compute_type("float32", "cpu") == "float32"
    assert ct2.resolve_compute_type("int8", "cpu") == "int8"
    # a CPU has no fp16 kernels: the id names what really ran
    assert ct2.resolve_compute_type("int8_float16", "cpu") == "int8"
    assert ct2.resolve_compute_type("float16", "cpu") == "float32"


@pytest.mark.parametrize("supported, asked, used", [
    ({"float32", "float16"}, "int8_float16", "float16"),  # a GPU without int8 kernels (P100)
    ({"float32", "float16"}, "auto", "float16"),
    ({"float32", "int8"}, "auto", "int8"),  # int8 but no fp16 kernels
    ({"float32", "int8", "int8_float16", "float16"}, "auto", "int8_float16"),
    ({"float32"}, "bfloat16", "float32"),
])
def test_cuda_compute_type_falls_back_in_ctranslate2s_order(monkeypatch, caplog, supported, asked, used):
    import ctranslate2

    monkeypatch.setattr(ct2, "cuda_devices", lambda: 1)
    monkeypatch.setattr(ctranslate2, "get_supported_compute_types", lambda device: supported)
    assert ct2.resolve_compute_type(asked, "cuda") == used
    warned = [r.getMessage() for r in caplog.records if "not supported" in r.getMessage()]
    assert warned == ([] if asked in ("auto", used) else
                      [f"translation.compute_type {asked} is not supported on cuda; using {used}"])


def test_cuda_without_a_device_is_one_line_naming_the_field(monkeypatch):
    import ctranslate2

    from ruinstruct.errors import UserError

    monkeypatch.setattr(ct2, "cuda_devices", lambda: 0)
    with pytest.raises(UserError, match=r"^translation\.device: cuda, but CTranslate2 sees no CUDA device"):
        ct2.resolve_compute_type("auto", "cuda")

    def broken(device):
        raise RuntimeError("CUDA failed with error CUDA driver version is insufficient for CUDA runtime version\nmore")

    monkeypatch.setattr(ct2, "cuda_devices", lambda: 1)
    monkeypatch.setattr(ctranslate2, "get_supported_compute_types", broken)
    with pytest.raises(UserError, match=r"^translation\.device: cuda: CUDA failed with error CUDA driver version is insufficient for CUDA runtime version$"):
        ct2.resolve_compute_type("float16", "cuda")


def test_a_revision_with_slashes_is_one_folder_name():
    cfg = TranslationConfig(model="facebook/wmt21-dense-24-wide-en-x", revision="refs/pr/7")
    key = ct2.model_key(cfg, "int8")
    assert "/" not in key and key.startswith("facebook--wmt21-dense-24-wide-en-x@refs--pr--7-")


def test_preflight_reuses_a_converted_folder_without_writing(tiny_dir, ct2_dir, converted, monkeypatch):
    """A shared, read-only cache that already holds the conversion is fine; any other compute
    type needs a writable folder."""
    cfg = tiny_cfg(tiny_dir, ct2_dir)
    checked = []
    monkeypatch.setattr(ct2, "writable_root", lambda c: checked.append(c.compute_type))
    ct2.check_writable(cfg)
    assert checked == []
    ct2.check_writable(cfg.model_copy(update={"compute_type": "int8"}))
    assert checked == ["int8"]


# --------------------------------------------------------------------------- translations


def bench_paragraphs(n: int) -> list[str]:
    """The benchmark's own paragraphs (bench/translate.py make_paragraphs)."""
    spec = importlib.util.spec_from_file_location("bench_translate", REPO / "bench" / "translate.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.make_paragraphs(n)


def hits_cap_hf(hf: HFTranslator, text: str) -> bool:
    """Decoded alone with its own length cap, the text never reaches the end token."""
    ids = hf.encode([text])[0]
    x = torch.tensor([ids])
    new = hf._generate(x, torch.ones_like(x), hf.max_new_tokens(len(ids))).sequences[0].tolist()[1:]
    return not any(t in hf._eos_ids for t in new)


def hits_cap_ct2(ct: ct2.CT2Translator, text: str) -> bool:
    ids = ct.encode([text])[0]
    res = ct.model.translator.translate_batch(
        [ct.tokenizer.convert_ids_to_tokens(ids)], target_prefix=[ct._prefix], **ct._options(ct.max_new_tokens(len(ids)))
    )
    return res[0].hypotheses[0][-1] != ct.tokenizer.eos_token


def test_fp32_agrees_with_transformers(tiny_dir, ct2_dir, converted):
    """On 300 of the benchmark's paragraphs (the demo's settings), CTranslate2 fp32 and
    transformers fp32 give the same text on >= 99% and the same score (4 decimals) where the
    texts agree; a differing paragraph is a degenerate loop that ran into the length cap."""
    paragraphs = bench_paragraphs(300)
    hf = load_translator(tiny_cfg(tiny_dir, ct2_dir, backend="transformers"))
    ct = make(tiny_dir, ct2_dir)
    ref, out = hf.translate_scored(paragraphs), ct.translate_scored(paragraphs)
    differ = [i for i, (a, b) in enumerate(zip(ref, out, strict=True)) if a.text != b.text]
    assert len(differ) <= 3, [(paragraphs[i], ref[i].text, out[i].text) for i in differ]
    for i in differ:
        assert hits_cap_hf(hf, paragraphs[i]) or hits_cap_ct2(ct, paragraphs[i]), paragraphs[i]
    same = [(a.logprob, b.logprob) for i, (a, b) in enumerate(zip(ref, out, strict=True)) if i not in differ]
    assert all(b is not None and abs(a - b) <= 2e-4 for a, b in same)
    assert ct.tokens_out == hf.tokens_out or differ
    assert ct.segments_generated == hf.segments_generated == len(set(paragraphs))


def test_batches_follow_the_token_budget_with_the_length_per_batch(tiny_dir, ct2_dir, converted, corpus):
    texts = corpus[:40]
    tr = make(tiny_dir, ct2_dir, max_batch_tokens=256, max_batch_size=8, num_beams=2,
              repetition_penalty=1.3, no_repeat_ngram_size=3, length_ratio=1.5, length_extra=5)
    s = spy(tr)
    tr.translate(texts)
    lengths = [len(ids) for ids in tr.encode(texts)]
    plan = tr.plan_batches(lengths)
    assert [c["size"] for c in s.calls] == [len(b) for b in plan] and len(plan) > 5
    for call, batch in zip(s.calls, plan, strict=True):
        width = max(lengths[i] for i in batch)
        assert call["width"] == width <= 256 // len(batch)
        assert call["max_decoding_length"] == tr.max_new_tokens(width) == -(-3 * width // 2) + 5
        assert call["prefix"] == [["__ru__"]] * len(batch)
        assert (call["beam_size"], call["repetition_penalty"], call["no_repeat_ngram_size"]) == (2, 1.3, 3)
        assert call["return_scores"] and call["max_input_length"] == 0


def test_cpu_workers_run_the_planned_batches_in_parallel(tiny_dir, ct2_dir, converted, corpus, monkeypatch):
    """$RUINSTRUCT_CT2_THREADS=2 on CPU: two single-thread CTranslate2 workers, every planned
    batch queued at once with its own length cap; the result is the one worker's, scores too."""
    texts = corpus[:60] + [corpus[0], "", " ".join(corpus[60:66])]
    settings = {"max_batch_tokens": 256, "max_batch_size": 8, "max_input_tokens": 40}
    expected = make(tiny_dir, ct2_dir, **settings).translate_scored(texts)
    monkeypatch.setenv("RUINSTRUCT_CT2_THREADS", "2")
    tr = make(tiny_dir, ct2_dir, **settings)
    tr.load()
    assert tr.workers == 2
    assert tr.model.translator.num_translators == 2
    s = spy(tr)
    assert tr.translate_scored(texts) == expected
    seg_lengths = [c["width"] for c in s.calls]
    assert len(s.calls) == tr.generate_calls > 5 and all(c["asynchronous"] for c in s.calls)
    assert [c["max_decoding_length"] for c in s.calls] == [tr.max_new_tokens(w) for w in seg_lengths]
    assert sum(c["size"] for c in s.calls) == tr.segments_generated


def test_loading_leaves_torch_threads_alone(tiny_dir, ct2_dir, converted, monkeypatch):
    """CTranslate2 sets the building thread's OpenMP count to intra_threads (1 on CPU here);
    torch shares that runtime, so without the restore the next translator would see one thread."""
    import torch

    monkeypatch.delenv("RUINSTRUCT_CT2_THREADS")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        first, second = make(tiny_dir, ct2_dir), make(tiny_dir, ct2_dir, compute_type="int8")
        first.load()
        assert torch.get_num_threads() == 2
        second.load()
        assert (first.workers, second.workers, torch.get_num_threads()) == (2, 2, 2)
    finally:
        torch.set_num_threads(before)


def test_order_duplicates_empty_and_scores(tiny_dir, ct2_dir, converted, corpus):
    tr = make(tiny_dir, ct2_dir)
    texts = [corpus[0], "", corpus[1], corpus[0], "  ", "Zebra quantum lollipop frobnicates the wardrobe."]
    out = tr.translate_scored(texts)
    assert out[1] == Translation("", None) and out[4] == Translation("  ", None)
    assert out[0] == out[3] and out[0].text != out[2].text
    assert tr.segments_generated == 3
    assert all(t.text and not t.text.startswith("__") for t in (out[0], out[2], out[5]))
    # a sentence the tiny model knows is far more certain than nonsense
    assert out[0].logprob > -0.05 > -0.3 > out[5].logprob  # type: ignore[operator]


def test_beam_search_and_penalties_are_ctranslate2s_options(tiny_dir, ct2_dir, converted, corpus):
    """The settings reach CTranslate2 as its own options. They are not the same algorithm as
    transformers' (README "Translation backend": transformers also penalises the decoder start
    token, and in beam search applies the penalty to log-probabilities), so outputs agree only
    mostly: here on sentences the tiny model learnt, where both decode the learnt translation."""
    texts = corpus[100:140]
    settings = {"num_beams": 3, "no_repeat_ngram_size": 3, "repetition_penalty": 1.2}
    ct = make(tiny_dir, ct2_dir, **settings)
    s = spy(ct)
    out = ct.translate(texts)
    assert {(c["beam_size"], c["repetition_penalty"], c["no_repeat_ngram_size"]) for c in s.calls} == {(3, 1.2, 3)}
    hf = load_translator(tiny_cfg(tiny_dir, ct2_dir, backend="transformers", **settings))
    ref = hf.translate(texts)
    assert sum(a == b for a, b in zip(ref, out, strict=True)) >= 0.9 * len(texts)


def test_long_text_is_split_like_the_transformers_path(tiny_dir, ct2_dir, converted, corpus):
    paragraph = " ".join(corpus[:6])
    hf = load_translator(tiny_cfg(tiny_dir, ct2_dir, backend="transformers", max_input_tokens=40))
    ct = make(tiny_dir, ct2_dir, max_input_tokens=40)
    assert ct.count_tokens(paragraph) > 40
    assert ct.translate_scored([paragraph]) == hf.translate_scored([paragraph])
    assert ct.segments_generated > 1


def test_cuda_oom_halves_the_batch_and_keeps_order(tiny_dir, ct2_dir, converted, corpus):
    texts = corpus[10:18]
    tr = make(tiny_dir, ct2_dir, max_batch_size=8, max_batch_tokens=10_000)
    expected = tr.translate(texts)
    s = spy(tr, fail_above=2)
    assert tr.translate(texts) == expected
    assert [c["size"] for c in s.calls] == [8, 4, 2, 2, 2, 2]
    assert tr.oom_retries == 2
    s.calls.clear()
    tr.translate(corpus[20:28])
    assert [c["size"] for c in s.calls] == [2, 2, 2, 2] and tr.oom_retries == 2


def test_oom_at_one_text_and_other_errors_reraise(tiny_dir, ct2_dir, converted, corpus):
    tr = make(tiny_dir, ct2_dir)
    spy(tr, fail_above=0)
    with pytest.raises(torch.cuda.OutOfMemoryError, match="out of memory"):
        tr.translate([corpus[0], corpus[1]])
    assert tr.oom_retries == 1

    class Broken:
        def translate_batch(self, *a, **kw):
            raise RuntimeError("some other failure")

    tr._model = tr._model._replace(translator=Broken())
    with pytest.raises(RuntimeError, match="some other failure"):
        tr.translate([corpus[2]])
    assert tr.oom_retries == 1


def test_unwritable_ct2_dir_is_one_line_naming_the_setting(tmp_path):
    from ruinstruct.config import TranslationConfig
    from ruinstruct.errors import UserError
    from ruinstruct.translate.ct2 import writable_root

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cfg = TranslationConfig(model=str(tmp_path), backend="ctranslate2", ct2_dir=str(blocker / "ct2"))
    with pytest.raises(UserError, match=r"^translation\.ct2_dir: cannot write converted models to .*ct2"):
        writable_root(cfg)
    ok = TranslationConfig(model=str(tmp_path), backend="ctranslate2", ct2_dir=str(tmp_path / "a" / "b"))
    assert writable_root(ok) == tmp_path / "a" / "b" and (tmp_path / "a" / "b").is_dir()


def _fake_cdll(monkeypatch, loadable):
    import ctypes

    loaded = []

    def cdll(path, mode=0):
        if not loadable(str(path)):
            raise OSError(f"{path}: cannot open shared object file")
        loaded.append((str(path), mode))

    monkeypatch.setattr(ctypes, "CDLL", cdll)
    return loaded


def test_cuda12_cublas_comes_from_the_nvidia_wheel_when_not_on_the_library_path(monkeypatch, tmp_path):
    """A CUDA 13 machine (torch cu130) has no libcublas.so.12 on its path: the copy that the
    `ct2-cuda` extra (nvidia-cublas-cu12) installs is loaded by full path, globally, Lt first."""
    import ctypes
    import importlib.machinery
    import importlib.util

    lib = tmp_path / "site" / "nvidia" / "cublas" / "lib"
    lib.mkdir(parents=True)
    spec = importlib.machinery.ModuleSpec("nvidia", None, is_package=True)
    spec.submodule_search_locations = [str(tmp_path / "elsewhere" / "nvidia"), str(lib.parents[1])]
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: spec if name == "nvidia" else real(name, *a))
    loaded = _fake_cdll(monkeypatch, lambda p: p.startswith(str(lib)))
    ct2.load_cuda_cublas()
    assert loaded == [(str(lib / "libcublasLt.so.12"), ctypes.RTLD_GLOBAL), (str(lib / "libcublas.so.12"), ctypes.RTLD_GLOBAL)]

    loaded = _fake_cdll(monkeypatch, lambda p: "/" not in p)  # on the library path: used as it is
    ct2.load_cuda_cublas()
    assert [p for p, _ in loaded] == ["libcublasLt.so.12", "libcublas.so.12"]


def test_no_cuda12_cublas_is_one_line_with_the_fix(monkeypatch):
    import importlib.util

    from ruinstruct.errors import UserError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "nvidia" else real(name, *a))
    _fake_cdll(monkeypatch, lambda p: False)
    with pytest.raises(UserError, match=r"^translation\.device: cuda with backend ctranslate2 needs CUDA 12's cuBLAS "
                                        r"\(libcublas\.so\.12\), which this machine lacks: pip install 'ruinstruct\[ct2-cuda\]'"):
        ct2.load_cuda_cublas()
