"""The evaluation loader: an adapter folder runs as its base with the adapter merged in; a full
folder as itself; a missing folder is one error naming it."""

from __future__ import annotations

import pytest

from ruinstruct.errors import UserError
from ruinstruct.evaluate.load import base_of, is_adapter, load_for_eval


def test_adapter_folder_loads_merged_with_the_same_logits(tiny_dir, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base_dir = tiny_dir / "llama"
    torch.manual_seed(0)
    peft_model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base_dir),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    ).eval()
    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(adapter)
    AutoTokenizer.from_pretrained(base_dir).save_pretrained(adapter)
    assert is_adapter(adapter) and base_of(adapter) == str(base_dir)

    model, tok = load_for_eval(adapter)
    assert tok.padding_side == "left" and tok.pad_token_id is not None
    assert not hasattr(model, "peft_config")  # merged: a plain model
    ids = torch.tensor([tok("Привет, как дела?")["input_ids"]])
    with torch.no_grad():
        want = peft_model(input_ids=ids).logits
        base = AutoModelForCausalLM.from_pretrained(base_dir).eval()(input_ids=ids).logits
        got = model(input_ids=ids).logits
    assert torch.allclose(got, want, atol=1e-4)
    assert not torch.allclose(base, want, atol=1e-3)  # the adapter changes the output


def test_full_folder_and_missing_folder(tiny_dir, tmp_path):
    model, tok = load_for_eval(tiny_dir / "xglm", padding_side="right")
    assert type(model).__name__ == "XGLMForCausalLM" and tok.padding_side == "right"
    with pytest.raises(UserError, match="no-such-model: model folder not found"):
        load_for_eval(tmp_path / "no-such-model")
