"""The search space: config keys and the values a trial may draw for them, read from a YAML file and checked.

    train.lr: {low: 3.0e-5, high: 3.0e-4, log: true}   # a float range, drawn on a log scale
    train.epochs: {low: 1, high: 3, int: true}         # whole numbers (step: k for every k-th)
    train.warmup_ratio: {low: 0.0, high: 0.2}          # a float range (step: 0.05 for a grid of values)
    features.max_len: {choices: [192, 256, 384]}       # one of these values (any YAML value, a list too)

Keys are config fields as `--set` names them. Every bound and choice is applied to the experiment's config before
any training, so an unknown key or a value of the wrong type fails at once, naming the key and the file.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from foldnlp.config import RUNTIME_SECTIONS, load_config, value_at
from foldnlp.errors import InputError

RANGE_FIELDS = ("low", "high", "log", "int", "step")
# What a trial may not change: the run folder's name and the task, the folds every trial shares, and the runtime
# sections (how a run executes, not what it learns).
FIXED_SECTIONS = ("task", "folds", *RUNTIME_SECTIONS)


@dataclass(frozen=True)
class Dimension:
    """One config key of the space: a categorical choice (choices) or a numeric range (low..high)."""

    key: str
    choices: tuple = ()
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False
    step: float | None = None

    @property
    def labels(self) -> list:
        """The choices as Optuna stores them: scalars as they are, a list or mapping as its JSON text."""
        return [c if c is None or isinstance(c, (bool, int, float, str)) else json.dumps(c) for c in self.choices]

    def draw(self, trial) -> Any:
        """This key's value for an Optuna trial (its suggest_* methods)."""
        if self.choices:
            return self.value_of(trial.suggest_categorical(self.key, self.labels))
        if self.integer:
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)

    def value_of(self, param) -> Any:
        """The config value of a parameter Optuna recorded (a choice's label back to the choice)."""
        return self.choices[self.labels.index(param)] if self.choices else param

    def override(self, value) -> str:
        """The `--set` text that gives the config this value (JSON: also what YAML reads back)."""
        return f"{self.key}={json.dumps(value)}"


@dataclass(frozen=True)
class SearchSpace:
    path: Path
    dimensions: tuple[Dimension, ...]
    sha256: str  # of the file's bytes: part of the study's name, so another space is another study

    def draw(self, trial) -> dict[str, Any]:
        return {d.key: d.draw(trial) for d in self.dimensions}

    def values_of(self, params: dict) -> dict[str, Any]:
        """Config values of a finished trial's recorded parameters."""
        return {d.key: d.value_of(params[d.key]) for d in self.dimensions if d.key in params}

    def overrides(self, values: dict[str, Any]) -> list[str]:
        by_key = {d.key: d for d in self.dimensions}
        return [by_key[key].override(value) for key, value in values.items()]


def describe(values: dict[str, Any]) -> str:
    """'train.lr=1.23e-04, features.max_len=256' for log lines and the summary."""
    return ", ".join(f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}"
                     for key, value in values.items())


def read_space(path: str | Path, config: str | Path | None, overrides: list[str] = ()) -> SearchSpace:
    """The space in `path`, each of its values checked on the experiment config (config file plus overrides)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"search space file {path} does not exist")
    data = path.read_bytes()
    try:
        raw = yaml.safe_load(data.decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise InputError(f"search space file {path} is not valid YAML: {err}") from err
    if not isinstance(raw, dict) or not raw:
        raise InputError(f"search space file {path} must map config keys to ranges or choices, e.g. "
                         "train.lr: {low: 3.0e-5, high: 3.0e-4, log: true}")
    dimensions = tuple(parse_dimension(str(key), spec, path) for key, spec in raw.items())
    base = load_config(config, overrides)
    for dimension in dimensions:
        check_on_config(dimension, path, config, overrides)
        current = value_at(base, dimension.key)
        if isinstance(current, int) and not isinstance(current, bool) and not dimension.choices \
                and not dimension.integer:
            raise InputError(f"{path}: {dimension.key} is a whole-number setting: add int: true to its range")
    return SearchSpace(path, dimensions, hashlib.sha256(data).hexdigest())


def parse_dimension(key: str, spec, path: Path) -> Dimension:
    """One entry of the space file, its shape checked (not yet against the config)."""
    where = f"{path}: {key}"
    if key.split(".")[0] in FIXED_SECTIONS:
        raise InputError(f"{where}: a search cannot vary {key.split('.')[0]} (trials share the experiment's "
                         "name, task and folds; runtime sections do not change what is learnt)")
    if not isinstance(spec, dict):
        raise InputError(f"{where}: expected {{choices: [...]}} or {{low: ..., high: ...}}, got {spec!r}")
    unknown = sorted(set(spec) - {"choices", *RANGE_FIELDS})
    if unknown:
        raise InputError(f"{where}: unknown field(s) {', '.join(map(str, unknown))}; a key takes choices, or low "
                         "and high with optional log, int and step")
    if "choices" in spec:
        if set(spec) & set(RANGE_FIELDS):
            raise InputError(f"{where}: both choices and a range ({', '.join(sorted(set(spec) & set(RANGE_FIELDS)))})"
                             ": give one")
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise InputError(f"{where}: choices must be a non-empty list, got {choices!r}")
        dimension = Dimension(key, choices=tuple(choices))
        if len(set(map(str, dimension.labels))) < len(choices):
            raise InputError(f"{where}: choices {choices} name a value twice")
        return dimension
    if "low" not in spec or "high" not in spec:
        raise InputError(f"{where}: a range needs both low and high (or give choices: [...])")
    integer, log = _flag(spec, "int", where), _flag(spec, "log", where)
    low, high = _number(spec["low"], f"{where}: low"), _number(spec["high"], f"{where}: high")
    step = None if spec.get("step") is None else _number(spec["step"], f"{where}: step")
    if low >= high:
        raise InputError(f"{where}: low ({low}) must be below high ({high})")
    if log and low <= 0:
        raise InputError(f"{where}: a log range needs low > 0, got {low}")
    if step is not None and (step <= 0 or log):
        raise InputError(f"{where}: step must be positive, and cannot go with log: true")
    if integer and not all(float(v).is_integer() for v in (low, high, step or 1)):
        raise InputError(f"{where}: int: true needs whole-number low, high and step, got {low}, {high}, {step}")
    return Dimension(key, low=low, high=high, log=log, integer=integer, step=step)


def check_on_config(dimension: Dimension, path: Path, config: str | Path | None, overrides: list[str]) -> None:
    """Every value the dimension can take (each choice, both bounds) must make a valid config with the
    experiment's other settings: --set's own checks refuse unknown keys and values of the wrong type."""
    values = dimension.choices or (dimension.low, dimension.high)
    for value in values:
        if dimension.integer:
            value = int(value)
        try:
            load_config(config, [*overrides, dimension.override(value)])
        except InputError as err:
            raise InputError(f"{path}: {dimension.key}: {value!r} does not make a valid config of {config}: "
                             f"{err}") from None


def _flag(spec: dict, name: str, where: str) -> bool:
    value = spec.get(name, False)
    if not isinstance(value, bool):
        raise InputError(f"{where}: {name} must be true or false, got {value!r}")
    return value


def _number(value, where: str) -> float:
    """A bound or step; text such as "1e-5" (which YAML reads as a string, wanting 1.0e-5) is taken as a number."""
    if isinstance(value, bool):
        raise InputError(f"{where}: expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InputError(f"{where}: expected a number, got {value!r}") from None
