"""The translator: a protocol and its Hugging Face seq2seq implementation.

`HFTranslator` runs WMT21 (`facebook/wmt21-dense-24-wide-en-x`, class M2M100) and, by config,
NLLB or Marian checkpoints. Compared with the paper's code (one line per `generate` call, the
checkpoint's max_length=200 cap) it:

- translates each unique text once, sorted by token length and batched by a padded-token budget
  (`max_batch_tokens` >= batch size x longest input, at most `max_batch_size` texts);
- sets `max_new_tokens` per batch (`ceil(length_ratio * longest input) + length_extra`), so
  the checkpoint's max_length never cuts a long paragraph;
- splits a text over `max_input_tokens` at sentence ends, then at clause boundaries (; : ,),
  then at words (and inside a word only as the last resort), translates the chunks and joins
  them with the whitespace that separated them; the limit defaults to what the model's position
  embeddings allow (`resolve_config`);
- scores every translation: the mean log-probability of its generated tokens under the
  distribution the decoder chose from (`translate_scored`, recorded during generate());
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
from typing import Any, NamedTuple, Protocol, runtime_checkable

from ..config import TranslationConfig

log = logging.getLogger(__name__)


SCORE_DECIMALS = 4


class Translation(NamedTuple):
    """A translation and its score: the mean log-probability of the generated tokens (the
    forced target-language token excluded, the end-of-sequence token included); None when the
    translator cannot tell (a translator without scores, an empty input)."""

    text: str
    logprob: float | None


@runtime_checkable
class Translator(Protocol):
    id: str

    def translate(self, texts: list[str]) -> list[str]: ...


@runtime_checkable
class ScoringTranslator(Translator, Protocol):
    """A translator that also scores its outputs (HFTranslator does)."""

    def translate_scored(self, texts: list[str]) -> list[Translation]: ...


def translate_scored(translator: Translator, texts: list[str]) -> list[Translation]:
    """`translator.translate_scored(texts)` where the translator has it, else its plain
    translations with unknown (None) scores, so any translator can be used."""
    scored = getattr(translator, "translate_scored", None)
    if scored is not None:
        return list(scored(texts))
    return [Translation(t, None) for t in translator.translate(texts)]


def translator_id(cfg: TranslationConfig) -> str:
    """`model@revision#hash` where the hash covers every setting that changes the output text
    (and, for a local folder, the model's content), but not batching or device settings. The
    same id keys the paragraph cache and the Prefect shard cache (TranslationConfig.translator_id).
    Pass a resolved config (`resolve_config`): an HFTranslator's `.id` always is one."""
    return cfg.translator_id


def resolve_config(cfg: TranslationConfig, model_config: Any = None) -> TranslationConfig:
    """`cfg` with what is decided at load time made concrete for this machine and model, so that
    the translator id (and with it every cache key) says what really produced a translation:
    `device`/`dtype` "auto" (a bf16 GPU translation is not an fp32 CPU one) and an unset
    `max_input_tokens` (from the model: `model_input_limit`). Idempotent. The model's config
    (not its weights) is read only when the limit is unset. HFTranslator applies this to the
    config it is given, so `load_translator(cfg).id == resolve_config(cfg).translator_id`."""
    device = resolve_device(cfg.device)
    if cfg.backend == "transformers" and device.startswith("cuda"):
        _require_torch_cuda(device)
    dtype = str(resolve_dtype(cfg.dtype, device)).removeprefix("torch.")
    update: dict[str, Any] = {"device": "cuda" if device.startswith("cuda") else device, "dtype": dtype}
    if cfg.backend == "ctranslate2":  # CTranslate2's own CUDA decides the device and the compute type
        from . import ct2

        update["device"] = ct2.resolve_device(cfg.device)
        update["compute_type"] = ct2.resolve_compute_type(cfg.compute_type, update["device"])
    if cfg.max_input_tokens is None:
        update["max_input_tokens"] = model_input_limit(cfg, model_config)
    return cfg.model_copy(update=update)


#: The fewest input tokens a limit may be (TranslationConfig.max_input_tokens' own minimum).
MIN_INPUT_LIMIT = 8


def model_positions(model_config: Any) -> tuple[int | None, int | None]:
    """(source, target) positions the model's embeddings cover, from its config; None if unknown."""

    def first(*names: str) -> int | None:
        for n in names:
            v = getattr(model_config, n, None)
            if isinstance(v, int) and v > 0:
                return v
        return None

    common = ("max_position_embeddings", "n_positions")
    return first("max_source_positions", *common), first("max_target_positions", *common)


def model_input_limit(cfg: TranslationConfig, model_config: Any = None) -> int:
    """The default `max_input_tokens`: the longest input whose allowed output
    (`ceil(length_ratio * input) + length_extra` new tokens after the decoder's start token)
    still fits the model's target positions, and at most its source positions. M2M100/WMT21 and
    NLLB have 1024 of each: (1024 - 1 - 16) / 2 = 503 tokens with the default ratio 2 and extra
    16. Past the positions it was trained on a model's output degrades (a learned position table
    fails outright), so the margin is what the output may need, not a guess."""
    if model_config is None:
        from transformers import AutoConfig

        model_config = AutoConfig.from_pretrained(cfg.model, revision=cfg.revision)
    src, tgt = model_positions(model_config)
    if src is None or tgt is None:
        raise ValueError(f"{cfg.model}: its config names no maximum positions; set translation.max_input_tokens")
    limit = min(src, math.floor((tgt - 1 - cfg.length_extra) / cfg.length_ratio))
    if limit < MIN_INPUT_LIMIT:
        raise ValueError(
            f"{cfg.model}: {tgt} target positions leave room for only {limit} input tokens with "
            f"length_ratio={cfg.length_ratio} and length_extra={cfg.length_extra}"
        )
    return limit


def load_translator(cfg: TranslationConfig) -> Translator:
    """The one factory the pipeline uses to get a translator (tests monkeypatch this): by
    `cfg.backend`, an `HFTranslator` or a `ct2.CT2Translator`."""
    if cfg.backend == "ctranslate2":
        from .ct2 import CT2Translator

        return CT2Translator(cfg)
    return HFTranslator(cfg)


# --------------------------------------------------------------------------- long texts

# End of a sentence: . ! ? (or …), optional closing quotes/brackets, whitespace, then a Latin or
# Cyrillic capital (optionally behind an opening quote/bracket).
_SENTENCE_END = re.compile(r"[.!?…]+[\"'»”’)\]]*(\s+)(?=[\"'«“„(\[]?[A-ZА-ЯЁ])")
# A clause boundary: ; : or , then whitespace ("1,000" and "10:30" are not boundaries).
_CLAUSE_END = re.compile(r"[;:,](\s+)")
_WORD_END = re.compile(r"\S(\s+)")
#: Where a text over the limit is cut, in order of preference; group 1 is the separator.
_BOUNDARIES = (_SENTENCE_END, _CLAUSE_END, _WORD_END)


def split_sentences(text: str) -> list[str]:
    """Split at sentence boundaries; the whitespace between sentences is dropped."""
    return [p.strip() for p in _cut(text, _SENTENCE_END) if p.strip()]


def _cut(text: str, boundary: re.Pattern[str]) -> list[str]:
    """`text` cut after each separator `boundary` finds; every piece keeps the separator that
    follows it, so the pieces join back to `text` exactly."""
    parts: list[str] = []
    start = 0
    for m in boundary.finditer(text):
        parts.append(text[start : m.end(1)])
        start = m.end(1)
    if start < len(text):
        parts.append(text[start:])
    return parts


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


def split_long(text: str, count: Callable[[str], int], limit: int) -> list[str]:
    """Cut `text` into chunks of at most `limit` tokens (as `count` measures a chunk without its
    surrounding whitespace): at sentence ends first; a sentence still too long at clause
    boundaries (; : ,); a clause still too long between words; a single word still too long
    inside it. Neighbouring pieces of one level are packed together while they fit; a piece
    that had to be cut further is never merged with its neighbours, so no chunk mixes the end
    of one sentence with part of another.

    Each chunk keeps the whitespace that followed it: `"".join(split_long(text, ...)) == text`,
    which is how `HFTranslator` puts the translations back together. A text within the limit
    comes back as the one chunk."""
    if count(text.strip()) <= limit:
        return [text]
    return _split(text, count, limit, 0)


def _split(text: str, count: Callable[[str], int], limit: int, level: int) -> list[str]:
    if level == len(_BOUNDARIES):  # one word over the limit: cut inside it
        core = text.rstrip()
        pieces = _hard_cut(core, count, limit)
        pieces[-1] += text[len(core) :]
        return pieces
    pieces = _cut(text, _BOUNDARIES[level])
    if len(pieces) <= 1:
        return _split(text, count, limit, level + 1)
    chunks: list[str] = []
    cur = ""
    for piece in pieces:
        if count(piece.strip()) > limit:
            if cur:
                chunks.append(cur)
                cur = ""
            chunks.extend(_split(piece, count, limit, level + 1))
        elif not cur or count((cur + piece).strip()) <= limit:
            cur += piece
        else:
            chunks.append(cur)
            cur = piece
    if cur:
        chunks.append(cur)
    return chunks


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


def _require_torch_cuda(device: str) -> None:
    """A cuda device torch cannot use fails here, in one line, and not later in each shard (which
    on a CPU build of torch half-loaded the model and went on in fp16 on the CPU)."""
    import torch

    from ..errors import UserError

    if not torch.cuda.is_available():
        raise UserError(f"translation.device: {device}, but torch sees no CUDA device "
                        f"(torch {torch.__version__}, a CPU build or no GPU/driver); use cpu or auto")


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

    `cfg` is resolved on construction (`resolve_config`): `.cfg` and `.id` name the device, dtype
    and input limit actually used, whoever built the translator and however "auto" the profile.
    """

    def __init__(self, cfg: TranslationConfig | None = None, *, model: Any = None, tokenizer: Any = None):
        self.cfg = resolve_config(cfg or TranslationConfig(), getattr(model, "config", None))
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
        self._max_new_cap: int | None = None  # the decoder's positions, once the model is loaded
        self._eos_ids: set[int] = set()

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
        _, target_positions = model_positions(self._model.config)
        if target_positions is not None:
            self._max_new_cap = target_positions - 1  # the decoder's start token takes one
        eos = self._model.generation_config.eos_token_id
        self._eos_ids = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
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
        n = math.ceil(self.cfg.length_ratio * longest_input) + self.cfg.length_extra
        # never past the decoder's positions (only reachable with a limit set above the default)
        return n if self._max_new_cap is None else min(n, self._max_new_cap)

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
        return [t.text for t in self.translate_scored(texts)]

    def translate_scored(self, texts: list[str]) -> list[Translation]:
        """`translate`, each output with its score (`Translation`): for a text split into chunks,
        the mean over all the chunks' tokens. Empty or whitespace-only texts come back unchanged,
        with score None."""
        texts = list(texts)
        self.texts_translated += len(texts)
        unique = [t for t in dict.fromkeys(texts) if t.strip()]
        if not unique:
            return [Translation(t, None) for t in texts]
        limit = self.cfg.max_input_tokens
        assert limit is not None  # resolved in __init__
        segments: dict[str, int] = {}  # unique segment (stripped chunk) -> index
        seg_ids: list[list[int]] = []
        plan: dict[str, list[tuple[int, str, str]]] = {}  # text -> (segment, lead, tail) per chunk
        for text, ids in zip(unique, self.encode(unique), strict=True):
            if len(ids) <= limit:
                chunks, chunk_ids = [(text, "", "")], [ids]
            else:
                chunks = [_strip_keep(c) for c in split_long(text, self.count_tokens, limit)]
                chunk_ids = self.encode([c for c, _, _ in chunks])
            idx = []
            for (chunk, lead, tail), cids in zip(chunks, chunk_ids, strict=True):
                if chunk not in segments:
                    segments[chunk] = len(seg_ids)
                    seg_ids.append(cids)
                idx.append((segments[chunk], lead, tail))
            plan[text] = idx
        outputs = self._generate_all(seg_ids)
        self.segments_generated += len(seg_ids)
        done: dict[str, Translation] = {}
        for t, idx in plan.items():
            parts = [(outputs[i], lead, tail) for i, lead, tail in idx]
            # the whitespace that separated the chunks goes back between their translations
            text = "".join(lead + g.text + tail for g, lead, tail in parts)  # type: ignore[union-attr]
            total = sum(g.logprob_sum for g, _, _ in parts)  # type: ignore[union-attr]
            n = sum(g.tokens for g, _, _ in parts)  # type: ignore[union-attr]
            known = n > 0 and all(g.tokens > 0 for g, _, _ in parts) and math.isfinite(total)  # type: ignore[union-attr]
            # 4 decimals: a score's low bits depend on the batch's padding, which depends on which
            # shard reached a shared paragraph first; rounded, the same config gives the same bytes.
            done[t] = Translation(text, round(total / n, SCORE_DECIMALS) if known else None)
        return [done.get(t, Translation(t, None)) for t in texts]

    def _generate_all(self, seg_ids: list[list[int]]) -> list[_Generated]:
        """Generate for every segment, batch by batch as `plan_batches` groups them (at most
        `_oom_cap` texts per batch once a CUDA OOM has happened); outputs in `seg_ids` order."""
        outputs: list[_Generated | None] = [None] * len(seg_ids)
        for planned in self.plan_batches([len(s) for s in seg_ids]):
            step = self._oom_cap or len(planned)
            for start in range(0, len(planned), step):
                batch = planned[start : start + step]
                for i, out in zip(batch, self._run_batch([seg_ids[i] for i in batch]), strict=True):
                    outputs[i] = out
        return outputs  # type: ignore[return-value]

    def translate_naive(self, texts: list[str]) -> list[str]:
        """The paper's way, for the benchmark: one generate() per text, in order, no batching,
        no de-duplication, no splitting (empty texts included), same generation settings."""
        out: list[str] = []
        self.texts_translated += len(texts)
        for ids in self.encode(list(texts)):
            out.extend(g.text for g in self._generate_batch([ids]))
            self.segments_generated += 1
        return out

    def _run_batch(self, seqs: list[list[int]]) -> list[_Generated]:
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
        out: list[_Generated] = []
        start = 0
        while start < len(seqs):
            step = self._oom_cap  # may shrink further inside the recursive call
            out += self._run_batch(seqs[start : start + step])
            start += step
        return out

    def _generate_batch(self, seqs: list[list[int]]) -> list[_Generated]:
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
        rows = gen.sequences.tolist()
        scores = self._token_scores(gen)
        out: list[_Generated] = []
        for row, (total, n) in zip(rows, scores, strict=True):
            new = row[1:]  # row[0] is decoder_start_token_id
            self.tokens_out += sum(1 for t in new if t != pad)
            kept = [t for t in new if t not in self._drop_ids]
            text = tok.decode(kept, skip_special_tokens=True)
            out.append(_Generated(_LEADING_LANG_TOKEN.sub("", text).strip(), total, n))
        return out

    def _generate(self, input_ids, attention_mask, max_new_tokens: int) -> _Output:
        """One model.generate() call (the seam tests use to inject failures)."""
        import torch

        cfg = self.cfg
        recorder = _step_recorder(self._beams_to_keep())
        kwargs: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "num_beams": cfg.num_beams,
            "do_sample": False,
            "no_repeat_ngram_size": cfg.no_repeat_ngram_size,
            "repetition_penalty": cfg.repetition_penalty,
            "logits_processor": [recorder],
            "return_dict_in_generate": True,
        }
        if self.forced_bos_token_id is not None:
            kwargs["forced_bos_token_id"] = self.forced_bos_token_id
        with torch.inference_mode():
            gen = self.model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        return _Output(gen.sequences, recorder.values, recorder.indices, getattr(gen, "beam_indices", None))

    def _beams_to_keep(self) -> int:
        """How many candidates per beam generate() may pick from at a step (its `beams_to_keep`);
        1 for greedy search, whose pick is the best token."""
        if self.cfg.num_beams == 1:
            return 1
        return max(2, 1 + len(self._eos_ids)) * self.cfg.num_beams

    def _token_scores(self, gen: _Output) -> list[tuple[float, int]]:
        """(sum of log-probabilities, token count) of each output row's generated tokens.

        The scores are what the decoder picked from at each step (after repetition penalty or
        n-gram blocking, renormalised), recorded by `_step_recorder` as generate() runs: only
        the picks (greedy) or each row's top candidates (beam search), never the full
        vocabulary per step, which would cost gigabytes for a 128k vocabulary. A beam search row
        is traced back through `beam_indices` to the row that scored each of its tokens. The
        forced target-language token is left out (its probability is 1 by construction), and so
        is the padding after a row's end-of-sequence token."""
        import torch

        seqs = gen.sequences
        steps = len(gen.values)
        if steps == 0:
            return [(0.0, 0)] * seqs.shape[0]
        values = torch.stack(gen.values, dim=1).float()  # rows x steps (x k for beams)
        tokens = seqs[:, 1 : 1 + steps]
        if gen.beam_indices is None:
            valid = torch.ones_like(tokens, dtype=torch.bool)
            if self._eos_ids:
                is_eos = torch.zeros_like(valid)
                for e in self._eos_ids:
                    is_eos |= tokens == e
                # keep through the first end-of-sequence token: later ones are padding
                valid = (torch.cumsum(is_eos.long(), dim=1) - is_eos.long()) == 0
            picked = values[:, : tokens.shape[1]]
        else:
            beam_idx = gen.beam_indices[:, :steps].long()
            steps = beam_idx.shape[1]
            tokens = tokens[:, :steps]
            src = beam_idx.clamp(min=0)
            step_no = torch.arange(steps, device=src.device).expand_as(src)
            cand_val = values[src, step_no]  # rows x steps x k
            cand_idx = torch.stack(gen.indices, dim=1)[src, step_no]
            match = cand_idx == tokens.unsqueeze(-1)
            picked = torch.where(match, cand_val, torch.zeros_like(cand_val)).sum(-1)
            valid = beam_idx >= 0
            # a pick outside the recorded candidates cannot happen; if it did, say "unknown"
            lost = (valid & ~match.any(-1)).any(dim=1)
            picked = torch.where(lost.unsqueeze(1), torch.full_like(picked, float("nan")), picked)
        if self.forced_bos_token_id is not None:
            valid[:, 0] = False
        picked = torch.where(valid, picked, torch.zeros_like(picked))
        totals = picked.sum(dim=1).tolist()
        counts = valid.sum(dim=1).tolist()
        return [(float(t), int(n)) for t, n in zip(totals, counts, strict=True)]


class _Generated(NamedTuple):
    """One generated row: its text, and the sum and count of its scored tokens."""

    text: str
    logprob_sum: float
    tokens: int


class _Output(NamedTuple):
    sequences: Any  # LongTensor rows x (1 + steps)
    values: list[Any]  # per step: rows (greedy) or rows x k (beams) log-probabilities
    indices: list[Any]  # per step, beams only: rows x k token ids of `values`
    beam_indices: Any  # beams only: output row x step -> the row that scored it (-1: ended)


def _strip_keep(chunk: str) -> tuple[str, str, str]:
    """(chunk without surrounding whitespace, leading whitespace, trailing whitespace)."""
    core = chunk.strip()
    if not core:
        return chunk, "", ""
    lead = chunk[: len(chunk) - len(chunk.lstrip())]
    return core, lead, chunk[len(lead) + len(core) :]


def _step_recorder(k: int):
    """A logits processor, run last at every generate() step, that records the renormalised
    log-probabilities the decoder picks from: the best one per row (k=1, greedy: that is the
    pick) or the top k per row with their token ids (beam search). It changes nothing."""
    import torch
    from transformers import LogitsProcessor

    class StepRecorder(LogitsProcessor):
        def __init__(self) -> None:
            self.values: list[Any] = []
            self.indices: list[Any] = []

        def __call__(self, input_ids, scores):
            logp = torch.log_softmax(scores.float(), dim=-1)
            if k == 1:
                self.values.append(logp.max(dim=-1).values)
            else:
                top = logp.topk(min(k, logp.shape[-1]), dim=-1)
                self.values.append(top.values)
                self.indices.append(top.indices)
            return scores

    return StepRecorder()


def _prefer_safetensors(model: str) -> bool | None:
    """Local folder: safetensors if it has any (else the .bin, which transformers loads with
    torch.load(weights_only=True)). Hub id: None, i.e. transformers' own preference (safetensors
    when the repo has them, else the .bin; WMT21 ships only pytorch_model.bin)."""
    p = Path(model)
    if p.is_dir():
        return any(f.endswith(".safetensors") for f in os.listdir(p))
    return None
