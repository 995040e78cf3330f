"""One pydantic config describes one run; YAML profiles (configs/*.yaml) are instances of it.

The Prefect flows take `RunConfig` as their parameter, so the Prefect UI renders a form for it.
Unknown keys are errors (extra="forbid") so a typo in a profile names the field instead of
being silently ignored.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .filters.config import FilterConfig

SourceKind = Literal["dolly", "oasst1", "chip2", "saiga", "local"]

# Licenses as each upstream states them (PAPER.md: record what the source says).
DEFAULT_LICENSES: dict[str, str] = {
    "dolly": "CC-BY-SA-3.0",
    "oasst1": "Apache-2.0",
    "chip2": "Apache-2.0",
    "saiga": "CC-BY-4.0 (OpenAI-generated: non-commercial use only)",
}
NON_COMMERCIAL_KINDS = {"saiga"}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Oasst1Options(Strict):
    """Options of an `oasst1` source (the message-tree dataset OpenAssistant/oasst1)."""

    policy: Literal["best", "all"] = Field(
        default="best",
        description="best: from each root follow the highest-ranked reply down to a leaf (one dialog per "
        "tree); all: one dialog per root-to-leaf path",
    )
    lang: str = Field(
        default="en", description="keep messages in this language; others (and the messages below them) are excluded"
    )
    spam_threshold: float = Field(
        default=0.5, ge=0, le=1,
        description="reject a message whose 'spam' label value (share of reviewers) is at least this",
    )


# Option sections that belong to one source kind: section name -> kind.
KIND_OPTIONS: dict[str, str] = {"oasst1": "oasst1"}
# Flat keys of older profiles -> where they live now (named in the error).
_MOVED_OPTIONS = {"oasst_policy": "oasst1.policy", "oasst_lang": "oasst1.lang"}


class SourceConfig(Strict):
    """One input dataset. With `path` set it is read from local files in the upstream format
    (offline mode); otherwise `hf_id` is loaded with datasets.load_dataset. Options that only one
    kind understands live in a section named after that kind (`oasst1:`)."""

    name: str = Field(description="record source name: dolly | oasst1 | chip2 | saiga/<name> | local/<name>")
    kind: SourceKind = Field(description="upstream record format: dolly | oasst1 | chip2 | saiga | local")
    hf_id: str | None = Field(default=None, description="Hugging Face dataset id")
    revision: str | None = Field(default=None, description="hub mode: dataset revision (commit or tag); default main")
    split: str = Field(default="train", description="hub mode: dataset split")
    data_files: str | list[str] | None = Field(
        default=None, description="hub mode: files inside the hub repo (load_dataset data_files)"
    )
    path: str | None = Field(default=None, description="local file or folder in the upstream format")
    limit: int | None = Field(default=None, ge=1, description="keep the first N valid dialogs")
    license: str | None = Field(default=None, description="override the source's stated license")
    commercial: bool | None = Field(default=None, description="override: may feed a commercial dataset")
    oasst1: Oasst1Options | None = Field(
        default=None, description="kind oasst1 only: tree policy, language, spam threshold (defaults if unset)"
    )
    translate: bool = Field(
        default=None,  # type: ignore[assignment]  # filled by _default_translate
        description="translate the source's English dialogs (default: yes, except Saiga, which is Russian)",
    )

    @model_validator(mode="before")
    @classmethod
    def _kind_options(cls, data: Any) -> Any:
        """An option section for another kind is an error naming it (it would be ignored);
        the kind's own section is filled with its defaults."""
        if not isinstance(data, dict):
            return data
        name, kind = data.get("name"), data.get("kind")
        for old, new in _MOVED_OPTIONS.items():
            if old in data:
                raise ValueError(f"source {name!r}: `{old}` is now `{new}` (write `{new.split('.')[0]}: "
                                 f"{{{new.split('.')[1]}: ...}}`)")
        for section, owner in KIND_OPTIONS.items():
            if data.get(section) is not None and kind != owner:
                raise ValueError(f"source {name!r}: `{section}` options apply to kind {owner} only, "
                                 f"and this source is kind {kind}")
            if kind == owner and data.get(section) is None:
                data = {**data, section: {}}
        return data

    @model_validator(mode="before")
    @classmethod
    def _default_translate(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("translate") is None:
            data = {**data, "translate": data.get("kind") != "saiga"}
        return data

    @model_validator(mode="after")
    def _needs_location(self) -> SourceConfig:
        if not self.path and not self.hf_id:
            raise ValueError(f"source {self.name!r}: set `path` (local files) or `hf_id` (hub)")
        return self

    @property
    def effective_license(self) -> str:
        return self.license or DEFAULT_LICENSES.get(self.kind, "unknown")

    @property
    def is_commercial(self) -> bool:
        if self.commercial is not None:
            return self.commercial
        return self.kind not in NON_COMMERCIAL_KINDS


class TranslationConfig(Strict):
    """The translator and its generation settings (all of them feed the shard cache key)."""

    model: str = Field(default="facebook/wmt21-dense-24-wide-en-x", description="HF id or local dir")
    revision: str | None = Field(
        default=None, description="model revision on the hub (branch, tag or commit); unset: main. Part of the translator id"
    )
    src_lang: str = Field(
        default="en",
        description="language code of the dialogs that are translated (dialogs in other languages go to the mix as "
        "they are); the tokenizer's source language",
    )
    tgt_lang: str = Field(
        default="ru", description="language code of the translations (the decoder's forced first token)"
    )
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="auto: CUDA when available, else CPU")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        default="auto", description="auto: bf16 (or fp16) on CUDA, fp32 on CPU"
    )
    num_beams: int = Field(default=1, ge=1, description="beam search width; 1 = greedy decoding")
    max_batch_tokens: int = Field(default=4096, ge=16, description="token budget per generate batch")
    max_batch_size: int = Field(
        default=64, ge=1, description="most units (paragraphs or pieces) per generate batch, whatever the token budget"
    )
    max_input_tokens: int | None = Field(
        default=None,
        ge=8,
        description="longer paragraphs are split (sentence ends, then ; : , then words); "
        "unset: from the model's positions (engine.resolve_config)",
    )
    length_ratio: float = Field(default=2.0, gt=0, description="max_new_tokens = ratio * input + extra")
    length_extra: int = Field(default=16, ge=0, description="tokens added to max_new_tokens (see length_ratio)")
    no_repeat_ngram_size: int = Field(
        default=0, ge=0, description="generate never repeats an n-gram of this many tokens; 0 = off"
    )
    repetition_penalty: float = Field(
        default=1.0, gt=0, description="generate's penalty on tokens already produced; 1.0 = off, above 1 discourages repeats"
    )
    shard_size: int = Field(default=256, ge=1, description="dialogs per translation shard (one task run)")
    cache_dir: str | None = Field(
        default=None, description="paragraph cache folder; default <root>/data/cache"
    )

    def generation_key(self) -> dict:
        """Everything that changes a translation's text (the cache key's translator part)."""
        return self.model_dump(exclude={"model", "device", "max_batch_tokens", "max_batch_size", "shard_size", "cache_dir"})

    @property
    def translator_id(self) -> str:
        """Model, revision and a hash of the generation settings: what a cached translation depends on."""
        from .schema import content_hash

        settings = content_hash(self.generation_key() | {"model": _model_identity(self.model)})[:12]
        name = Path(self.model).name if os.path.isdir(self.model) else self.model
        return f"{name}@{self.revision or 'main'}#{settings}"


def _model_identity(model: str) -> str:
    """A hub id stands for itself; a local folder for its content (a rebuilt tiny model is a new
    translator even at the same path, and the same model at another path is the same one)."""
    if not os.path.isdir(model):
        return model
    import hashlib

    h = hashlib.sha256()
    for f in sorted(Path(model).rglob("*")):
        if not f.is_file() or f.name.startswith("."):
            continue
        h.update(f"{f.relative_to(model)}:{f.stat().st_size}".encode())
        if f.stat().st_size <= 64 << 20:  # small files (configs, tiny weights) by content
            h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


class MixConfig(Strict):
    """How the final dataset is assembled from the originals and the kept translations: exact
    duplicates (after normalisation) dropped, per-source caps and ratios applied, then a seeded
    train/validation split."""

    include_originals: bool = Field(default=True, description="mix the English originals back in")
    commercial_only: bool = Field(
        default=True, description="refuse sources whose license forbids commercial use (Saiga)"
    )
    seed: int = Field(
        default=42, description="seed of the cap/ratio sampling, the split and the shuffle (same inputs and seed: same bytes)"
    )
    validation_fraction: float = Field(
        default=0.02, ge=0, lt=1,
        description="share of dialogs in the validation split (at least one dialog when above 0); an original and its "
        "translation always land in the same split",
    )
    caps: dict[str, int] = Field(default_factory=dict, description="max dialogs per source (after filtering)")
    ratios: dict[str, float] = Field(
        default_factory=dict, description="relative sampling weight per source (1.0 = all)"
    )

    @field_validator("ratios")
    @classmethod
    def _ratios_in_range(cls, v: dict[str, float]) -> dict[str, float]:
        for k, r in v.items():
            if not 0 < r <= 1:
                raise ValueError(f"ratios.{k} must be in (0, 1], got {r}")
        return v


class DataConfig(Strict):
    """The input datasets of a run."""

    sources: list[SourceConfig] = Field(
        min_length=1, description="the input datasets (at least one; names unique), loaded in this order"
    )
    hf_offline: bool = Field(default=False, description="set HF_HUB_OFFLINE/HF_DATASETS_OFFLINE")

    @field_validator("sources")
    @classmethod
    def _unique_names(cls, v: list[SourceConfig]) -> list[SourceConfig]:
        names = [s.name for s in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate source names: {dupes}")
        return v


class RunConfig(Strict):
    """One run. Cross-field rules are checked here, so a bad profile fails when it is loaded."""

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="run name (letters, digits, . _ -); the default root is runs/<name>",
    )
    root: str | None = Field(
        default=None,
        description="run root; relative to the profile file. Default: runs/<name> under the working directory",
    )
    data: DataConfig = Field(description="the input sources and hub access")
    # validate_default: the cross-field checks below must run on a section left out, too
    translation: TranslationConfig = Field(
        default_factory=TranslationConfig, validate_default=True,
        description="the translator and its generation settings",
    )
    filters: FilterConfig = Field(
        default=FilterConfig(), description="the filters that drop corrupted translations, one section each"
    )
    mix: MixConfig = Field(
        default_factory=MixConfig, validate_default=True,
        description="dedup, caps, ratios and the train/validation split of the final dataset",
    )

    @field_validator("translation")
    @classmethod
    def _translator_for_translated_sources(cls, v: TranslationConfig, info: ValidationInfo) -> TranslationConfig:
        data = info.data.get("data")
        wanted = [s.name for s in data.sources if s.translate] if data else []
        if wanted and not (getattr(v, "model", None) or "").strip():
            raise ValueError(f"translation.model is empty but these sources have translate: true: {wanted}")
        return v

    @field_validator("mix")
    @classmethod
    def _mix_matches_sources(cls, v: MixConfig, info: ValidationInfo) -> MixConfig:
        data = info.data.get("data")
        if data is None:  # data itself failed; its error is reported
            return v
        # mix.py holds the rules (the mix stage applies them again to what it is given)
        from .mix import check_commercial, check_names

        check_commercial(data.sources, v)
        check_names(v, (s.name for s in data.sources))
        return v

    @property
    def root_path(self) -> Path:
        return Path(self.root) if self.root else Path("runs") / self.name

    def with_root(self, root: str | os.PathLike[str] | None) -> RunConfig:
        return self if root is None else self.model_copy(update={"root": str(root)})


class ConfigError(ValueError):
    """A config file that does not validate; the message names every bad field."""


def _config_error(where: str, e: ValidationError) -> ConfigError:
    lines = [f"{where}: invalid config"]
    for err in e.errors():
        loc = ".".join(str(p) for p in err["loc"])
        lines.append(f"  {loc}: {err['msg']}")
    return ConfigError("\n".join(lines))


def load_config(path: str | os.PathLike[str]) -> RunConfig:
    """Read a YAML profile. Paths written in it (source paths, a local model, cache_dir and an
    explicit root) resolve against the YAML's folder; the default root (runs/<name>) stays
    relative to the working directory, where `resolve_config` anchors it."""
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    base = path.resolve().parent

    def relative_to_profile(d: Any, key: str, only_explicit: bool = False) -> None:
        if not isinstance(d, dict) or not isinstance(d.get(key), str) or not d[key]:
            return
        v = d[key]
        # a hub model id ("org/name") is not a path: only ./, ../ and / mark a local model
        if only_explicit and not v.startswith((".", "/")):
            return
        if not os.path.isabs(v):
            d[key] = str((base / v).resolve())

    for src in (raw.get("data") or {}).get("sources") or []:
        relative_to_profile(src, "path")
    tr = raw.get("translation")
    relative_to_profile(tr, "model", only_explicit=True)
    relative_to_profile(tr, "cache_dir")
    relative_to_profile(raw, "root")
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as e:
        raise _config_error(str(path), e) from None


def resolve_config(
    config: RunConfig | None = None,
    config_file: str | os.PathLike[str] | None = None,
    output: str | os.PathLike[str] | None = None,
) -> RunConfig:
    """The config a flow runs: `config`, or the profile at `config_file`; `output` (relative to
    the working directory) overrides the root. Re-validated, since a config built in Python with
    model_copy skips the cross-field checks; the root comes back absolute, so every stage and
    every worker thread sees the same folder."""
    if config is None:
        if not config_file:
            raise ValueError("pass `config` (the run config) or `config_file` (a YAML profile)")
        config = load_config(config_file)
    try:
        config = RunConfig.model_validate(config.model_dump())
    except ValidationError as e:
        raise _config_error(f"run config {config.name!r}", e) from None
    return config.with_root(Path(output or config.root_path).resolve())
