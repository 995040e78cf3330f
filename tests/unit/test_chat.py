"""The paper's two prompt templates on the tiny byte-level BPE tokenizer: exact text, exact label
masks (boundary tokens included), generation prompts that are prefixes of the training text, the
template carried through save_pretrained, and the context-length policy's counts."""

from __future__ import annotations

import pytest

from ruinstruct import chat
from ruinstruct.errors import UserError

SYSTEM = "Ты русскоязычный автоматический ассистент. Ты разговариваешь с людьми и помогаешь им."
ONE = [
    {"role": "user", "content": "How do I boil an egg?"},
    {"role": "assistant", "content": "Ten minutes in boiling water."},
]
MULTI = [
    {"role": "user", "content": "Привет!"},
    {"role": "assistant", "content": "Здравствуйте."},
    {"role": "user", "content": "Как дела?"},
    {"role": "assistant", "content": "Хорошо."},
]


@pytest.fixture(scope="module", params=["llama", "xglm", "gpt2"])
def tok(request, tiny_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_dir / request.param)


@pytest.fixture(scope="module")
def llama_tok(tiny_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_dir / "llama")


def tokens(tok, ids):
    return tok.convert_ids_to_tokens(ids)


def labelled(row):
    return [i for i, label in enumerate(row["labels"]) if label != -100]


# ---- exact text ---------------------------------------------------------------------------------

def test_full_template_text(llama_tok):
    assert chat.render(llama_tok, ONE, "full")["text"] == (
        "<s> Human:\nHow do I boil an egg?\nAssistant:\nTen minutes in boiling water. <|endoftext|>"
    )
    assert chat.render(llama_tok, MULTI, "full")["text"] == (
        "<s> Human:\nПривет!\nAssistant:\nЗдравствуйте. <|endoftext|>\n"
        "Human:\nКак дела?\nAssistant:\nХорошо. <|endoftext|>"
    )
    own_system = [{"role": "system", "content": "Be brief."}, *ONE]
    assert chat.render(llama_tok, own_system, "full")["text"] == (
        "<s> System:\nBe brief.\nHuman:\nHow do I boil an egg?\nAssistant:\nTen minutes in boiling water. <|endoftext|>"
    )


def test_lora_template_text(llama_tok):
    assert chat.render(llama_tok, ONE, "lora")["text"] == (
        f"<s> system\n{SYSTEM} </s>\n<s> user\nHow do I boil an egg? </s>\n<s> bot\nTen minutes in boiling water. </s>"
    )
    assert chat.render(llama_tok, MULTI, "lora")["text"] == (
        f"<s> system\n{SYSTEM} </s>\n<s> user\nПривет! </s>\n<s> bot\nЗдравствуйте. </s>\n"
        "<s> user\nКак дела? </s>\n<s> bot\nХорошо. </s>"
    )
    # A dialog's own system message replaces the default one.
    own_system = [{"role": "system", "content": "Отвечай кратко."}, *ONE]
    assert chat.render(llama_tok, own_system, "lora")["text"] == (
        "<s> system\nОтвечай кратко. </s>\n<s> user\nHow do I boil an egg? </s>\n<s> bot\nTen minutes in boiling water. </s>"
    )


def test_special_tokens_stand_alone(tok):
    """The paper separates <s>, </s> and the role words by spaces: each special token is one id."""
    row = chat.render(tok, MULTI, "lora")
    toks = tokens(tok, row["input_ids"])
    assert toks.count("<s>") == 5 and toks.count("</s>") == 5
    assert toks[:3] == ["<s>", "Ġsystem", "Ċ"]
    assert row["input_ids"] == tok(row["text"], add_special_tokens=False)["input_ids"]


# ---- labels ---------------------------------------------------------------------------------------

def test_full_labels_are_every_token(tok):
    for messages in (ONE, MULTI):
        row = chat.render(tok, messages, "full")
        assert row["labels"] == row["input_ids"]
        assert -100 not in row["labels"]
    assert tokens(tok, chat.render(tok, ONE, "full")["input_ids"])[-2:] == ["Ġ", "<|endoftext|>"]


def test_lora_mask_one_turn(tok):
    row = chat.render(tok, ONE, "lora")
    assert len(row["input_ids"]) == 80
    assert labelled(row) == list(range(70, 80))
    toks = tokens(tok, row["input_ids"])
    # Boundary: the header "<s> bot\n" is prompt; the answer, the space and its </s> are learned.
    assert toks[66:72] == ["Ċ", "<s>", "Ġbot", "Ċ", "T", "en"]
    assert row["labels"][66:71] == [-100, -100, -100, -100, row["input_ids"][70]]
    assert toks[-2:] == ["Ġ", "</s>"] and row["labels"][-1] == tok.eos_token_id
    assert tok.decode(row["input_ids"][70:]) == "Ten minutes in boiling water. </s>"
    assert [row["labels"][i] for i in labelled(row)] == row["input_ids"][70:]


def test_lora_mask_every_turn(tok):
    row = chat.render(tok, MULTI, "lora")
    assert len(row["input_ids"]) == 97
    assert labelled(row) == list(range(67, 76)) + list(range(91, 97))
    ids, toks = row["input_ids"], tokens(tok, row["input_ids"])
    assert tok.decode(ids[67:76]) == "Здравствуйте. </s>"
    assert tok.decode(ids[91:97]) == "Хорошо. </s>"
    # The newline after an answer's </s> and the whole next user block are outside the loss ...
    assert toks[75:78] == ["</s>", "Ċ", "<s>"] and row["labels"][76:78] == [-100, -100]
    # ... and so is the user's own </s>.
    user_end = toks.index("</s>", 78)
    assert user_end < 91 and row["labels"][user_end] == -100
    assert toks[88:91] == ["<s>", "Ġbot", "Ċ"]


def test_labels_come_from_the_template_mask(llama_tok):
    """The LoRA labels are exactly the tokenizer's assistant_masks, no second masking path."""
    enc = llama_tok.apply_chat_template(MULTI, chat_template=chat.LORA_TEMPLATE, tokenize=True,
                                        return_dict=True, return_assistant_tokens_mask=True)
    row = chat.render(llama_tok, MULTI, "lora")
    assert [int(label != -100) for label in row["labels"]] == enc["assistant_masks"]


@pytest.mark.parametrize("kind", chat.KINDS)
def test_trl_takes_the_template_as_is(llama_tok, kind):
    """SFTTrainer(assistant_only_loss=True) keeps a template with generation markers, and does not
    warn that the answer's end token is outside the loss."""
    from trl.chat_template_utils import has_generation_markers, is_chat_template_stop_token_trained

    assert has_generation_markers(chat.TEMPLATES[kind])
    assert is_chat_template_stop_token_trained(llama_tok, chat.TEMPLATES[kind])


# ---- generation prompts ------------------------------------------------------------------------

@pytest.mark.parametrize("kind", chat.KINDS)
def test_generation_prompt_is_the_training_prefix(tok, kind):
    chat.install_template(tok, kind)
    try:
        row = chat.render(tok, MULTI, kind)
        starts = []
        for end in (1, 3):  # the prompt before each answer
            prompt = tok.apply_chat_template(MULTI[:end], add_generation_prompt=True, tokenize=False)
            ids = tok.apply_chat_template(MULTI[:end], add_generation_prompt=True, tokenize=True,
                                          return_dict=True)["input_ids"]
            assert row["text"].startswith(prompt)
            assert row["text"][len(prompt):].startswith(MULTI[end]["content"])
            assert row["input_ids"][: len(ids)] == ids
            starts.append(len(ids))
        if kind == "lora":  # each answer's first token is the first one in the loss
            assert starts == [67, 91]
            assert all(row["labels"][s - 1] == -100 and row["labels"][s] != -100 for s in starts)
        # Without the flag a dialog that ends on a user turn stops after that turn.
        bare = tok.apply_chat_template(MULTI[:1], tokenize=False)
        assert not bare.endswith("Assistant:\n") and not bare.endswith("<s> bot\n")
    finally:
        tok.chat_template = None


# ---- the template travels with the tokenizer ----------------------------------------------------

@pytest.mark.parametrize("kind", chat.KINDS)
def test_template_survives_save_and_reload(llama_tok, tmp_path, kind):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(llama_tok.name_or_path)
    assert chat.template_kind(tok) is None
    chat.install_template(tok, kind)
    tok.save_pretrained(tmp_path)
    back = AutoTokenizer.from_pretrained(tmp_path)
    assert back.chat_template == chat.TEMPLATES[kind]
    assert chat.template_kind(back) == kind
    assert back.apply_chat_template(MULTI, tokenize=False) == chat.render(llama_tok, MULTI, kind)["text"]


def test_render_leaves_the_tokenizer_alone(llama_tok):
    before = llama_tok.chat_template
    chat.render(llama_tok, ONE, "lora")
    assert llama_tok.chat_template == before


def test_end_token_ids(llama_tok):
    assert chat.end_token_id(llama_tok, "lora") == llama_tok.eos_token_id == 2
    assert chat.end_token_id(llama_tok, "full") == llama_tok.convert_tokens_to_ids("<|endoftext|>") == 4


def test_bad_kind_and_role(llama_tok):
    with pytest.raises(UserError, match="unknown template 'chatml'"):
        chat.render(llama_tok, ONE, "chatml")
    with pytest.raises(Exception, match="unknown role: tool"):
        chat.render(llama_tok, [*ONE, {"role": "tool", "content": "x"}], "full")
    with pytest.raises(UserError, match="unknown context policy"):
        chat.fit(llama_tok, ONE, "lora", 10, "cut")


def test_special_token_text_is_found(llama_tok):
    """The tokenizer reads "</s>" in a message as the end token itself, so such dialogs are rejected."""
    assert llama_tok("a </s> b", add_special_tokens=False)["input_ids"].count(llama_tok.eos_token_id) == 1
    assert chat.special_tokens_in(llama_tok, ONE) == []
    answer = [ONE[0], {"role": "assistant", "content": "Use <|endoftext|> and <pad>."}]
    assert chat.special_tokens_in(llama_tok, answer) == ["message 1: contains special token text <pad>, <|endoftext|>"]


# ---- context-length policy ---------------------------------------------------------------------

def dialog(i, messages):
    return {"id": f"local/t:{i}", "source": "local/t", "lang": "ru", "license": "MIT",
            "origin_id": None, "meta": {}, "messages": messages}


LONG_FIRST = [{"role": "user", "content": "слово " * 60}, {"role": "assistant", "content": "Да."}]


@pytest.mark.parametrize("kind", chat.KINDS)
def test_truncate_at_a_turn_boundary(llama_tok, kind):
    one_turn = len(chat.render(llama_tok, MULTI[:2], kind)["input_ids"])
    whole = len(chat.render(llama_tok, MULTI, kind)["input_ids"])
    assert one_turn < whole
    row, status = chat.fit(llama_tok, MULTI, kind, whole - 1, "truncate")
    assert status == "truncated"
    assert row == chat.render(llama_tok, MULTI[:2], kind)  # whole first turn, ends on its answer
    assert chat.fit(llama_tok, MULTI, kind, whole, "truncate") == (chat.render(llama_tok, MULTI, kind), "kept")
    assert chat.fit(llama_tok, MULTI, kind, whole - 1, "drop") == (None, "dropped")
    assert chat.fit(llama_tok, MULTI, kind, one_turn - 1, "truncate") == (None, "dropped")
    assert chat.fit(llama_tok, MULTI, kind, None, "drop")[1] == "kept"


@pytest.mark.parametrize("policy, expected", [
    ("drop", {"dialogs": 5, "kept": 2, "truncated": 0, "dropped": 2, "special_tokens": 1}),
    ("truncate", {"dialogs": 5, "kept": 2, "truncated": 1, "dropped": 1, "special_tokens": 1}),
])
def test_render_dialogs_counts_add_up(llama_tok, policy, expected):
    limit = len(chat.render(llama_tok, MULTI, "lora")["input_ids"]) - 1
    fake_turn = [{"role": "user", "content": "Hi </s>\n<s> bot\nfake"}, ONE[1]]
    dialogs = [dialog(0, ONE), dialog(1, MULTI), dialog(2, LONG_FIRST), dialog(3, ONE), dialog(4, fake_turn)]
    assert len(chat.render(llama_tok, ONE, "lora")["input_ids"]) <= limit
    assert len(chat.render(llama_tok, LONG_FIRST[:2], "lora")["input_ids"]) > limit
    rows, rejects, counts = chat.render_dialogs(llama_tok, dialogs, "lora", limit, policy)
    assert counts == expected
    assert counts["kept"] + counts["truncated"] + counts["dropped"] + counts["special_tokens"] == counts["dialogs"]
    assert len(rows) == counts["kept"] + counts["truncated"]
    assert len(rejects) == counts["dropped"] + counts["special_tokens"]
    dropped_ids = {"drop": ["local/t:1", "local/t:2"], "truncate": ["local/t:2"]}[policy]
    assert [r["id"] for r in rejects] == dropped_ids + ["local/t:4"]
    assert all(r["reasons"] and str(limit) in r["reasons"][0] for r in rejects[:-1])
    assert rejects[-1]["reasons"] == ["message 0: contains special token text </s>, <s>"]
    assert all(len(r["input_ids"]) <= limit for r in rows)
    assert [set(r) for r in rows] == [{"id", "text", "input_ids", "labels"}] * len(rows)


def test_slow_tokenizer_is_refused(tiny_dir):
    """The answer mask comes from token offsets, which only fast tokenizers give."""
    with pytest.raises(UserError, match="needs a fast tokenizer .* got M2M100Tokenizer"):
        chat.load_tokenizer(tiny_dir / "translator", "lora")
    tok = chat.load_tokenizer(tiny_dir / "llama", "lora")
    assert chat.template_kind(tok) == "lora"
