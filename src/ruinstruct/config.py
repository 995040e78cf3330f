"""One pydantic config describes one run; YAML profiles (configs/*.yaml) are instances of it.

The Prefect flows take `RunConfig` as their parameter, so the Prefect UI renders a form for it.
Unknown keys are errors (extra="forbid") so a typo in a profile names the field instead of
being silently ignored.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from .filters.config import FilterConfig
from .models import FAMILIES, REGISTRY, Family
from .train.sft import TrainSettings

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
    backend: Literal["transformers", "ctranslate2"] = Field(
        default="transformers",
        description="transformers: the HF model in torch; ctranslate2: the same checkpoint converted once to "
        "CTranslate2 (faster; see compute_type, ct2_dir). Part of the translator id",
    )
    compute_type: Literal["auto", "float32", "int8", "int8_float16", "float16", "bfloat16"] = Field(
        default="auto",
        description="ctranslate2 only: weight and compute precision; auto: int8_float16 on CUDA, the fastest "
        "measured on CPU. The resolved value is part of the translator id",
    )
    ct2_dir: str | None = Field(
        default=None,
        description="ctranslate2 only: where converted models are kept (one folder per model, revision and "
        "compute type); default $HF_HOME/ctranslate2 (~/.cache/huggingface/ctranslate2)",
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
        exclude = {"model", "device", "max_batch_tokens", "max_batch_size", "shard_size", "cache_dir", "ct2_dir"}
        if self.backend == "transformers":
            # left out so that the ids (and caches) made before there was a choice of backend stay valid
            exclude |= {"backend", "compute_type"}
        else:
            exclude |= {"dtype"}  # torch's dtype plays no part in a CTranslate2 translation; compute_type does
        return self.model_dump(exclude=exclude)

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

# ---- training ---------------------------------------------------------------------------------

#: the dataset name that means this run's own data/final (the data flow's output)
OWN_DATASET = "ruinstruct"
METHODS = ("full", "lora")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# TrainSettings fields a config does not set per method: the method is the section's name, the
# dataset name is the matrix cell's, and DeepSpeed is `training.deepspeed` (full only).
_NOT_PER_METHOD = {"method", "dataset_name", "deepspeed"}


class FieldError(ValueError):
    """A cross-field problem of one nested field: `_config_error` prints `field` (relative to the
    section that raised it) after the section's own location, so the message names the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.message = field, message


class TrainModelEntry(Strict):
    """A model beyond the registry (ruinstruct.models.REGISTRY): a Hugging Face id or a local
    folder, and its family. Resolved with models.resolve_model when a run starts."""

    name: str = Field(description="short name for `runs` and the output folders (letters, digits, . _ -); "
                      "not a registry name")
    hf_id: str = Field(min_length=1, description="Hugging Face id, or a local folder (a value starting with ./ ../ "
                       "or / is relative to the profile file)")
    family: Family = Field(description=f"module naming family: {' | '.join(FAMILIES)} (sets the LoRA targets)")
    revision: str | None = Field(default=None, description="hub revision (commit or tag); default main")
    context_length: int | None = Field(default=None, ge=1, description="context in tokens; default: from its "
                                       "config.json")
    lora_targets: list[str] | None = Field(default=None, description="LoRA target module names; default: the "
                                           "family's attention linears. Checked against the loaded model")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"{v!r}: use letters, digits, . _ - (it names an output folder)")
        if v in REGISTRY:
            raise ValueError(f"{v!r} is a registered model; give this entry another name")
        return v


def _method_settings_model() -> type[BaseModel]:
    """TrainSettings less the fields set elsewhere (see _NOT_PER_METHOD), with the same defaults
    and descriptions, so the config reference shows the paper's values."""
    fields = {n: (f.annotation, f) for n, f in TrainSettings.model_fields.items() if n not in _NOT_PER_METHOD}
    return create_model(  # type: ignore[call-overload]
        "MethodSettings", __base__=Strict,
        __doc__="Hyperparameters of one method (TrainSettings of ruinstruct.train.sft); every field left "
        "out keeps the paper's default.",
        **fields,
    )


MethodSettings = _method_settings_model()


def _as_list(v: Any) -> Any:
    return [v] if isinstance(v, str) else v


class TrainRunEntry(Strict):
    """One row of the experiment matrix. `model`, `method` and `data` each take one value or a
    list; the entry stands for every combination of them (Table 1 style)."""

    model: str | list[str] = Field(description="model name(s): training.models entries or the registry")
    method: str | list[str] = Field(description="full | lora, or a list of both")
    data: str | list[str] = Field(
        default=OWN_DATASET,
        description=f"dataset name(s): training.datasets entries, or {OWN_DATASET} (this run's data/final)",
    )
    settings: dict[str, Any] = Field(
        default_factory=dict,
        description="overrides of the method sections' settings (any TrainSettings field) for these cells only",
    )
    num_processes: int | None = Field(default=None, ge=1, description="overrides training.num_processes for "
                                      "these cells")

    @field_validator("model", "method", "data")
    @classmethod
    def _values(cls, v: str | list[str], info: ValidationInfo) -> list[str]:
        values = _as_list(v)
        if not values:
            raise ValueError("give at least one value")
        if len(set(values)) != len(values):
            raise ValueError(f"a value is listed twice: {values}")
        if info.field_name == "method":
            bad = [m for m in values if m not in METHODS]
            if bad:
                raise ValueError(f"unknown method {bad[0]!r}: expected full or lora")
        return values

    def cells(self) -> list[tuple[str, str, str]]:
        """(model, method, data) for every combination, in the order written."""
        return [(m, k, d) for m in _as_list(self.model) for k in _as_list(self.method) for d in _as_list(self.data)]


class TrainingConfig(Strict):
    """The fine-tuning matrix of a run (PAPER.md, Table 1): which models, methods and datasets,
    and the settings of each method. Each cell trains into <root>/models/<model>-<method>-<data>/."""

    models: list[TrainModelEntry] = Field(default_factory=list, description="models beyond the registry "
                                          "(HF id or local folder, and family)")
    datasets: dict[str, str] = Field(
        default_factory=dict,
        description=f"dataset name -> dataset folder (train/validation splits; relative to the profile file). "
        f"{OWN_DATASET} needs no entry: it is this run's data/final",
    )
    runs: list[TrainRunEntry] = Field(min_length=1, description="the experiment matrix: each entry expands to "
                                      "model x method x data cells; a cell may appear once")
    lora: MethodSettings = Field(default_factory=MethodSettings, description="LoRA settings (paper defaults: int8 "
                                 "base, r=16, alpha=16, dropout 0.05, lr 3e-4)")
    full: MethodSettings = Field(default_factory=MethodSettings, description="full fine-tuning settings (paper "
                                 "defaults: grad accumulation 16, micro-batch 1, lr 3e-6)")
    num_processes: int = Field(default=1, ge=1, description="training processes (GPUs) per run; above 1 the run "
                               "is started with torch.distributed.run")
    deepspeed: str | Literal[False] | None = Field(
        default=None,
        description="DeepSpeed JSON of full fine-tuning (relative to the profile file); unset: this repository's "
        "configs/deepspeed/zero3.json; false: no DeepSpeed",
    )

    @field_validator("datasets")
    @classmethod
    def _dataset_names(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            if name == OWN_DATASET:
                raise FieldError(name, f"{OWN_DATASET} is this run's own data/final; "
                                 "give the folder another name")
            if not _NAME.match(name):
                raise FieldError(name, "use letters, digits, . _ - (it names an output folder)")
        return v

    @model_validator(mode="after")
    def _matrix(self) -> TrainingConfig:
        names = [m.name for m in self.models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise FieldError("models", f"model name listed twice: {', '.join(dupes)}")
        known_models = set(names) | set(REGISTRY)
        known_data = {OWN_DATASET, *self.datasets}
        seen: dict[tuple[str, str, str], int] = {}
        for i, entry in enumerate(self.runs):
            for m in _as_list(entry.model):
                if m not in known_models:
                    extra = f"; training.models has {', '.join(names)}" if names else ""
                    raise FieldError(
                        f"runs[{i}].model",
                        f"{m!r} is not a registered model ({', '.join(REGISTRY)}){extra}. "
                        "Add it under training.models with its hf_id and family",
                    )
            for d in _as_list(entry.data):
                if d not in known_data:
                    raise FieldError(f"runs[{i}].data", f"unknown dataset {d!r}: expected {OWN_DATASET} or a "
                                     f"training.datasets name ({', '.join(self.datasets) or 'none given'})")
            for method in _as_list(entry.method):
                self._check_settings(i, entry, method)
            for cell in entry.cells():
                if cell in seen:
                    raise FieldError(f"runs[{i}]", f"cell {'-'.join(cell)} (model-method-data) is also in "
                                     f"runs[{seen[cell]}]")
                seen[cell] = i
        return self

    def _check_settings(self, i: int, entry: TrainRunEntry, method: str) -> None:
        for key in entry.settings:
            if key in _NOT_PER_METHOD or key not in TrainSettings.model_fields:
                raise FieldError(f"runs[{i}].settings.{key}", "not a training setting (the fields of "
                                 "training.lora / training.full)")
        try:
            self.settings_for(method, entry)
        except ValidationError as e:
            err = e.errors()[0]
            raise FieldError(f"runs[{i}].settings.{'.'.join(str(p) for p in err['loc'])}", err["msg"]) from None

    def settings_for(self, method: str, entry: TrainRunEntry | None = None) -> TrainSettings:
        """The TrainSettings of one cell: the paper's defaults, then the method's section, then
        the entry's overrides. DeepSpeed is set by the caller (stages.train), which knows the repo."""
        section = (self.full if method == "full" else self.lora).model_dump(exclude_unset=True)
        return TrainSettings(**{**section, **(entry.settings if entry else {}), "method": method})

    def cells(self) -> list[tuple[int, str, str, str]]:
        """(entry index, model, method, data) of every cell, in the order written."""
        return [(i, *cell) for i, e in enumerate(self.runs) for cell in e.cells()]


# ---- evaluation ---------------------------------------------------------------------------------

#: the benchmarks of Table 1, in its column order; each is an `evaluation:` section
BENCHMARKS = ("mt_bench", "mmlu_en", "mmlu_ru")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
JUDGE_KINDS = ("local", "api")


class MmluConfig(Strict):
    """MMLU (English) or MMLU RU, k-shot, scored by the letter probabilities at the answer
    position (PAPER.md, Evaluation)."""

    data: str | None = Field(
        default=None,
        description="local folder (relative to the profile): English MMLU's per-subject CSV layout (dev/, test/), "
        "or MMLU RU files with question_ru, choices_ru, answer; unset: the hub (cais/mmlu, NLPCoreTeam/mmlu_ru's "
        "parquet export)",
    )
    shots: int = Field(default=5, ge=0, description="examples from the subject's dev split before each question "
                       "(dropped one by one when the prompt exceeds the model's context)")
    batch_size: int = Field(default=8, ge=1, description="questions per forward pass")
    subjects: list[str] | None = Field(default=None, min_length=1,
                                       description="score only these subjects; unset: all 57")
    limit: int | None = Field(default=None, ge=1, description="score only the first N test questions of each "
                              "subject (a quick run)")


class MtBenchConfig(Strict):
    """MT-Bench RU: two-turn answers generated with the paper's settings, rated 1-10 by a judge
    (FastChat's single-answer grading and file layout)."""

    questions: str = Field(description="questions in FastChat's format (question_id, category, turns, optional "
                           "reference), relative to the profile")
    judge: str = Field(
        default="api:gpt-4",
        description="local:<model folder> (offline: the expected rating under the judge's next-token "
        "probabilities; a folder relative to the profile) or api:<model> (an OpenAI-compatible chat-completions "
        "endpoint)",
    )
    api_base: str | None = Field(default=None, description="api judge: base URL of the endpoint; unset: OpenAI's")
    api_key_env: str = Field(
        default="OPENAI_API_KEY",
        description="api judge: the environment variable that holds the key (its name, never the key)",
    )
    api_key_secret: str | None = Field(
        default=None,
        description="api judge: name of a Prefect Secret block holding the key; when set it is read before "
        "api_key_env",
    )
    judge_prompts: str | None = Field(
        default=None, description="judge prompts in FastChat's judge_prompts.jsonl format (the Russian set); "
        "unset: FastChat's English single-answer prompts"
    )
    references: str | None = Field(
        default=None, description="reference answers (question_id, choices) for math, reasoning and coding; unset: "
        "the questions' own `reference` fields"
    )
    max_new_tokens: int = Field(default=512, ge=1, description="answer length limit per turn, in tokens")
    batch_size: int = Field(default=8, ge=1, description="questions generated (and judged locally) per batch")

    @field_validator("judge")
    @classmethod
    def _judge(cls, v: str) -> str:
        kind, sep, name = v.partition(":")
        if not sep or kind not in JUDGE_KINDS or not name.strip():
            raise ValueError(f"{v!r}: expected local:<model folder> or api:<model name>")
        return v

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, v: str) -> str:
        if not _ENV_NAME.match(v):
            # also what a key pasted here looks like (sk-...): say so without echoing it
            raise ValueError("must be the name of an environment variable (letters, digits, _), not the key itself")
        return v

    @property
    def judge_kind(self) -> str:
        return self.judge.partition(":")[0]


class RunnerConfig(Strict):
    """Where the data flow's translation shards run. `default`: threads of the flow's own process
    (Prefect's ThreadPoolTaskRunner). `dask`: Prefect's DaskTaskRunner, on the cluster at `address`
    or on a LocalCluster of `n_workers` processes started for the run; each worker process loads
    its own translator, so in production each Dask worker gets one GPU. The dataset is the same,
    byte for byte, whichever runner translated it."""

    kind: Literal["default", "dask"] = Field(default="default", description="default | dask")
    address: str | None = Field(
        default=None, description="dask: scheduler address of an existing cluster (tcp://host:8786); null: a LocalCluster"
    )
    n_workers: int = Field(default=2, ge=1, description="dask LocalCluster: worker processes (one GPU each in production)")
    threads_per_worker: int = Field(default=1, ge=1, description="dask LocalCluster: threads per worker process")

    @model_validator(mode="after")
    def _address_for_dask(self) -> RunnerConfig:
        if self.address is not None and self.kind != "dask":
            raise FieldError("address", "is only used with kind: dask")
        if self.address is not None and "://" not in self.address:
            raise FieldError("address", f"{self.address!r} is not a scheduler address (e.g. tcp://10.0.0.5:8786)")
        return self


class FaultsConfig(Strict):
    """Injected failures, for tests of the retry path (the end-to-end tests and a user checking a
    deployment): never set them in a real profile."""

    fail_shards_once: list[str] = Field(
        default_factory=list,
        description="translation shards (source#index, e.g. dolly#1) that fail the first time they run in this run "
        "root; a marker under <root>/data/faults/ records it, so a retry of the flow run succeeds",
    )

    @field_validator("fail_shards_once")
    @classmethod
    def _shard_names(cls, v: list[str]) -> list[str]:
        for name in v:
            source, _, index = name.rpartition("#")
            if not source or not index.isdigit():
                raise ValueError(f"{name!r} is not source#index (e.g. dolly#1)")
        return v


class EvaluationConfig(Strict):
    """Which benchmarks run on every fine-tuned model of the matrix (Table 1's columns); a section
    left out is not run. Outputs: <root>/eval/<model>-<method>-<data>/, results in <root>/results/."""

    mt_bench: MtBenchConfig | None = Field(default=None, description="MT-Bench RU (turn 1, turn 2, average)")
    mmlu_en: MmluConfig | None = Field(default=None, description="MMLU, English, micro average over questions")
    mmlu_ru: MmluConfig | None = Field(default=None, description="MMLU RU, the mean of the four category means "
                                       "(its authors' aggregate)")
    max_parallel: int = Field(default=1, ge=1, description="evaluations running at once (each loads its model; "
                              "1 on one GPU)")

    @model_validator(mode="after")
    def _some_benchmark(self) -> EvaluationConfig:
        if not self.benchmarks():
            raise ValueError(f"name at least one benchmark ({', '.join(BENCHMARKS)})")
        return self

    def benchmarks(self) -> list[str]:
        """The configured benchmarks, in Table 1's order."""
        return [b for b in BENCHMARKS if getattr(self, b) is not None]


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
    training: TrainingConfig | None = Field(
        default=None, description="the fine-tuning matrix (models x methods x datasets); unset: data only"
    )
    evaluation: EvaluationConfig | None = Field(
        default=None, description="benchmarks run on every fine-tuned model (needs `training`); unset: no evaluation"
    )
    runner: RunnerConfig = Field(
        default_factory=RunnerConfig, description="where translation shards run: in-process threads or a Dask cluster"
    )
    faults: FaultsConfig = Field(default_factory=FaultsConfig, description="injected failures, for tests only")

    @field_validator("translation")
    @classmethod
    def _translator_for_translated_sources(cls, v: TranslationConfig, info: ValidationInfo) -> TranslationConfig:
        data = info.data.get("data")
        wanted = [s.name for s in data.sources if s.translate] if data else []
        if wanted and not (getattr(v, "model", None) or "").strip():
            raise ValueError(f"translation.model is empty but these sources have translate: true: {wanted}")
        return v

    @field_validator("faults")
    @classmethod
    def _fault_sources(cls, v: FaultsConfig, info: ValidationInfo) -> FaultsConfig:
        data = info.data.get("data")
        names = {s.name for s in data.sources if s.translate} if data else set()
        for i, name in enumerate(v.fail_shards_once):
            if name.rpartition("#")[0] not in names:
                raise FieldError(f"fail_shards_once[{i}]", f"{name!r}: no translated source of that name; known: {sorted(names)}")
        return v

    @field_validator("evaluation")
    @classmethod
    def _evaluation_needs_models(cls, v: EvaluationConfig | None, info: ValidationInfo) -> EvaluationConfig | None:
        # training missing from info.data: it failed, and its own error is reported
        if v is not None and "training" in info.data and info.data["training"] is None:
            raise ValueError("evaluates the fine-tuned models of `training`, and this config has no training section")
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
        # list positions as the YAML reader sees them: training.runs[1].model, not runs.1.model
        loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"]).lstrip(".")
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, FieldError):  # a section's check that names one of its fields
            lines.append(f"  {loc}.{cause.field}: {cause.message}")
        else:
            lines.append(f"  {loc}: {err['msg'].removeprefix('Value error, ')}")
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
    training = raw.get("training")
    if isinstance(training, dict):
        for entry in training.get("models") or []:
            relative_to_profile(entry, "hf_id", only_explicit=True)
        relative_to_profile(training, "deepspeed")
        if isinstance(training.get("datasets"), dict):
            for name in list(training["datasets"]):
                relative_to_profile(training["datasets"], name)
    evaluation = raw.get("evaluation")
    if isinstance(evaluation, dict):
        for bench in ("mmlu_en", "mmlu_ru"):
            relative_to_profile(evaluation.get(bench), "data")
        mt = evaluation.get("mt_bench")
        for key in ("questions", "judge_prompts", "references"):
            relative_to_profile(mt, key)
        if isinstance(mt, dict) and isinstance(mt.get("judge"), str) and mt["judge"].startswith("local:"):
            local = {"dir": mt["judge"].removeprefix("local:")}
            relative_to_profile(local, "dir")
            mt["judge"] = "local:" + local["dir"]
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as e:
        raise _config_error(str(path), e) from None


def resolve_config(
    config: RunConfig | str | os.PathLike[str] | None = None,
    output: str | os.PathLike[str] | None = None,
) -> RunConfig:
    """The config a flow runs: `config` is the run config itself or the path of a YAML profile
    (relative to the working directory: a deployment's runs start in the project folder);
    `output` (relative to the working directory) overrides the root. Re-validated, since a config
    built in Python with model_copy skips the cross-field checks; the root comes back absolute,
    so every stage and every worker thread sees the same folder."""
    if config is None or (isinstance(config, str) and not config.strip()):
        raise ConfigError("config: pass the run config or the path of a YAML profile (e.g. configs/tiny.yaml)")
    if isinstance(config, (str, os.PathLike)):
        config = load_config(config)
    # a dict: the API or the UI's form sent the model as JSON
    raw = config if isinstance(config, dict) else config.model_dump()
    try:
        config = RunConfig.model_validate(raw)
    except ValidationError as e:
        raise _config_error(f"run config {raw.get('name')!r}", e) from None
    return config.with_root(Path(output or config.root_path).resolve())
