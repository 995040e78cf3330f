"""The base models of the paper, and any other causal LM of a known family.

- `REGISTRY`: the six base models of PAPER.md (section 2), by short name, as `ModelSpec`s.
- `resolve_model(name_or_path, family=None)`: a registry name, or any other causal LM given as
  a Hugging Face id or a local folder plus its family.
- `check_lora_targets(model, targets, field)`: every configured LoRA target must match a module
  of the instantiated model that peft can adapt; the error names the config field and lists the
  model's linear layers (`linear_module_suffixes`).

Families are named by the module names peft needs (STACK_NOTES.md, "Causal LMs: LoRA target
names"), not by the checkpoint's model_type: a LLaMA-shaped model of another name (same
q_proj/k_proj/v_proj/o_proj names) is family "llama".

Remote code: none of the six needs `trust_remote_code` (ruGPT-3.5 13B is a plain
GPT2LMHeadModel checkpoint). Another model gets it only when its config.json asks for it
(an `auto_map` entry) and the caller allows it (`allow_remote_code=True`); a config that asks
without that permission is an error, never a silent grant.

Heavy imports (torch, transformers, huggingface_hub) happen inside the functions.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .errors import UserError

Family = Literal["llama", "xglm", "gpt2"]
Template = Literal["lora", "full"]
Method = Literal["full", "lora"]
FAMILIES: tuple[str, ...] = get_args(Family)

# Attention linears per family (the paper adapts only attention: PAPER.md, LoRA). GPT-2 names
# its attention and MLP output projections both "c_proj", so its targets carry the parent
# ("attn.c_proj"): peft matches a target against the module name or a dotted suffix of it, and a
# bare "c_proj" would adapt the MLP too.
ATTENTION_TARGETS: dict[str, tuple[str, ...]] = {
    "llama": ("q_proj", "k_proj", "v_proj", "o_proj"),
    "xglm": ("q_proj", "k_proj", "v_proj", "out_proj"),
    "gpt2": ("attn.c_attn", "attn.c_proj"),
}
# The MLP option (`lora_targets(family, mlp=True)`).
MLP_TARGETS: dict[str, tuple[str, ...]] = {
    "llama": ("gate_proj", "up_proj", "down_proj"),
    "xglm": ("fc1", "fc2"),
    "gpt2": ("mlp.c_fc", "mlp.c_proj"),
}
# GPT-2's linears are transformers' Conv1D, whose weight is stored (in, out): LoRA must know to
# merge correctly, or peft sets it itself with a warning on every load. Loaded in int8/nf4 they
# become bitsandbytes linears in (out, in) layout; peft's bnb LoRA layers then force it to False,
# so the same spec serves both.
FAN_IN_FAN_OUT: dict[str, bool] = {"llama": False, "xglm": False, "gpt2": True}
# config.json model_type of each family's reference architecture: a local or cached config that
# names another of these types contradicts the family given.
MODEL_TYPES: dict[str, str] = {"llama": "llama", "xglm": "xglm", "gpt2": "gpt2"}


def lora_targets(family: str, *, mlp: bool = False) -> tuple[str, ...]:
    """The family's LoRA target names: attention linears, plus the MLP linears with `mlp`."""
    fam = _check_family(family)
    return ATTENTION_TARGETS[fam] + (MLP_TARGETS[fam] if mlp else ())


def template_for(method: str) -> Template:
    """The paper's template for a fine-tuning method: Human/Assistant ("full") for full
    fine-tuning, system/user/bot ("lora") for LoRA."""
    if method not in ("full", "lora"):
        raise ValueError(f"unknown method {method!r}: expected full or lora")
    return "full" if method == "full" else "lora"


class ModelError(UserError, ValueError):
    """A model name, family or LoRA target the user can fix; the message names the argument or
    config field."""


class ModelSpec(BaseModel):
    """One base causal LM. Usable as an entry of a `models:` config section: `family` fills in
    `lora_targets` and `fan_in_fan_out` when they are left out."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="short name, used in output folders (models/<name>-<method>-<data>)")
    hf_id: str = Field(min_length=1, description="Hugging Face model id, or a local folder with config.json")
    revision: str | None = Field(default=None, description="hub revision (commit or tag); default main")
    family: Family = Field(description="module naming family: llama | xglm | gpt2 (sets the LoRA target names)")
    context_length: int = Field(ge=1, description="maximum sequence length in tokens (max_position_embeddings / n_positions)")
    template: Template = Field(
        default="lora",
        description="default prompt template: lora (system/user/bot) or full (Human/Assistant); "
        "training uses the method's template (template_for)",
    )
    lora_targets: tuple[str, ...] = Field(
        default=(),
        description="LoRA target module names, matched by peft against a module name or its dotted suffix; "
        "default: the family's attention linears",
    )
    fan_in_fan_out: bool | None = Field(
        default=None, description="LoRA fan_in_fan_out (true for GPT-2's Conv1D); default: from the family"
    )
    trust_remote_code: bool = Field(
        default=False, description="load with the checkpoint's own modelling code (only when its config asks)"
    )
    license: str | None = Field(default=None, description="license id as the model card states it")
    parameters: int | None = Field(
        default=None, ge=1,
        description="parameter count, for the --dry-run memory estimate when config.json is not at hand (offline)",
    )
    largest_layer_parameters: int | None = Field(
        default=None, ge=1, description="parameters of the largest layer (the embedding), for the same estimate"
    )
    paper_methods: tuple[Method, ...] = Field(
        default=(), description="methods the paper fine-tuned this model with (Table 1); empty: not tuned there"
    )

    @model_validator(mode="before")
    @classmethod
    def _family_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("family") in FAMILIES:
            data = dict(data)
            if data.get("lora_targets") is None:
                data["lora_targets"] = ATTENTION_TARGETS[data["family"]]
            if data.get("fan_in_fan_out") is None:
                data["fan_in_fan_out"] = FAN_IN_FAN_OUT[data["family"]]
        return data

    @field_validator("lora_targets")
    @classmethod
    def _targets(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v:
            raise ValueError("at least one LoRA target is needed")
        bad = [t for t in v if not t.strip() or t != t.strip() or t.startswith(".") or t.endswith(".")]
        if bad:
            raise ValueError(f"not a module name: {', '.join(repr(t) for t in bad)}")
        if len(set(v)) != len(v):
            raise ValueError("a LoRA target is listed twice")
        return v

    def load_kwargs(self) -> dict[str, Any]:
        """The model-specific arguments of from_pretrained (dtype, quantization are the run's)."""
        return {"revision": self.revision, "trust_remote_code": self.trust_remote_code}

    def lora_kwargs(self) -> dict[str, Any]:
        """The model-specific arguments of peft.LoraConfig (r, alpha, dropout are the run's)."""
        return {"target_modules": list(self.lora_targets), "fan_in_fan_out": bool(self.fan_in_fan_out)}


def _spec(**kw: Any) -> ModelSpec:
    return ModelSpec(**kw)


# PAPER.md, base models and fine-tuning. Context lengths are the checkpoints' own
# (max_position_embeddings / n_positions); the paper trained at 2048. Licenses as each model card
# states them: LLaMA-1 is research-only ("other"), LLaMA-2 has its own community license. Parameter
# counts (for --dry-run offline) follow from each architecture's published shape: exact for
# LLaMA (vocab 32000), rounded for XGLM-4.5B and ruGPT-3.5 13B; the embedding is the largest layer.
REGISTRY: dict[str, ModelSpec] = {
    s.name: s
    for s in (
        _spec(name="xglm-4.5b", hf_id="facebook/xglm-4.5B", family="xglm", context_length=2048,
              parameters=4_550_000_000, largest_layer_parameters=256_008 * 2048, license="mit", paper_methods=("full", "lora")),
        _spec(name="llama-7b", hf_id="huggyllama/llama-7b", family="llama", context_length=2048,
              parameters=6_738_415_616, largest_layer_parameters=32_000 * 4096, license="other", paper_methods=("lora",)),
        _spec(name="llama-13b", hf_id="huggyllama/llama-13b", family="llama", context_length=2048,
              parameters=13_015_864_320, largest_layer_parameters=32_000 * 5120, license="other"),
        _spec(name="llama2-7b", hf_id="meta-llama/Llama-2-7b-hf", family="llama", context_length=4096,
              parameters=6_738_415_616, largest_layer_parameters=32_000 * 4096, license="llama2", paper_methods=("lora",)),
        _spec(name="llama2-13b", hf_id="meta-llama/Llama-2-13b-hf", family="llama", context_length=4096,
              parameters=13_015_864_320, largest_layer_parameters=32_000 * 5120, license="llama2", paper_methods=("lora",)),
        _spec(name="rugpt3.5-13b", hf_id="ai-forever/ruGPT-3.5-13B", family="gpt2", context_length=2048,
              parameters=12_850_000_000, largest_layer_parameters=50_272 * 5120, license="mit", paper_methods=("lora",)),
    )
}


def _check_family(family: str | None, what: str = "") -> str:
    if family is None:
        raise ModelError(
            f"{what!r} is not a registered model ({', '.join(REGISTRY)}): give its family "
            f"with the `family` argument ({' | '.join(FAMILIES)})"
        )
    if family not in FAMILIES:
        raise ModelError(f"unknown family {family!r} for the `family` argument: expected one of {' | '.join(FAMILIES)}")
    return family


def _read_config(name_or_path: str, revision: str | None) -> dict[str, Any]:
    """config.json of a local folder, else of a hub id (from the local cache, or downloaded when
    the hub is reachable)."""
    local = Path(name_or_path).expanduser()
    if local.is_dir():
        cfg = local / "config.json"
        if not cfg.is_file():
            raise ModelError(f"{name_or_path}: a local model folder needs a config.json")
        return json.loads(cfg.read_text(encoding="utf-8"))
    from huggingface_hub import hf_hub_download

    try:
        path = hf_hub_download(name_or_path, "config.json", revision=revision)
    except Exception as e:  # offline, not cached, gated, not a repo: the fix is the same
        raise ModelError(
            f"{name_or_path}: cannot read its config.json from the hub or the local cache "
            f"({type(e).__name__}); give a local model folder, or pass `context_length`"
        ) from e
    return json.loads(Path(path).read_text(encoding="utf-8"))


def context_length_of(config: dict[str, Any]) -> int | None:
    """Maximum positions from a config.json: max_position_embeddings (LLaMA, XGLM) or
    n_positions / n_ctx (GPT-2)."""
    for key in ("max_position_embeddings", "n_positions", "n_ctx"):
        v = config.get(key)
        if isinstance(v, int) and v > 0:
            return v
    return None


def resolve_model(
    name_or_path: str,
    family: str | None = None,
    *,
    name: str | None = None,
    revision: str | None = None,
    context_length: int | None = None,
    lora_targets: Sequence[str] | None = None,
    template: Template | None = None,
    allow_remote_code: bool = False,
) -> ModelSpec:
    """The spec of a registry name, or of any other causal LM (HF id or local folder) given with
    its `family`.

    For an unregistered model the context length comes from its config.json (a local folder's,
    or the hub's: cached, or fetched when online) unless `context_length` is given, and the LoRA
    targets from the family unless `lora_targets` is given. Keyword overrides apply to registry
    entries too.
    """
    overrides: dict[str, Any] = {
        k: v
        for k, v in {
            "name": name, "revision": revision, "context_length": context_length,
            "template": template,
            "lora_targets": tuple(lora_targets) if lora_targets is not None else None,
        }.items()
        if v is not None
    }
    if name_or_path in REGISTRY:
        spec = REGISTRY[name_or_path]
        if family is not None and family != spec.family:
            _check_family(family)
            raise ModelError(
                f"{name_or_path!r} is a registered {spec.family} model; the `family` argument says {family!r}"
            )
        return ModelSpec(**{**spec.model_dump(), **overrides}) if overrides else spec

    fam = _check_family(family, name_or_path)
    config: dict[str, Any] | None = None
    if context_length is None or Path(name_or_path).expanduser().is_dir():
        config = _read_config(name_or_path, revision)
    trust = False
    if config is not None:
        model_type = config.get("model_type")
        if model_type in MODEL_TYPES.values() and model_type != MODEL_TYPES[fam]:
            raise ModelError(
                f"{name_or_path}: the `family` argument says {fam!r}, but its config.json says model_type {model_type!r}"
            )
        if "AutoModelForCausalLM" in (config.get("auto_map") or {}):
            if not allow_remote_code:
                raise ModelError(
                    f"{name_or_path}: its config.json asks for its own modelling code (auto_map); "
                    "read that code, then pass allow_remote_code=True to load it"
                )
            trust = True
        if context_length is None:
            context_length = context_length_of(config)
    if context_length is None:
        raise ModelError(f"{name_or_path}: config.json gives no context length; pass `context_length`")
    default_name = Path(name_or_path.rstrip("/")).name or name_or_path
    return ModelSpec(
        **{
            "name": default_name,
            "hf_id": name_or_path,
            "family": fam,
            "context_length": context_length,
            "trust_remote_code": trust,
            **overrides,
        }
    )


# ---- checking LoRA targets against an instantiated model -------------------------------------


def _adaptable(module: Any) -> bool:
    """Whether peft's LoRA can wrap this module: linears (bitsandbytes' Linear8bitLt and Linear4bit
    subclass nn.Linear), GPT-2's Conv1D, embeddings and convolutions."""
    import torch.nn as nn

    if isinstance(module, (nn.Linear, nn.Embedding, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.MultiheadAttention)):
        return True
    return type(module).__name__ == "Conv1D"  # transformers.pytorch_utils.Conv1D, without importing it


def _is_linear(module: Any) -> bool:
    import torch.nn as nn

    return isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"


def matches(module_name: str, target: str) -> bool:
    """peft's rule for a list of target names: the full name, or a dotted suffix of it."""
    return module_name == target or module_name.endswith("." + target)


def linear_module_suffixes(model: Any) -> list[str]:
    """The distinct names of the model's linear layers, as `parent.leaf` ("self_attn.q_proj",
    "mlp.c_proj"; the leaf alone under a numbered container or at the top), sorted. Each is a
    valid LoRA target."""
    out: set[str] = set()
    for full, module in model.named_modules():
        if not full or not _is_linear(module):
            continue
        parts = full.split(".")
        if len(parts) >= 2 and not parts[-2].isdigit():
            out.add(".".join(parts[-2:]))
        else:
            out.add(parts[-1])
    return sorted(out)


def check_lora_targets(
    model: Any, targets: Iterable[str], field: str = "models.<name>.lora_targets"
) -> dict[str, int]:
    """How many modules of `model` each target matches (peft's rule). Raises ModelError naming
    `field` and listing the model's linear layers when a target matches no module peft can
    adapt."""
    targets = list(targets)
    if not targets:
        raise ModelError(f"{field}: no LoRA targets given")
    modules = [(n, m) for n, m in model.named_modules() if n]
    counts: dict[str, int] = {}
    problems: list[str] = []
    for t in targets:
        hit = [m for n, m in modules if matches(n, t)]
        ok = [m for m in hit if _adaptable(m)]
        counts[t] = len(ok)
        if not hit:
            problems.append(f"{t!r} matches no module")
        elif not ok:
            kinds = sorted({type(m).__name__ for m in hit})
            problems.append(f"{t!r} matches only modules LoRA cannot adapt ({', '.join(kinds)})")
    if problems:
        raise ModelError(
            f"{field}: {'; '.join(problems)} in {type(model).__name__}. "
            f"Its linear layers: {', '.join(linear_module_suffixes(model))}"
        )
    return counts


def check_spec_targets(model: Any, spec: ModelSpec) -> dict[str, int]:
    """`check_lora_targets` for a spec's targets, naming its config field."""
    return check_lora_targets(model, spec.lora_targets, field=f"models.{spec.name}.lora_targets")


def registry_table() -> list[dict[str, Any]]:
    """The registry as rows (for docs and the CLI)."""
    return [
        {
            "name": s.name, "hf_id": s.hf_id, "family": s.family, "context": s.context_length,
            "template": s.template, "lora_targets": " ".join(s.lora_targets), "license": s.license,
            "paper": "+".join(s.paper_methods) or "-",
        }
        for s in REGISTRY.values()
    ]

