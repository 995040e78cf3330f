"""Model registry: the paper's six base models, their LoRA targets checked against the tiny model
of each family (and against what peft itself wraps), and resolve_model for other models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from ruinstruct import models as M
from ruinstruct.errors import UserError

LAYERS = 2  # tiny.LM_LAYERS


@pytest.fixture(scope="module")
def tiny_models(tiny_dir: Path) -> dict:
    from transformers import AutoModelForCausalLM

    return {f: AutoModelForCausalLM.from_pretrained(tiny_dir / f) for f in ("llama", "xglm", "gpt2")}


def test_registry_holds_the_papers_six_models():
    got = {n: (s.hf_id, s.family, s.context_length, s.template, s.paper_methods) for n, s in M.REGISTRY.items()}
    assert got == {
        "xglm-4.5b": ("facebook/xglm-4.5B", "xglm", 2048, "lora", ("full", "lora")),
        "llama-7b": ("huggyllama/llama-7b", "llama", 2048, "lora", ("lora",)),
        "llama-13b": ("huggyllama/llama-13b", "llama", 2048, "lora", ()),
        "llama2-7b": ("meta-llama/Llama-2-7b-hf", "llama", 4096, "lora", ("lora",)),
        "llama2-13b": ("meta-llama/Llama-2-13b-hf", "llama", 4096, "lora", ("lora",)),
        "rugpt3.5-13b": ("ai-forever/ruGPT-3.5-13B", "gpt2", 2048, "lora", ("lora",)),
    }
    targets = {n: s.lora_targets for n, s in M.REGISTRY.items()}
    assert targets["xglm-4.5b"] == ("q_proj", "k_proj", "v_proj", "out_proj")
    assert targets["llama2-13b"] == ("q_proj", "k_proj", "v_proj", "o_proj")
    assert targets["rugpt3.5-13b"] == ("attn.c_attn", "attn.c_proj")
    assert {n: s.fan_in_fan_out for n, s in M.REGISTRY.items()} == {
        "xglm-4.5b": False, "llama-7b": False, "llama-13b": False,
        "llama2-7b": False, "llama2-13b": False, "rugpt3.5-13b": True,
    }
    assert not any(s.trust_remote_code for s in M.REGISTRY.values())
    assert [r["name"] for r in M.registry_table()] == list(M.REGISTRY)


@pytest.mark.parametrize("name", list(M.REGISTRY))
def test_registry_targets_exist_in_the_tiny_model_of_the_family(name, tiny_models):
    spec = M.REGISTRY[name]
    # one module per target per layer
    assert M.check_spec_targets(tiny_models[spec.family], spec) == {t: LAYERS for t in spec.lora_targets}


@pytest.mark.parametrize("family", ["llama", "xglm", "gpt2"])
def test_peft_wraps_exactly_the_modules_the_check_counts(family, tiny_dir):
    """Our suffix rule is peft's: the modules peft wraps are the ones check_lora_targets matched,
    and GPT-2's MLP c_proj stays out."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_dir / family)
    kwargs = M.lora_targets(family), M.FAN_IN_FAN_OUT[family]
    names = sorted(n for n, _ in model.named_modules() if any(M.matches(n, t) for t in kwargs[0]))
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=4, target_modules=list(kwargs[0]),
                                                  fan_in_fan_out=kwargs[1]))
    wrapped = sorted(
        n.removeprefix("base_model.model.") for n, m in peft_model.named_modules() if hasattr(m, "lora_A")
    )
    assert wrapped == names
    assert len(wrapped) == LAYERS * len(kwargs[0])
    if family == "gpt2":
        assert not any(n.endswith("mlp.c_proj") for n in wrapped)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_targets_check_on_the_int8_model(family, tiny_dir):
    """The LoRA path loads int8 weights: bitsandbytes linears (GPT-2's Conv1D included) still
    count as linears, and peft's int8 LoRA layers ignore GPT-2's fan_in_fan_out."""
    import warnings

    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = AutoModelForCausalLM.from_pretrained(
            tiny_dir / family, quantization_config=BitsAndBytesConfig(load_in_8bit=True), device_map="cpu"
        )
        targets = M.lora_targets(family)
        assert {type(m).__name__ for n, m in model.named_modules() if any(M.matches(n, t) for t in targets)} == {
            "Linear8bitLt"
        }
        assert M.check_lora_targets(model, targets) == {t: LAYERS for t in targets}
        spec = M.resolve_model(str(tiny_dir / family), family)
        peft_model = get_peft_model(model, LoraConfig(r=4, **spec.lora_kwargs()))
    flags = {m.fan_in_fan_out for m in peft_model.modules() if hasattr(m, "lora_A")}
    assert flags == {False}


def test_linear_module_suffixes(tiny_models):
    assert M.linear_module_suffixes(tiny_models["llama"]) == [
        "lm_head", "mlp.down_proj", "mlp.gate_proj", "mlp.up_proj",
        "self_attn.k_proj", "self_attn.o_proj", "self_attn.q_proj", "self_attn.v_proj",
    ]
    assert M.linear_module_suffixes(tiny_models["xglm"]) == [
        "fc1", "fc2", "lm_head", "self_attn.k_proj", "self_attn.out_proj", "self_attn.q_proj", "self_attn.v_proj",
    ]
    assert M.linear_module_suffixes(tiny_models["gpt2"]) == [
        "attn.c_attn", "attn.c_proj", "lm_head", "mlp.c_fc", "mlp.c_proj",
    ]


def test_mlp_option_matches_too(tiny_models):
    t = M.lora_targets("llama", mlp=True)
    assert t == ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    assert M.check_lora_targets(tiny_models["llama"], t) == {x: LAYERS for x in t}
    assert M.check_lora_targets(tiny_models["gpt2"], M.lora_targets("gpt2", mlp=True)) == {
        "attn.c_attn": 2, "attn.c_proj": 2, "mlp.c_fc": 2, "mlp.c_proj": 2,
    }
    # a bare "c_proj" matches attention and MLP projections alike
    assert M.check_lora_targets(tiny_models["gpt2"], ["c_proj"]) == {"c_proj": 2 * LAYERS}


def test_wrong_target_names_the_field_and_the_available_layers(tiny_models):
    with pytest.raises(M.ModelError) as e:
        M.check_lora_targets(tiny_models["llama"], ["q_proj", "out_proj"], field="models.llama-7b.lora_targets")
    assert str(e.value) == (
        "models.llama-7b.lora_targets: 'out_proj' matches no module in LlamaForCausalLM. Its linear layers: "
        "lm_head, mlp.down_proj, mlp.gate_proj, mlp.up_proj, self_attn.k_proj, self_attn.o_proj, "
        "self_attn.q_proj, self_attn.v_proj"
    )
    assert isinstance(e.value, UserError)


def test_target_on_a_non_linear_module_is_refused(tiny_models):
    with pytest.raises(M.ModelError) as e:
        M.check_lora_targets(tiny_models["gpt2"], ["attn", "c_fc"])
    assert str(e.value) == (
        "models.<name>.lora_targets: 'attn' matches only modules LoRA cannot adapt (GPT2Attention) in "
        "GPT2LMHeadModel. Its linear layers: attn.c_attn, attn.c_proj, lm_head, mlp.c_fc, mlp.c_proj"
    )


def test_spec_field_is_named_after_the_model(tiny_models):
    spec = M.ModelSpec(name="mine", hf_id="x/y", family="xglm", context_length=64, lora_targets=["o_proj"])
    with pytest.raises(M.ModelError, match=r"^models\.mine\.lora_targets: 'o_proj' matches no module in XGLMForCausalLM"):
        M.check_spec_targets(tiny_models["xglm"], spec)


def test_resolve_registry_name():
    assert M.resolve_model("llama2-7b") is M.REGISTRY["llama2-7b"]
    assert M.resolve_model("llama2-7b", "llama") is M.REGISTRY["llama2-7b"]
    s = M.resolve_model("xglm-4.5b", context_length=1024, template="full")
    assert (s.hf_id, s.context_length, s.template, s.lora_targets) == (
        "facebook/xglm-4.5B", 1024, "full", ("q_proj", "k_proj", "v_proj", "out_proj"))
    assert M.REGISTRY["xglm-4.5b"].context_length == 2048  # the registry entry is untouched
    with pytest.raises(M.ModelError) as e:
        M.resolve_model("rugpt3.5-13b", "llama")
    assert str(e.value) == "'rugpt3.5-13b' is a registered gpt2 model; the `family` argument says 'llama'"


@pytest.mark.parametrize("family", ["llama", "xglm", "gpt2"])
def test_resolve_local_path_with_family(family, tiny_dir, tiny_models):
    spec = M.resolve_model(str(tiny_dir / family), family)
    assert (spec.name, spec.hf_id, spec.family, spec.context_length) == (family, str(tiny_dir / family), family, 2048)
    assert spec.lora_targets == M.ATTENTION_TARGETS[family]
    assert spec.fan_in_fan_out is (family == "gpt2")
    assert spec.trust_remote_code is False
    assert M.check_spec_targets(tiny_models[family], spec) == {t: LAYERS for t in spec.lora_targets}


def test_resolve_reads_context_from_config(tmp_path, tiny_dir):
    d = tmp_path / "small-gpt2"
    shutil.copytree(tiny_dir / "gpt2", d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["n_positions"] = 512
    (d / "config.json").write_text(json.dumps(cfg))
    spec = M.resolve_model(str(d), "gpt2", name="mine", lora_targets=["c_attn"])
    assert (spec.name, spec.context_length, spec.lora_targets) == ("mine", 512, ("c_attn",))
    assert M.resolve_model(str(d), "gpt2", context_length=256).context_length == 256


def test_resolve_errors(tmp_path, tiny_dir):
    with pytest.raises(M.ModelError) as e:
        M.resolve_model("org/some-model")
    assert str(e.value) == (
        "'org/some-model' is not a registered model (xglm-4.5b, llama-7b, llama-13b, llama2-7b, llama2-13b, "
        "rugpt3.5-13b): give its family with the `family` argument (llama | xglm | gpt2)"
    )
    with pytest.raises(M.ModelError) as e:
        M.resolve_model("org/some-model", "mistral")
    assert str(e.value) == "unknown family 'mistral' for the `family` argument: expected one of llama | xglm | gpt2"
    with pytest.raises(M.ModelError) as e:
        M.resolve_model(str(tiny_dir / "gpt2"), "llama")
    assert str(e.value) == (
        f"{tiny_dir / 'gpt2'}: the `family` argument says 'llama', but its config.json says model_type 'gpt2'"
    )
    (tmp_path / "empty").mkdir()
    with pytest.raises(M.ModelError, match="a local model folder needs a config.json"):
        M.resolve_model(str(tmp_path / "empty"), "llama")
    d = tmp_path / "noctx"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(M.ModelError) as e:
        M.resolve_model(str(d), "llama")
    assert str(e.value) == f"{d}: config.json gives no context length; pass `context_length`"


def test_remote_code_only_when_the_config_asks_and_the_caller_allows(tmp_path, tiny_dir):
    d = tmp_path / "custom"
    shutil.copytree(tiny_dir / "llama", d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["auto_map"] = {"AutoModelForCausalLM": "modeling_custom.CustomForCausalLM"}
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(M.ModelError) as e:
        M.resolve_model(str(d), "llama")
    assert str(e.value) == (
        f"{d}: its config.json asks for its own modelling code (auto_map); "
        "read that code, then pass allow_remote_code=True to load it"
    )
    assert M.resolve_model(str(d), "llama", allow_remote_code=True).trust_remote_code is True
    assert M.resolve_model(str(tiny_dir / "llama"), "llama", allow_remote_code=True).trust_remote_code is False


def test_hub_id_without_context_length_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # an empty cache: nothing to find
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(M.ModelError) as e:
        M.resolve_model("org/not-cached", "llama")
    assert str(e.value) == (
        "org/not-cached: cannot read its config.json from the hub or the local cache (LocalEntryNotFoundError); "
        "give a local model folder, or pass `context_length`"
    )


def test_hub_id_with_context_length_needs_no_hub():
    spec = M.resolve_model("org/other-llama", "llama", context_length=8192)
    assert (spec.name, spec.hf_id, spec.context_length, spec.lora_targets) == (
        "other-llama", "org/other-llama", 8192, ("q_proj", "k_proj", "v_proj", "o_proj"))


def test_model_spec_as_config_entry():
    s = M.ModelSpec.model_validate({"name": "g", "hf_id": "x/g", "family": "gpt2", "context_length": 1024})
    assert (s.lora_targets, s.fan_in_fan_out, s.template) == (("attn.c_attn", "attn.c_proj"), True, "lora")
    assert s.lora_kwargs() == {"target_modules": ["attn.c_attn", "attn.c_proj"], "fan_in_fan_out": True}
    assert s.load_kwargs() == {"revision": None, "trust_remote_code": False}
    with pytest.raises(ValidationError, match="extra_forbidden"):
        M.ModelSpec.model_validate({"name": "g", "hf_id": "x/g", "family": "gpt2", "context_length": 1, "ctx": 2})
    with pytest.raises(ValidationError, match="at least one LoRA target is needed"):
        M.ModelSpec(name="g", hf_id="x/g", family="gpt2", context_length=1, lora_targets=[])
    with pytest.raises(ValidationError, match="a LoRA target is listed twice"):
        M.ModelSpec(name="g", hf_id="x/g", family="llama", context_length=1, lora_targets=["q_proj", "q_proj"])
    with pytest.raises(ValidationError, match="not a module name: '.q_proj'"):
        M.ModelSpec(name="g", hf_id="x/g", family="llama", context_length=1, lora_targets=[".q_proj"])
    with pytest.raises(ValidationError, match="family"):
        M.ModelSpec(name="g", hf_id="x/g", family="bert", context_length=1)


def test_template_for_method():
    assert (M.template_for("full"), M.template_for("lora")) == ("full", "lora")
    with pytest.raises(ValueError, match="unknown method 'qlora'"):
        M.template_for("qlora")
