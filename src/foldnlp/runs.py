"""A trained run folder read back: its config, its finished folds, their checkpoints and provenance records.

The one reader of run folders for infer, ensemble and the Kaggle bundle and budget; artifacts.RunPaths names the
files, this module opens them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from foldnlp import artifacts
from foldnlp.config import ExperimentConfig, load_config
from foldnlp.errors import InputError


@dataclass(frozen=True)
class Run:
    paths: artifacts.RunPaths
    cfg: ExperimentConfig  # the experiment's resolved config (config.yaml), with any overrides applied
    folds: list[int]  # the folds asked for, else every finished one

    @property
    def name(self) -> str:
        return self.paths.root.name

    def model_dir(self, fold: int) -> Path:
        """The fold's checkpoint folder, checked to be complete and safetensors-only."""
        return artifacts.checked_model_dir(self.paths.model_dir(fold))

    def fold_config(self, fold: int, overrides: list[str] = ()) -> ExperimentConfig:
        """The config saved beside the fold's weights (what it was trained with), with overrides applied."""
        return load_config(self.model_dir(fold) / artifacts.CONFIG_BESIDE_WEIGHTS, overrides)

    def provenance(self, fold: int) -> dict:
        """The provenance record of a finished fold (InputError when it predates provenance records)."""
        record = json.loads(self.paths.metrics(fold).read_text(encoding="utf-8")).get("provenance")
        if record is None:
            raise InputError(f"{self.paths.root}: fold {fold} has no provenance in metrics.json (trained by an older "
                             "foldnlp): retrain it with --overwrite")
        return record


def open_run(run_dir: str | Path, folds: list[int] | None = None, *, overrides: list[str] = (),
             check_checkpoints: bool = False) -> Run:
    """The run in run_dir (InputError if it is none); check_checkpoints: every fold's checkpoint must be whole."""
    paths = artifacts.RunPaths(Path(run_dir))
    run = Run(paths, load_run_config(paths, overrides), paths.folds_to_use(folds))
    if check_checkpoints:
        for fold in run.folds:
            run.model_dir(fold)
    return run


def load_run_config(paths: artifacts.RunPaths, overrides: list[str] = ()) -> ExperimentConfig:
    if not paths.config.is_file():
        raise InputError(f"{paths.root} is not a trained run (no {paths.config.name}): run train_fold.py first")
    return load_config(paths.config, overrides)
