"""The tiny offline models: deterministic build, a translator that knows the corpus, loadable LMs."""

from __future__ import annotations

import json

import pytest

from ruinstruct.tiny import CAUSAL_FAMILIES, build_tiny, exact_match_rate, is_built, load_corpus

torch = pytest.importorskip("torch")


def _weights(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_build_is_deterministic_for_a_seed(tmp_path):
    # cheap variant: a few epochs are enough to show bit-identical training
    a = build_tiny(tmp_path / "a", seed=3, max_epochs=2)
    b = build_tiny(tmp_path / "b", seed=3, max_epochs=2)
    build_tiny(tmp_path / "c", seed=4, max_epochs=2)
    assert a["translator"]["epochs"] == b["translator"]["epochs"] == 2
    for name in ("translator", *CAUSAL_FAMILIES):
        wa, wb = _weights(tmp_path / "a" / name), _weights(tmp_path / "b" / name)
        assert _same(wa, wb), name
        assert not _same(wa, _weights(tmp_path / "c" / name)), name
    for f in ("vocab.json", "sentencepiece.bpe.model"):
        assert (tmp_path / "a/translator" / f).read_bytes() == (tmp_path / "b/translator" / f).read_bytes()
    assert (tmp_path / "a/llama/tokenizer.json").read_bytes() == (
        tmp_path / "b/llama/tokenizer.json"
    ).read_bytes()
    assert a["translator"]["final_loss"] == b["translator"]["final_loss"]
    assert is_built(tmp_path / "a")
    done = json.loads((tmp_path / "a" / ".done").read_text())
    assert set(done["paths"]) == {"translator", *CAUSAL_FAMILIES}


def test_trained_translator_knows_the_corpus(tiny_dir):
    stats = json.loads((tiny_dir / "translator" / "tiny_build.json").read_text(encoding="utf-8"))
    corpus = load_corpus()
    assert stats["pairs"] == len(corpus)
    assert stats["exact_match"] >= 0.9
    # re-measured from the saved folder on a slice
    assert exact_match_rate(tiny_dir / "translator", corpus[::5]) >= 0.85


def test_translator_tokenizer_is_wmt21_m2m100(tiny_dir):
    from transformers import AutoConfig, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_dir / "translator")
    cfg = AutoConfig.from_pretrained(tiny_dir / "translator")
    assert type(tok).__name__ == "M2M100Tokenizer"
    assert list(tok.lang_code_to_id) == ["en", "ha", "is", "ja", "cs", "ru", "zh", "de"]
    assert cfg.model_type == "m2m_100" and cfg.d_model == 128
    assert cfg.encoder_layers == cfg.decoder_layers == 2
    assert cfg.vocab_size == tok.encoder_size + len(tok.lang_code_to_id) + tok.num_madeup_words
    assert (tiny_dir / "translator" / "model.safetensors").exists()
    gen = json.loads((tiny_dir / "translator" / "generation_config.json").read_text())
    assert gen["max_length"] == 200 and gen["decoder_start_token_id"] == tok.eos_token_id


@pytest.mark.parametrize(
    "text",
    [
        "def add(a, b):\n    return a + b  # sum",
        " X | O | X\n---+---+---\n O | X | O",
        "See https://example.com/path?q=1&x=%20 for {details} ~ `code` \\n",
        "Emoji 🙂 ☃ and CJK 漢字, tabs\tand ünïcödé",
    ],
)
def test_translator_tokenizer_encodes_non_prose(tiny_dir, text):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_dir / "translator")
    ids = tok(text)["input_ids"]
    assert tok.unk_token_id not in ids  # byte fallback: nothing is unknown
    decoded = tok.decode(ids, skip_special_tokens=True).replace("__en__", "").strip()
    assert decoded.split() == text.split()


@pytest.mark.parametrize("family", CAUSAL_FAMILIES)
def test_causal_lms_load_and_generate(tiny_dir, family):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = tiny_dir / family
    assert (folder / "model.safetensors").exists()
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    expected = {"llama": "LlamaForCausalLM", "xglm": "XGLMForCausalLM", "gpt2": "GPT2LMHeadModel"}[family]
    assert type(model).__name__ == expected
    assert (tok.bos_token, tok.eos_token, tok.pad_token, tok.unk_token) == ("<s>", "</s>", "<pad>", "<unk>")
    for special in ("<s>", "</s>", "<|endoftext|>"):
        assert len(tok(special, add_special_tokens=False)["input_ids"]) == 1, special
    # the paper's LoRA template tokenizes with its markers intact
    prompt = "<s> user\nПривет, как дела? </s>\n<s> bot\n"
    enc = tok(prompt, return_tensors="pt")
    assert tok.decode(enc["input_ids"][0]) == prompt
    assert model.config.vocab_size >= len(tok)
    with torch.inference_mode():
        out = model.generate(**enc, max_new_tokens=5, do_sample=False)
    assert out.shape[1] == enc["input_ids"].shape[1] + 5 or tok.eos_token_id in out[0].tolist()
