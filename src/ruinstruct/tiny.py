"""Tiny offline models for tests and the CPU demo (`ruinstruct make-tiny`).

`build_tiny(out)` writes, with no network access and deterministically for a given seed:

- ``out/translator``: an M2M100 (the WMT21 checkpoint's class) with WMT21 language codes and a
  sentencepiece tokenizer trained on the project's parallel corpus
  (``resources/parallel_en_ru.tsv``), trained until it reproduces the corpus' Russian side.
  The demo fixtures are made of the corpus' English sentences, so the tiny translator returns real
  Russian for them. ``tiny_build.json`` beside it records the training stats.
- ``out/llama``, ``out/xglm``, ``out/gpt2``: tiny random causal LMs (LLaMA, XGLM, GPT-2
  classes) sharing one byte-level BPE tokenizer trained on both sides of the corpus.
- ``out/.done``: written last; a folder without it is an interrupted build.

Heavy imports happen inside the functions.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

CORPUS_FILE = Path(__file__).parent / "resources" / "parallel_en_ru.tsv"
DONE_MARKER = ".done"
CAUSAL_FAMILIES = ("llama", "xglm", "gpt2")

# Translator shape and training recipe (STACK_NOTES.md). With the linear decay below it reproduced
# all 264 corpus pairs exactly (greedy) after 80 epochs; a constant LR left ~3% with doubled letters.
SPM_VOCAB = 1000
D_MODEL = 128
LAYERS = 2
HEADS = 4
FFN = 256
LR = 3e-3
BATCH = 32
WARMUP_STEPS = 50
MAX_EPOCHS = 80  # the LR decays linearly to 0 over this many epochs (~80 s on one CPU thread) ...
TARGET_LOSS = 0.002  # ... unless the epoch's mean training loss falls below this first
MAX_LENGTH = 200  # generation_config.max_length, like the real WMT21 checkpoint

# Causal LM shape (random init).
LM_VOCAB = 2000
LM_HIDDEN = 64
LM_LAYERS = 2
LM_HEADS = 4
LM_FFN = 128
LM_POSITIONS = 2048
LM_SPECIAL = ["<unk>", "<s>", "</s>", "<pad>", "<|endoftext|>"]


def load_corpus(path: str | os.PathLike[str] | None = None) -> list[tuple[str, str]]:
    """The parallel corpus as (english, russian) pairs; blank lines and `#` comments skipped."""
    path = Path(path) if path is not None else CORPUS_FILE
    pairs: list[tuple[str, str]] = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
            raise ValueError(f"{path}:{n}: expected 'english<TAB>russian'")
        pairs.append((parts[0].strip(), parts[1].strip()))
    if not pairs:
        raise ValueError(f"{path}: no sentence pairs")
    return pairs


def is_built(out: str | os.PathLike[str]) -> bool:
    return (Path(out) / DONE_MARKER).exists()


# --------------------------------------------------------------------------- translator


def _train_sentencepiece(lines: list[str], work: Path, seed: int) -> Path:
    import sentencepiece as spm

    spm.set_random_generator_seed(seed)
    buf = io.BytesIO()  # no model_prefix: the model bytes do not depend on the output path
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=buf,
        model_type="bpe",
        vocab_size=SPM_VOCAB,
        hard_vocab_limit=False,
        bos_id=-1,
        eos_id=-1,
        pad_id=-1,
        unk_id=0,
        # Code, ASCII art, URLs and emoji must encode without <unk> (they are protected from
        # translation upstream, but a tokenizer must never choke on them).
        byte_fallback=True,
        character_coverage=1.0,
        # identity: decode(encode(x)) == x for the corpus, so exact matches are possible.
        normalization_rule_name="identity",
        shuffle_input_sentence=False,
        input_sentence_size=0,
        num_threads=1,
        minloglevel=2,
    )
    model_file = work / "spm.model"
    model_file.write_bytes(buf.getvalue())
    return model_file


def build_translator_tokenizer(pairs: list[tuple[str, str]], work: Path, seed: int = 0):
    """An M2M100Tokenizer (language_codes="wmt21") over a sentencepiece BPE trained on `pairs`."""
    import sentencepiece as spm
    from transformers import M2M100Tokenizer

    work.mkdir(parents=True, exist_ok=True)
    lines = [en for en, _ in pairs] + [ru for _, ru in pairs]
    model_file = _train_sentencepiece(lines, work, seed)
    sp = spm.SentencePieceProcessor(model_file=str(model_file))
    # fairseq dictionary order: <s>, <pad>, </s>, <unk>, then the pieces (spm's id 0 is <unk>).
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for i in range(1, sp.get_piece_size()):
        vocab.setdefault(sp.id_to_piece(i), len(vocab))
    vocab_file = work / "vocab.json"
    vocab_file.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    return M2M100Tokenizer(
        str(vocab_file), str(model_file), src_lang="en", tgt_lang="ru", language_codes="wmt21"
    )


def _translator_model(tok, seed: int):
    import torch
    from transformers import GenerationConfig, M2M100Config, M2M100ForConditionalGeneration

    # Not len(tok): the embedding must cover the language ids and the made-up words (STACK_NOTES).
    vocab_size = tok.encoder_size + len(tok.lang_code_to_id) + tok.num_madeup_words
    config = M2M100Config(
        vocab_size=vocab_size,
        d_model=D_MODEL,
        encoder_layers=LAYERS,
        decoder_layers=LAYERS,
        encoder_attention_heads=HEADS,
        decoder_attention_heads=HEADS,
        encoder_ffn_dim=FFN,
        decoder_ffn_dim=FFN,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        encoder_layerdrop=0.0,
        decoder_layerdrop=0.0,
        max_position_embeddings=1024,
        scale_embedding=True,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        decoder_start_token_id=tok.eos_token_id,
    )
    torch.manual_seed(seed)
    model = M2M100ForConditionalGeneration(config)
    # Like the WMT21 checkpoint: decoding starts with </s>; the target language token is forced
    # at generate time (forced_bos_token_id); max_length 200 caps outputs unless the caller sets
    # max_new_tokens (our engine does, per batch).
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        decoder_start_token_id=tok.eos_token_id,
        max_length=MAX_LENGTH,
        num_beams=1,
    )
    return model


def _encode_pairs(tok, pairs: list[tuple[str, str]]) -> tuple[list[list[int]], list[list[int]]]:
    tok.src_lang, tok.tgt_lang = "en", "ru"
    src = tok([en for en, _ in pairs])["input_ids"]  # __en__ ... </s>
    tgt = tok(text_target=[ru for _, ru in pairs])["input_ids"]  # __ru__ ... </s>
    return src, tgt


def _pad(seqs: list[list[int]], value: int):
    import torch

    width = max(len(s) for s in seqs)
    return torch.tensor([s + [value] * (width - len(s)) for s in seqs], dtype=torch.long)


def greedy_translate(model, tok, texts: list[str], batch_size: int = 64) -> list[str]:
    """Plain greedy batch translation (used for the build's exact-match check only; the
    pipeline's translator is ruinstruct.translate.engine)."""
    import torch

    from .translate.engine import _quiet_generate_warnings

    _quiet_generate_warnings()
    tok.src_lang = "en"
    ru = tok.get_lang_id("ru")
    lang_ids = set(tok.lang_code_to_id.values())
    out: list[str] = []
    model.eval()
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            enc = tok(texts[i : i + batch_size], return_tensors="pt", padding=True)
            width = enc["input_ids"].shape[1]
            gen = model.generate(
                **enc,
                forced_bos_token_id=ru,
                num_beams=1,
                do_sample=False,
                max_new_tokens=2 * width + 16,
            )
            for row in gen.tolist():
                out.append(
                    tok.decode([t for t in row if t not in lang_ids], skip_special_tokens=True).strip()
                )
    return out


def _train_translator(
    model, tok, pairs, seed: int, max_epochs: int, target_loss: float, train_seconds: float | None
) -> dict[str, Any]:
    import torch

    src, tgt = _encode_pairs(tok, pairs)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=LR)
    # Linear warmup, then linear decay to 0 at `max_epochs`: a constant 3e-3 spikes late in
    # training and leaves char-level repetitions ("болеее") in greedy outputs.
    total_steps = max_epochs * math.ceil(len(pairs) / BATCH)
    warmup = min(WARMUP_STEPS, total_steps // 10 + 1)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, 1.0 - s / total_steps)
    )
    model.train()
    steps = 0
    epoch_loss = float("nan")
    epochs = 0
    losses: list[float] = []
    start = time.perf_counter()
    for epoch in range(max_epochs):
        order = torch.randperm(len(pairs), generator=gen).tolist()
        total, n = 0.0, 0
        for i in range(0, len(order), BATCH):
            idx = order[i : i + BATCH]
            input_ids = _pad([src[j] for j in idx], tok.pad_token_id)
            labels = _pad([tgt[j] for j in idx], -100)
            loss = model(
                input_ids=input_ids, attention_mask=(input_ids != tok.pad_token_id).long(), labels=labels
            ).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            steps += 1
            total += loss.item() * len(idx)
            n += len(idx)
        epochs = epoch + 1
        epoch_loss = total / n
        losses.append(round(epoch_loss, 5))
        if epoch_loss < target_loss:
            break
        if train_seconds is not None and time.perf_counter() - start > train_seconds:
            break
    model.eval()
    return {
        "epochs": epochs,
        "steps": steps,
        "final_loss": epoch_loss,
        "loss_per_epoch": losses,
        "train_wall_s": round(time.perf_counter() - start, 2),
    }


def build_translator(
    out_dir: Path,
    pairs: list[tuple[str, str]],
    seed: int = 0,
    *,
    max_epochs: int = MAX_EPOCHS,
    target_loss: float = TARGET_LOSS,
    train_seconds: float | None = None,
) -> dict[str, Any]:
    """Train and save the tiny M2M100 translator into `out_dir`; return its build stats."""
    import torch

    work = out_dir.parent / f".{out_dir.name}.spm"
    shutil.rmtree(work, ignore_errors=True)
    tok = build_translator_tokenizer(pairs, work, seed)
    model = _translator_model(tok, seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: bit-identical reruns, and kind to a shared machine
    try:
        stats = _train_translator(model, tok, pairs, seed, max_epochs, target_loss, train_seconds)
        t0 = time.perf_counter()
        hyp = greedy_translate(model, tok, [en for en, _ in pairs])
        eval_s = time.perf_counter() - t0
    finally:
        torch.set_num_threads(threads)
    exact = sum(h == ru for h, (_, ru) in zip(hyp, pairs, strict=True))
    misses = [{"en": en, "ref": ru, "hyp": h} for h, (en, ru) in zip(hyp, pairs, strict=True) if h != ru]
    shutil.rmtree(out_dir, ignore_errors=True)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    shutil.rmtree(work, ignore_errors=True)
    stats.update(
        {
            "seed": seed,
            "pairs": len(pairs),
            "exact_match": exact / len(pairs),
            "exact": exact,
            "eval_wall_s": round(eval_s, 2),
            "parameters": sum(p.numel() for p in model.parameters()),
            "vocab_size": model.config.vocab_size,
            "spm_pieces": tok.encoder_size,
            "misses": misses[:20],
        }
    )
    (out_dir / "tiny_build.json").write_text(
        json.dumps(stats, ensure_ascii=False, indent=2), encoding="utf-8"
    )
    return stats


# --------------------------------------------------------------------------- causal LMs


def build_causal_tokenizer(pairs: list[tuple[str, str]]):
    """A byte-level BPE (trained with `tokenizers` on both sides of the corpus) wrapped in a
    PreTrainedTokenizerFast: bos <s>, eos </s>, pad <pad>, unk <unk>, plus <|endoftext|>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=LM_VOCAB,
        special_tokens=LM_SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    lines = [en for en, _ in pairs] + [ru for _, ru in pairs]
    bpe.train_from_iterator(lines, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_special_tokens=["<|endoftext|>"],
        model_max_length=LM_POSITIONS,
    )


def _causal_model(family: str, tok, seed: int):
    import torch
    from transformers import (
        GPT2Config,
        GPT2LMHeadModel,
        LlamaConfig,
        LlamaForCausalLM,
        XGLMConfig,
        XGLMForCausalLM,
    )

    ids = {
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
        "pad_token_id": tok.pad_token_id,
    }
    vocab = len(tok)
    torch.manual_seed(seed)
    if family == "llama":
        cfg = LlamaConfig(
            vocab_size=vocab,
            hidden_size=LM_HIDDEN,
            intermediate_size=LM_FFN,
            num_hidden_layers=LM_LAYERS,
            num_attention_heads=LM_HEADS,
            num_key_value_heads=LM_HEADS,
            max_position_embeddings=LM_POSITIONS,
            tie_word_embeddings=False,
            **ids,
        )
        model = LlamaForCausalLM(cfg)
    elif family == "xglm":
        cfg = XGLMConfig(
            vocab_size=vocab,
            d_model=LM_HIDDEN,
            ffn_dim=LM_FFN,
            num_layers=LM_LAYERS,
            attention_heads=LM_HEADS,
            max_position_embeddings=LM_POSITIONS,
            dropout=0.0,
            attention_dropout=0.0,
            activation_dropout=0.0,
            layerdrop=0.0,
            decoder_start_token_id=tok.eos_token_id,
            **ids,
        )
        model = XGLMForCausalLM(cfg)
    elif family == "gpt2":
        cfg = GPT2Config(
            vocab_size=vocab,
            n_embd=LM_HIDDEN,
            n_layer=LM_LAYERS,
            n_head=LM_HEADS,
            n_inner=LM_FFN,
            n_positions=LM_POSITIONS,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            **ids,
        )
        model = GPT2LMHeadModel(cfg)
    else:
        raise ValueError(f"unknown causal LM family {family!r}")
    model.generation_config.update(**ids)
    return model


def build_causal_lms(out: Path, pairs: list[tuple[str, str]], seed: int = 0) -> dict[str, str]:
    tok = build_causal_tokenizer(pairs)
    paths: dict[str, str] = {}
    for i, family in enumerate(CAUSAL_FAMILIES):
        model = _causal_model(family, tok, seed + i)
        d = out / family
        shutil.rmtree(d, ignore_errors=True)
        model.save_pretrained(d)
        tok.save_pretrained(d)
        paths[family] = str(d)
    return paths


# --------------------------------------------------------------------------- entry point


def build_tiny(
    out: Path,
    seed: int = 0,
    *,
    train_seconds: float | None = None,
    max_epochs: int = MAX_EPOCHS,
    target_loss: float = TARGET_LOSS,
    corpus: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Build every tiny model into `out` (see the module docstring). Deterministic for a given
    seed: training stops by loss (`target_loss`) or `max_epochs`, not by time, unless
    `train_seconds` is given as an extra cap (which makes the result timing-dependent)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    done = out / DONE_MARKER
    done.unlink(missing_ok=True)
    t0 = time.perf_counter()
    pairs = load_corpus(corpus)
    stats = build_translator(
        out / "translator",
        pairs,
        seed,
        max_epochs=max_epochs,
        target_loss=target_loss,
        train_seconds=train_seconds,
    )
    paths = {"translator": str(out / "translator")}
    paths.update(build_causal_lms(out, pairs, seed))
    result = {
        "out": str(out),
        "seed": seed,
        "paths": paths,
        "translator": {k: v for k, v in stats.items() if k not in ("misses", "loss_per_epoch")},
        "build_wall_s": round(time.perf_counter() - t0, 2),
    }
    tmp = out / f"{DONE_MARKER}.tmp"
    tmp.write_text(json.dumps(result, ensure_ascii=False, indent=2), encoding="utf-8")
    os.replace(tmp, done)
    return result


def exact_match_rate(
    translator_dir: str | os.PathLike[str], pairs: list[tuple[str, str]] | None = None
) -> float:
    """Greedy exact-match rate of a saved tiny translator on the corpus (or `pairs`)."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    pairs = pairs if pairs is not None else load_corpus()
    tok = AutoTokenizer.from_pretrained(translator_dir)
    model = AutoModelForSeq2SeqLM.from_pretrained(translator_dir)
    hyp = greedy_translate(model, tok, [en for en, _ in pairs])
    return sum(h == ru for h, (_, ru) in zip(hyp, pairs, strict=True)) / len(pairs) if pairs else math.nan
