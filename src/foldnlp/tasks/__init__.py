"""The task registry: `cfg.task` → the task that reads, windows, scores, decodes and submits that kind of competition.

Each task is a package `foldnlp.tasks.<name>` with two modules, imported only when asked for:
    settings.py  SETTINGS (the dataclass of the task's config section, YAML key = the task's name),
                 FOLD_DEFAULTS (the folds.stratify_by / folds.group_by a config of this task gets unless it says)
                 and optionally data_defaults(data) (data.* keys a config gets unless it says, from the others)
    task.py      TASK (a foldnlp.tasks.base.Task subclass, built with the experiment config)
The pipeline (steps, training, inference, artifacts, ensembling, kaggle) reaches a task only through here.
(foldnlp.tasks.document is not a task: it holds what classify and regress share.)
"""

from __future__ import annotations

import importlib
from types import ModuleType

TASK_NAMES = ("qa", "classify", "regress", "spans")


def settings_module(name: str) -> ModuleType:
    """The task's settings module (light: no torch, no tokenizers), for reading configs."""
    return importlib.import_module(f"foldnlp.tasks.{_known(name)}.settings")


def get_task(cfg):
    """The task of an experiment config, bound to it."""
    return importlib.import_module(f"foldnlp.tasks.{_known(cfg.task)}.task").TASK(cfg)


def _known(name: str) -> str:
    if name not in TASK_NAMES:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(TASK_NAMES)}")
    return name
