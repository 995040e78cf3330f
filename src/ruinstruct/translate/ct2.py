"""The CTranslate2 backend (`translation.backend: ctranslate2`): the same checkpoint, converted
once into a CTranslate2 model folder, behind the same translator protocol as `HFTranslator`.

- `convert(cfg)` makes (or finds) the converted folder: one per model identity, revision,
  compute type (the quantization it is converted to) and CTranslate2 major version, under
  `ct2_root(cfg)`. It converts into a temporary folder, writes a completion marker last, then
  renames the folder into place; a lock file makes a second process wait and reuse the result;
  a folder without its marker (an interrupted or foreign conversion) is converted again.
- The vocabulary is the token of every model id in id order (`convert_ids_to_tokens`). The
  converter's own M2M100 vocabulary comes from `tokenizer.get_vocab()`, which in transformers 5
  lacks the language codes (no longer special tokens), and it fails with "Source vocabulary has
  size 1011 but the model expected 1019" on the tiny model.
- `CT2Translator` is an `HFTranslator` whose generation step runs CTranslate2: the tokenizer,
  the long-text splitting, de-duplication, the token-budget batch plan, the output length per
  batch, the language setup and the CUDA out-of-memory halving are the HF path's own code.

Heavy imports (ctranslate2, transformers, torch) happen inside functions.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import math
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, NamedTuple

from ..config import TranslationConfig, _model_identity
from ..errors import UserError
from .engine import _LEADING_LANG_TOKEN, HFTranslator, _Generated, model_positions

log = logging.getLogger(__name__)

#: Written last into a converted folder (before it is renamed into place): its presence is what
#: makes a folder usable.
MARKER = "ruinstruct-ct2.json"

#: compute_type "auto" on a CPU. Measured with bench/translate.py --backends-only on this project's
#: 2-core machine (tiny M2M100 of make-tiny, 2,000 paragraphs, 2 workers of 1 thread, best of 3):
#: float32 2.215 s, int8 1.746 s (transformers batched 14.2 s in the same run). A real model on a
#: CPU is bound by memory bandwidth, which int8 weights quarter. int8 changes the tiny model's
#: output (1,122 of 2,000 paragraphs identical to fp32): profiles that want fp32's exact output
#: say float32.
CPU_AUTO = "int8"


# --------------------------------------------------------------------------- compute type, device


def cuda_devices() -> int:
    import ctranslate2

    try:
        return ctranslate2.get_cuda_device_count()
    except Exception:  # a CPU-only build or a broken driver: no CUDA for CTranslate2
        return 0


def resolve_device(device: str) -> str:
    """"auto": CUDA when CTranslate2 sees a device (its own CUDA runtime, not torch's)."""
    if device == "auto":
        return "cuda" if cuda_devices() > 0 else "cpu"
    return device


def resolve_compute_type(compute_type: str, device: str) -> str:
    """The compute type actually used. "auto": int8_float16 on CUDA (float16, then int8, where
    the GPU lacks those kernels); on CPU `CPU_AUTO`, the faster of float32 and int8 measured on
    this project's CPU (figures at `CPU_AUTO`). An explicit type the device cannot run falls back
    in CTranslate2's own order (int8_float16 -> float16 -> int8; int8 -> int16 on CPU; else
    float32), with a warning; the id names the type used."""
    import ctranslate2

    if device == "cuda" and cuda_devices() == 0:
        raise UserError("translation.device: cuda, but CTranslate2 sees no CUDA device "
                        "(no GPU, a driver older than its CUDA runtime, or a CPU-only build); use cpu or auto")
    try:
        supported = set(ctranslate2.get_supported_compute_types(device))
    except (RuntimeError, ValueError) as e:
        raise UserError(f"translation.device: {device}: {str(e).splitlines()[0]}") from None
    if compute_type == "auto":
        preferred = (["int8_float16", "float16", "int8", "float32"] if device == "cuda"
                     else [CPU_AUTO, "float32"])
    else:
        preferred = {
            "int8_float16": ["int8_float16", "float16", "int8", "float32"],
            "float16": ["float16", "float32"],
            "bfloat16": ["bfloat16", "float32"],
            "int8": ["int8", "float32"] if device == "cuda" else ["int8", "int16", "float32"],
        }.get(compute_type, [compute_type])
    used = next((ct for ct in preferred if ct in supported), "float32")
    if compute_type != "auto" and used != compute_type:
        log.warning("translation.compute_type %s is not supported on %s; using %s", compute_type, device, used)
    return used


#: The cuBLAS that CTranslate2 4.x dlopens on CUDA (its wheels are built with CUDA 12).
CUBLAS_SONAMES = ("libcublasLt.so.12", "libcublas.so.12")


def load_cuda_cublas() -> None:
    """Make CUDA 12's cuBLAS loadable for CTranslate2: from the library path when it is there,
    else from the `nvidia-cublas-cu12` wheel (extra `ct2-cuda`), loaded by full path and global,
    so that CTranslate2's later dlopen of the soname finds it in the process. A machine with only
    CUDA 13 (torch cu130) has neither, and CTranslate2 would fail at the first batch with
    "Library libcublas.so.12 is not found"; this fails first, in one line, with the fix."""
    import ctypes
    import importlib.util

    def load(paths: list[str]) -> bool:
        try:
            for path in paths:
                ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
            return True
        except OSError:
            return False

    if load(list(CUBLAS_SONAMES)):
        return
    spec = importlib.util.find_spec("nvidia")
    for root in (spec.submodule_search_locations or []) if spec else []:
        lib = Path(root) / "cublas" / "lib"
        if load([str(lib / name) for name in CUBLAS_SONAMES]):
            return
    raise UserError("translation.device: cuda with backend ctranslate2 needs CUDA 12's cuBLAS "
                    "(libcublas.so.12), which this machine lacks: pip install 'ruinstruct[ct2-cuda]' "
                    "(nvidia-cublas-cu12)")


# --------------------------------------------------------------------------- conversion


def ct2_root(cfg: TranslationConfig) -> Path:
    """`translation.ct2_dir`, else beside the Hugging Face cache: $HF_HOME/ctranslate2."""
    if cfg.ct2_dir:
        return Path(cfg.ct2_dir).expanduser()
    hf_home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface"
    )
    return Path(hf_home) / "ctranslate2"


def writable_root(cfg: TranslationConfig) -> Path:
    """`ct2_root(cfg)`, created; a `UserError` naming the setting when it cannot be written."""
    root = ct2_root(cfg)
    try:
        root.mkdir(parents=True, exist_ok=True)
        if not os.access(root, os.W_OK):
            raise PermissionError(errno.EACCES, "not writable", str(root))
    except OSError as e:
        where = "translation.ct2_dir" if cfg.ct2_dir else "the CTranslate2 folder under HF_HOME"
        raise UserError(f"{where}: cannot write converted models to {root}: {e.strerror or e}") from None
    return root


def check_writable(cfg: TranslationConfig) -> None:
    """The data flow's preflight: a bad ct2_dir fails in one line before any shard. A folder that
    already holds this conversion is used as it is, so it may be read-only (a shared cache)."""
    quantization = resolve_compute_type(cfg.compute_type, resolve_device(cfg.device))
    if not is_converted(ct2_root(cfg) / model_key(cfg, quantization)):
        writable_root(cfg)


def model_key(cfg: TranslationConfig, quantization: str) -> str:
    """The converted folder's name: the model's name, revision, a hash of its identity (a local
    folder by content, a hub id by name) and of the CTranslate2 major version, and the quantization."""
    import hashlib

    import ctranslate2

    name = Path(cfg.model).name if os.path.isdir(cfg.model) else cfg.model.replace("/", "--")
    major = ctranslate2.__version__.split(".")[0]
    digest = hashlib.sha256(f"{_model_identity(cfg.model)}|ct2-{major}".encode()).hexdigest()[:12]
    # a revision may be a branch with slashes (refs/pr/7): one path component all the same
    revision = (cfg.revision or "main").replace("/", "--")
    return f"{name}@{revision}-{digest}-{quantization}"


def id_order_vocabulary(tokenizer: Any, vocab_size: int) -> list[str]:
    """The token of every id below `vocab_size`, in id order. Ids past the tokenizer's (fairseq's
    padding rows, which the tokenizer reports as its unknown token) get the converter's own
    placeholder names, so that every entry is unique."""
    tokens = tokenizer.convert_ids_to_tokens(list(range(vocab_size)))
    unk, unk_id = tokenizer.unk_token, tokenizer.unk_token_id
    out: list[str] = []
    for i, t in enumerate(tokens):
        if t is None or (t == unk and i != unk_id):
            t = f"madeupword{i}"
        out.append(t)
    seen: set[str] = set()
    dupes = [t for t in out if t in seen or seen.add(t)]  # type: ignore[func-returns-value]
    if dupes:
        raise ValueError(f"tokenizer maps several ids to the same token(s) {dupes[:5]}: no CTranslate2 vocabulary")
    return out


_REGISTRY_LOCK = threading.Lock()


@contextlib.contextmanager
def _id_order_loaders():
    """Within the block, CTranslate2's loaders for M2M100-family configs (WMT21, NLLB) take their
    vocabulary from `id_order_vocabulary`: only that step changes, through the converter's own
    `register_loader`, and the original loaders come back afterwards."""
    from ctranslate2.converters import transformers as ct2t

    def with_id_order(base: type) -> type:
        class IdOrder(base):  # type: ignore[misc, valid-type]
            def get_vocabulary(self, model, tokenizer):
                return id_order_vocabulary(tokenizer, model.config.vocab_size)

        IdOrder.__name__ = f"IdOrder{base.__name__}"
        return IdOrder

    with _REGISTRY_LOCK:
        saved = dict(ct2t._MODEL_LOADERS)
        try:
            for name, loader in saved.items():
                if isinstance(loader, ct2t.M2M100Loader):
                    ct2t.register_loader(name)(with_id_order(type(loader)))
            yield
        finally:
            ct2t._MODEL_LOADERS.clear()
            ct2t._MODEL_LOADERS.update(saved)


def _converter(cfg: TranslationConfig, quantization: str):
    from ctranslate2.converters import TransformersConverter

    class Converter(TransformersConverter):
        def load_tokenizer(self, tokenizer_class, model_name_or_path, **kwargs):
            # the converter passes the revision to the model only
            if cfg.revision:
                kwargs["revision"] = cfg.revision
            return tokenizer_class.from_pretrained(model_name_or_path, **kwargs)

    # half the converter's memory for a half-precision target (WMT21: ~10 GB of RAM instead of ~19)
    half = quantization in ("float16", "int8_float16")
    return Converter(cfg.model, revision=cfg.revision, load_as_float16=half)


def is_converted(path: Path) -> bool:
    return (path / MARKER).is_file()


@contextlib.contextmanager
def _file_lock(path: Path):
    """An exclusive lock on `path` (created if missing), held until the block ends or the process
    dies (flock: a killed converter never leaves a stale lock)."""
    with path.open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another process to finish %s", path.with_suffix(""))
            t0 = time.monotonic()
            fcntl.flock(fh, fcntl.LOCK_EX)
            log.info("lock %s acquired after %.1f s", path, time.monotonic() - t0)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def convert(cfg: TranslationConfig, quantization: str | None = None) -> Path:
    """The CTranslate2 folder of `cfg`'s model converted to `quantization` (default: the
    resolved compute type), converting it first unless a complete one exists."""
    if quantization is None:
        quantization = resolve_compute_type(cfg.compute_type, resolve_device(cfg.device))
    root = ct2_root(cfg)
    target = root / model_key(cfg, quantization)
    if is_converted(target):
        return target
    writable_root(cfg)
    with _file_lock(root / f"{target.name}.lock"):
        if is_converted(target):  # another process converted it while this one waited
            return target
        # Under the lock nobody else converts this model: what is here is left by a conversion
        # that died (a kill, a full disk) and is redone from scratch.
        for stale in [target, *root.glob(f"{target.name}.tmp-*")]:
            if stale.exists():
                log.warning("removing incomplete CTranslate2 conversion %s", stale)
                shutil.rmtree(stale)
        tmp = Path(tempfile.mkdtemp(prefix=f"{target.name}.tmp-", dir=root))
        try:
            t0 = time.monotonic()
            out = tmp / "model"
            with _id_order_loaders():
                _converter(cfg, quantization).convert(str(out), quantization=quantization, force=True)
            _write_marker(out, cfg, quantization, time.monotonic() - t0)
            os.rename(out, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log.info("converted %s to CTranslate2 (%s) in %s", cfg.model, quantization, target)
    return target


def _write_marker(out: Path, cfg: TranslationConfig, quantization: str, seconds: float) -> None:
    import ctranslate2

    vocab = out / "shared_vocabulary.json"
    size = len(json.loads(vocab.read_text())) if vocab.is_file() else None
    info = {
        "model": cfg.model, "revision": cfg.revision, "quantization": quantization,
        "ctranslate2": ctranslate2.__version__, "vocabulary_size": size, "seconds": round(seconds, 2),
    }
    part = out / (MARKER + ".part")
    part.write_text(json.dumps(info, indent=2) + "\n")
    os.replace(part, out / MARKER)


# --------------------------------------------------------------------------- the translator


class _CT2Model(NamedTuple):
    """What `HFTranslator.model` holds on this backend: the CTranslate2 translator and the HF
    config (which the language setup and the position limits read)."""

    translator: Any
    config: Any
    path: Path


def is_cuda_oom(exc: BaseException) -> bool:
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


class CT2Translator(HFTranslator):
    """`Translator` (and `ScoringTranslator`) on CTranslate2. `cfg` is resolved on construction
    (`engine.resolve_config`): `.id` names the backend and the compute type really used.

    CPU threads: $RUINSTRUCT_CT2_THREADS, else torch's thread count, as that many CTranslate2
    workers of one thread each, which run the planned batches in parallel (`_generate_all`).
    Measured on this project's 2-core machine (tiny M2M100, 2,000 of the bench's paragraphs,
    float32, single runs): 1 worker 3.2–4.0 s; 2 workers of 1 thread 1.8–2.2 s; 1 worker of 2
    threads 10.9–11.6 s, because the tiny model's matrices are too small to split across OpenMP
    threads.

    Scores are `HFTranslator`'s: the mean log-probability of the generated tokens (the forced
    language token excluded, the end token included), recovered from CTranslate2's
    `return_scores` (see `_outputs`). The model converts on the first translate()."""

    def __init__(self, cfg: TranslationConfig | None = None):
        super().__init__((cfg or TranslationConfig()).model_copy(update={"backend": "ctranslate2"}))
        self.path: Path | None = None
        self.workers = 1
        self._prefix: list[str] | None = None

    def __repr__(self) -> str:
        return f"CT2Translator({self.id})"

    def load(self) -> None:
        if self._ready:
            return
        from transformers import AutoConfig, AutoTokenizer

        cfg = self.cfg
        self.path = convert(cfg, cfg.compute_type)
        if self._tok is None:
            self._tok = AutoTokenizer.from_pretrained(cfg.model, revision=cfg.revision)
        hf_config = AutoConfig.from_pretrained(cfg.model, revision=cfg.revision)
        self.device = cfg.device
        threads = int(os.environ.get("RUINSTRUCT_CT2_THREADS", "0")) or self._default_threads()
        if self.device == "cpu":
            self.workers, intra = threads, 1
        else:  # one worker per GPU: a batch that does not fit halves (HFTranslator._run_batch)
            self.workers, intra = 1, threads
            load_cuda_cublas()
        translator = self._new_translator(cfg.compute_type, intra)
        self._model = _CT2Model(translator, hf_config, self.path)
        _, target_positions = model_positions(hf_config)
        if target_positions is not None:
            self._max_new_cap = target_positions - 1
        self._setup_languages()
        if self.forced_bos_token_id is not None:
            self._prefix = self._tok.convert_ids_to_tokens([self.forced_bos_token_id])
        self._ready = True
        log.info("translator %s loaded on %s (CTranslate2 %s)", self.id, self.device, cfg.compute_type)

    def _new_translator(self, compute_type: str, intra: int) -> Any:
        """CTranslate2 sets the OpenMP thread count of the thread that builds a translator to
        `intra_threads`, and torch shares that OpenMP runtime: without the restore, every torch
        model this process runs afterwards (the transformers path, the filters' models) would be
        left on one thread, and the next translator would default to one worker."""
        import ctranslate2
        import torch

        torch_threads = torch.get_num_threads()
        try:
            return ctranslate2.Translator(
                str(self.path), device=self.device, compute_type=compute_type,
                inter_threads=self.workers, intra_threads=intra,
            )
        finally:
            torch.set_num_threads(torch_threads)

    def _default_threads(self) -> int:
        """On CPU torch's thread count, so both backends use the same cores (CTranslate2's own
        default, 4, oversubscribes a 2-core machine); on CUDA CTranslate2's default (0)."""
        if self.device != "cpu":
            return 0
        import torch

        return torch.get_num_threads()

    def _generate_all(self, seg_ids: list[list[int]]) -> list[_Generated]:
        """With several CPU workers, every planned batch is queued at once (CTranslate2's
        asynchronous mode) and the workers take them in turn; else batch by batch, as on the
        transformers path (which is where CUDA's out-of-memory halving lives)."""
        if self.workers <= 1:
            return super()._generate_all(seg_ids)
        queued = [(batch, self._submit([seg_ids[i] for i in batch], asynchronous=True))
                  for batch in self.plan_batches([len(s) for s in seg_ids])]
        outputs: list[_Generated | None] = [None] * len(seg_ids)
        for batch, pending in queued:
            results = [r.result() for r in pending]
            for i, out in zip(batch, self._outputs([seg_ids[i] for i in batch], results), strict=True):
                outputs[i] = out
        return outputs  # type: ignore[return-value]

    def _generate_batch(self, seqs: list[list[int]]) -> list[_Generated]:
        import torch

        try:
            results = self._submit(seqs)
        except RuntimeError as e:
            if is_cuda_oom(e):  # HFTranslator._run_batch halves the batch on this one
                raise torch.cuda.OutOfMemoryError(str(e)) from e
            raise
        return self._outputs(seqs, results)

    def _submit(self, seqs: list[list[int]], asynchronous: bool = False) -> list[Any]:
        """One `translate_batch` call for `seqs` (one batch of the plan): its results, or with
        `asynchronous` its pending results."""
        tok = self.tokenizer
        # generate()'s max_new_tokens counts the forced language token and the end token; so does
        # CTranslate2's max_decoding_length (the prefix included, the end token included)
        max_len = self.max_new_tokens(max(len(s) for s in seqs))
        return self.model.translator.translate_batch(
            [tok.convert_ids_to_tokens(s) for s in seqs],
            target_prefix=[self._prefix] * len(seqs) if self._prefix else None,
            asynchronous=asynchronous,
            **self._options(max_len),
        )

    def _outputs(self, seqs: list[list[int]], results: list[Any]) -> list[_Generated]:
        tok = self.tokenizer
        self.generate_calls += 1
        self.tokens_in += sum(len(s) for s in seqs)
        forced = 1 if self._prefix else 0
        out: list[_Generated] = []
        for res in results:
            ids = tok.convert_tokens_to_ids(res.hypotheses[0])  # the prefix, and the end token if reached
            self.tokens_out += len(ids)
            text = tok.decode([t for t in ids if t not in self._drop_ids], skip_special_tokens=True)
            # CTranslate2's score is the log-probability sum over the hypothesis' tokens (prefix
            # included, at log 1 = 0; the end token included) divided by their number
            # (length_penalty=1): the sum back, and the count without the forced prefix.
            n = len(ids) - forced
            total = float(res.scores[0]) * len(ids) if res.scores and n > 0 else math.nan
            out.append(_Generated(_LEADING_LANG_TOKEN.sub("", text).strip(), total, max(n, 0)))
        return out

    def _options(self, max_len: int) -> dict[str, Any]:
        cfg = self.cfg
        return {
            "beam_size": cfg.num_beams,
            "repetition_penalty": cfg.repetition_penalty,
            "no_repeat_ngram_size": cfg.no_repeat_ngram_size,
            "max_decoding_length": max_len,
            "max_input_length": 0,  # the HF path's splitting already bounds the inputs
            "return_scores": True,
            "return_end_token": True,
            "length_penalty": 1.0,  # the normalisation _outputs undoes; generate()'s default too
        }
