"""The translator: a protocol and its Hugging Face seq2seq implementation.

`HFTranslator` runs WMT21 (`facebook/wmt21-dense-24-wide-en-x`, class M2M100) and, by config,
NLLB or Marian checkpoints. Compared with the paper's code (one line per `generate` call, the
checkpoint's max_length=200 cap) it:

- translates each unique text once, sorted by token length and batched by a padded-token budget
  (`max_batch_tokens` >= batch size x longest input, at most `max_batch_size` texts);
- sets `max_new_tokens` per batch (`ceil(length_ratio * longest input) + length_extra`), so
  the checkpoint's max_length never cuts a long paragraph;
- splits a text over `max_input_tokens` at sentence boundaries (or whitespace), translates the
  chunks and joins them with one space;
- on CUDA out-of-memory halves the failing batch and retries (down to one text).

Always construct translators through `load_translator` (tests monkeypatch it). Heavy imports
(torch, transformers) happen inside functions; the model loads on the first translate().
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ..config import TranslationConfig

log = logging.getLogger(__name__)


@runtime_checkable
class Translator(Protocol):
    id: str

    def translate(self, texts: list[str]) -> list[str]: ...


def translator_id(cfg: TranslationConfig) -> str:
    """`model@revision#hash` where the hash covers every setting that changes the output text
    (and, for a local folder, the model's content), but not batching or device settings. The
    same id keys the paragraph cache and the Prefect shard cache (TranslationConfig.translator_id)."""
    return cfg.translator_id


def resolve_config(cfg: TranslationConfig) -> TranslationConfig:
    """`device`/`dtype` "auto" made concrete for this machine, so the translator id (and with it
    every cache key) tells a bf16 GPU translation from an fp32 CPU one."""
    device = resolve_device(cfg.device)
    dtype = str(resolve_dtype(cfg.dtype, device)).removeprefix("torch.")
    return cfg.model_copy(update={"device": "cuda" if device.startswith("cuda") else device, "dtype": dtype})


def load_translator(cfg: TranslationConfig) -> Translator:
    """The one factory the pipeline uses to get a translator (tests monkeypatch this)."""
    return HFTranslator(cfg)


# --------------------------------------------------------------------------- long texts

# End of a sentence: . ! ? (or …), optional closing quotes/brackets, whitespace, then a Latin or
# Cyrillic capital (optionally behind an opening quote/bracket).
_SENTENCE_END = re.compile(r"[.!?…]+[\"'»”’)\]]*(\s+)(?=[\"'«“„(\[]?[A-ZА-ЯЁ])")


def split_sentences(text: str) -> list[str]:
    """Split at sentence boundaries; the whitespace between sentences is dropped."""
    parts: list[str] = []
    start = 0
    for m in _SENTENCE_END.finditer(text):
        parts.append(text[start : m.start(1)])
        start = m.end(1)
    parts.append(text[start:])
    return [p for p in parts if p.strip()]


def _hard_cut(word: str, count: Callable[[str], int], limit: int) -> list[str]:
    """A single whitespace-free run over the limit: cut it into the longest prefixes that fit."""
    out: list[str] = []
    rest = word
    while rest and count(rest) > limit:
        lo, hi = 1, len(rest)  # largest n with count(rest[:n]) <= limit (at least 1 char)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if count(rest[:mid]) <= limit:
                lo = mid
            else:
                hi = mid - 1
        out.append(rest[:lo])
        rest = rest[lo:]
    if rest:
        out.append(rest)
    return out


def _pack(pieces: Sequence[str], count: Callable[[str], int], limit: int) -> list[str]:
    """Greedily join pieces with single spaces into chunks of at most `limit` tokens."""
    chunks: list[str] = []
    cur = ""
    for p in pieces:
        if not cur:
            cur = p
        elif count(f"{cur} {p}") <= limit:
            cur = f"{cur} {p}"
        else:
            chunks.append(cur)
            cur = p
    if cur:
        chunks.append(cur)
    return chunks


def split_long(text: str, count: Callable[[str], int], limit: int) -> list[str]:
    """Split `text` into chunks of at most `limit` tokens (as measured by `count`): at sentence
    boundaries first, at whitespace inside a sentence that alone is too long, and as a last resort
    inside a single over-long word. A text within the limit comes back unchanged."""
    if count(text) <= limit:
        return [text]
    pieces: list[str] = []
    for sent in split_sentences(text):
        if count(sent) <= limit:
            pieces.append(sent)
            continue
        words: list[str] = []
        for w in sent.split():
            words.extend([w] if count(w) <= limit else _hard_cut(w, count, limit))
        pieces.extend(_pack(words, count, limit))
    return _pack(pieces, count, limit)


# --------------------------------------------------------------------------- the HF translator


class _DropLengthWarning(logging.Filter):
    """transformers warns on every generate() that max_new_tokens overrides the checkpoint's
    max_length: that override is the point here."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith("Both `max_new_tokens`")


_FILTER_INSTALLED = False


def _quiet_generate_warnings() -> None:
    global _FILTER_INSTALLED
    if not _FILTER_INSTALLED:
        logging.getLogger("transformers.generation.utils").addFilter(_DropLengthWarning())
        _FILTER_INSTALLED = True


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_dtype(dtype: str, device: str):
    import torch

    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    return getattr(torch, dtype)


_LEADING_LANG_TOKEN = re.compile(r"^\s*__[a-z]{2,3}__\s*")  # e.g. "__ru__ " left by decode()


class HFTranslator:
    """`Translator` for Hugging Face seq2seq checkpoints (M2M100/WMT21, NLLB, Marian).

    Counters (cumulative): generate_calls (successful generate() calls), texts_translated (texts
    passed to translate/translate_naive), segments_generated (units actually sent to the model
    after de-duplication and splitting), tokens_in (non-pad input tokens), tokens_out (generated
    tokens, pad excluded), oom_retries (batches halved after CUDA OOM).
    """

    def __init__(self, cfg: TranslationConfig | None = None, *, model: Any = None, tokenizer: Any = None):
        self.cfg = cfg or TranslationConfig()
        self.id = translator_id(self.cfg)
        self._model = model
        self._tok = tokenizer
        self._ready = False
        self.device = "cpu"
        self.forced_bos_token_id: int | None = None
        self._drop_ids: set[int] = set()
        self.generate_calls = 0
        self.texts_translated = 0
        self.segments_generated = 0
        self.tokens_in = 0
        self.tokens_out = 0
        self.oom_retries = 0
        self._oom_cap: int | None = None  # after a CUDA OOM, later batches are cut to this size

    def __repr__(self) -> str:
        return f"HFTranslator({self.id})"

    # -- loading

    @property
    def model(self):
        self.load()
        return self._model

    @property
    def tokenizer(self):
        self.load()
        return self._tok

    def load(self) -> None:
        """Load tokenizer and model (once); resolve the language tokens."""
        if self._ready:
            return
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        cfg = self.cfg
        if self._tok is None:
            self._tok = AutoTokenizer.from_pretrained(cfg.model, revision=cfg.revision)
        if self._model is None:
            self.device = resolve_device(cfg.device)
            dtype = resolve_dtype(cfg.dtype, self.device)
            self._model = AutoModelForSeq2SeqLM.from_pretrained(
                cfg.model, revision=cfg.revision, dtype=dtype, use_safetensors=_prefer_safetensors(cfg.model)
            )
            self._model.to(self.device)
        else:
            self.device = str(next(self._model.parameters()).device)
        self._model.eval()
        self._setup_languages()
        _quiet_generate_warnings()
        self._ready = True
        log.info("translator %s loaded on %s (%s)", self.id, self.device, self._model.dtype)

    def _setup_languages(self) -> None:
        tok, cfg = self._tok, self.cfg
        model_type = getattr(self._model.config, "model_type", "")
        if hasattr(tok, "get_lang_id") and hasattr(tok, "lang_code_to_id"):  # M2M100 / WMT21
            codes = list(tok.lang_code_to_id)
            for code in (cfg.src_lang, cfg.tgt_lang):
                if code not in tok.lang_code_to_id:
                    raise ValueError(f"{cfg.model}: language {code!r} not among its codes {codes}")
            tok.src_lang = cfg.src_lang
            tok.tgt_lang = cfg.tgt_lang
            self.forced_bos_token_id = tok.get_lang_id(cfg.tgt_lang)
            # Language tokens are not special in transformers 5: drop them from outputs by id.
            self._drop_ids = set(tok.lang_code_to_id.values())
        elif model_type == "marian":  # one model per direction: no language tokens
            self.forced_bos_token_id = None
        else:  # NLLB (eng_Latn -> rus_Cyrl), mBART-50 (en_XX -> ru_RU): codes are vocabulary tokens
            ids = tok.convert_tokens_to_ids([cfg.src_lang, cfg.tgt_lang])
            if tok.unk_token_id in ids or None in ids:
                raise ValueError(
                    f"{cfg.model}: language codes {cfg.src_lang!r}/{cfg.tgt_lang!r} are not tokens of "
                    "its tokenizer (NLLB uses e.g. eng_Latn/rus_Cyrl)"
                )
            if hasattr(tok, "src_lang"):
                tok.src_lang = cfg.src_lang
            self.forced_bos_token_id = ids[1]
            self._drop_ids = {ids[1]}

    # -- token arithmetic

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Input ids with the model's special tokens (what the encoder sees)."""
        if not texts:
            return []
        return [list(x) for x in self.tokenizer(list(texts))["input_ids"]]

    def count_tokens(self, text: str) -> int:
        return len(self.encode([text])[0])

    def max_new_tokens(self, longest_input: int) -> int:
        return math.ceil(self.cfg.length_ratio * longest_input) + self.cfg.length_extra

    def plan_batches(self, lengths: Sequence[int]) -> list[list[int]]:
        """Indices into `lengths` grouped into batches: longest first, each batch within the
        padded-token budget (size x longest <= max_batch_tokens; a text over the budget goes
        alone) and max_batch_size."""
        order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
        batches: list[list[int]] = []
        cur: list[int] = []
        width = 0
        for i in order:
            w = max(width, lengths[i])
            if cur and (
                (len(cur) + 1) * w > self.cfg.max_batch_tokens or len(cur) >= self.cfg.max_batch_size
            ):
                batches.append(cur)
                cur, w = [], lengths[i]
            cur.append(i)
            width = w
        if cur:
            batches.append(cur)
        return batches

    # -- translation

    def translate(self, texts: list[str]) -> list[str]:
        """Translate `texts`; the result has the same length and order. Texts are used as given
        (no stripping); empty or whitespace-only texts come back unchanged."""
        texts = list(texts)
        self.texts_translated += len(texts)
        unique = [t for t in dict.fromkeys(texts) if t.strip()]
        if not unique:
            return list(texts)
        limit = self.cfg.max_input_tokens
        segments: dict[str, int] = {}  # unique segment -> index
        seg_ids: list[list[int]] = []
        plan: dict[str, list[int]] = {}
        for text, ids in zip(unique, self.encode(unique), strict=True):
            if len(ids) <= limit:
                chunks, chunk_ids = [text], [ids]
            else:
                chunks = split_long(text, self.count_tokens, limit)
                chunk_ids = self.encode(chunks)
            idx = []
            for chunk, cids in zip(chunks, chunk_ids, strict=True):
                if chunk not in segments:
                    segments[chunk] = len(seg_ids)
                    seg_ids.append(cids)
                idx.append(segments[chunk])
            plan[text] = idx
        outputs: list[str | None] = [None] * len(seg_ids)
        for planned in self.plan_batches([len(s) for s in seg_ids]):
            step = self._oom_cap or len(planned)
            for start in range(0, len(planned), step):
                batch = planned[start : start + step]
                for i, out in zip(batch, self._run_batch([seg_ids[i] for i in batch]), strict=True):
                    outputs[i] = out
        self.segments_generated += len(seg_ids)
        done = {t: " ".join(outputs[i] for i in idx) for t, idx in plan.items()}  # type: ignore[misc]
        return [done.get(t, t) for t in texts]

    def translate_naive(self, texts: list[str]) -> list[str]:
        """The paper's way, for the benchmark: one generate() per text, in order, no batching,
        no de-duplication, no splitting (empty texts included), same generation settings."""
        out: list[str] = []
        self.texts_translated += len(texts)
        for ids in self.encode(list(texts)):
            out.extend(self._generate_batch([ids]))
            self.segments_generated += 1
        return out

    def _run_batch(self, seqs: list[list[int]]) -> list[str]:
        """Generate for one batch; on CUDA OOM free the cache and retry in chunks of half the size
        (recursively; a single text that does not fit re-raises)."""
        import torch

        try:
            return self._generate_batch(seqs)
        except torch.cuda.OutOfMemoryError:
            if len(seqs) <= 1:
                raise
        # Retry outside the except block: while it is handled, the exception's traceback keeps
        # the failed batch's activations alive, and the halves would OOM on that memory too.
        self.oom_retries += 1
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        half = (len(seqs) + 1) // 2
        # Remember the smaller size, so later chunks and later batches don't OOM all over again.
        self._oom_cap = min(self._oom_cap or half, half)
        log.warning("CUDA OOM on a batch of %d texts: batches now at most %d", len(seqs), self._oom_cap)
        out: list[str] = []
        start = 0
        while start < len(seqs):
            step = self._oom_cap  # may shrink further inside the recursive call
            out += self._run_batch(seqs[start : start + step])
            start += step
        return out

    def _generate_batch(self, seqs: list[list[int]]) -> list[str]:
        import torch

        tok = self.tokenizer
        pad = tok.pad_token_id
        width = max(len(s) for s in seqs)
        input_ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs], dtype=torch.long)
        attention_mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs], dtype=torch.long)
        gen = self._generate(
            input_ids.to(self.device), attention_mask.to(self.device), self.max_new_tokens(width)
        )
        self.generate_calls += 1
        self.tokens_in += sum(len(s) for s in seqs)
        rows = gen.tolist()
        texts: list[str] = []
        for row in rows:
            new = row[1:]  # row[0] is decoder_start_token_id
            self.tokens_out += sum(1 for t in new if t != pad)
            kept = [t for t in new if t not in self._drop_ids]
            text = tok.decode(kept, skip_special_tokens=True)
            texts.append(_LEADING_LANG_TOKEN.sub("", text).strip())
        return texts

    def _generate(self, input_ids, attention_mask, max_new_tokens: int):
        """One model.generate() call (the seam tests use to inject failures)."""
        import torch

        cfg = self.cfg
        kwargs: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "num_beams": cfg.num_beams,
            "do_sample": False,
            "no_repeat_ngram_size": cfg.no_repeat_ngram_size,
            "repetition_penalty": cfg.repetition_penalty,
        }
        if self.forced_bos_token_id is not None:
            kwargs["forced_bos_token_id"] = self.forced_bos_token_id
        with torch.inference_mode():
            return self.model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)


def _prefer_safetensors(model: str) -> bool | None:
    """Local folder: safetensors if it has any (else the .bin, which transformers loads with
    torch.load(weights_only=True)). Hub id: None, i.e. transformers' own preference (safetensors
    when the repo has them, else the .bin; WMT21 ships only pytorch_model.bin)."""
    p = Path(model)
    if p.is_dir():
        return any(f.endswith(".safetensors") for f in os.listdir(p))
    return None
