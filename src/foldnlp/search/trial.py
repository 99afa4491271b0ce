"""One trial of a search: the experiment's config with the trial's settings, trained fold by fold by train_fold in a
run folder of its own (<output_dir>/<name>-t<number>/), intermediate scores reported so a pruner can stop it.

The folder's trial.json says which study and trial it belongs to and how the trial ended (running, complete,
pruned, failed, interrupted). A pruned trial's folder stays, its stopped fold not finished (no metrics.json), with
neither training state nor checkpoint. A retry of a trial whose worker died or was interrupted takes that trial's
folder over (renamed to the retry's number) and continues its training from the saved state.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from foldnlp import artifacts
from foldnlp.config import load_config
from foldnlp.errors import InputError
from foldnlp.progress import write
from foldnlp.search.space import SearchSpace, describe
from foldnlp.steps.train_fold import train_fold

log = logging.getLogger(__name__)

RUN_DIR_ATTR = "run_dir"  # the trial's user attribute naming its run folder; a retry inherits its predecessor's


class TrialSettingsError(Exception):
    """The trial's settings do not make a run that trains (an InputError from its config or its data windows): that
    trial fails and the search goes on."""


@dataclass(frozen=True)
class Experiment:
    """What every trial of one search shares."""

    config: Path | None  # the experiment's config file
    overrides: tuple[str, ...]  # the search's --set values, under each trial's settings
    name: str  # the experiment's name: trial k trains as <name>-t<k>
    output_dir: str
    folds: tuple[int, ...]  # the folds each trial trains; its value is the mean of their best scores
    metric: str
    study: str  # the study's name, recorded in each trial's folder
    space: SearchSpace
    progress: bool = True

    def run_paths(self, number: int) -> artifacts.RunPaths:
        return artifacts.RunPaths.of(self.output_dir, f"{self.name}-t{number}")


def run_trial(trial: optuna.Trial, experiment: Experiment) -> float:
    """Optuna's objective: train the trial's folds and return the mean of their best scores. Raises
    optuna.TrialPruned when the pruner stops it, TrialSettingsError when its settings cannot train."""
    started = time.perf_counter()
    values = experiment.space.draw(trial)
    paths = experiment.run_paths(trial.number)
    check_folder(paths, experiment.study, trial.number)
    took_over = take_over(trial.user_attrs.get(RUN_DIR_ATTR), paths)
    trial.set_user_attr(RUN_DIR_ATTR, str(paths.root))
    record = {"study": experiment.study, "trial": trial.number, "settings": values, "folds": list(experiment.folds),
              "metric": experiment.metric, "state": "running", "resumes": took_over}
    artifacts.atomic_write_json(paths.trial_record, record)
    reported = {"evaluations": 0, "fold": None}

    def report(step: int, score: float) -> None:
        # Intermediate values are numbered by evaluation, not optimizer step: trials with another max_len or batch
        # size take other steps per epoch, and the pruner compares trials at the same step number.
        reported["evaluations"] += 1
        trial.report(score, reported["evaluations"])
        if trial.should_prune():
            raise optuna.TrialPruned(f"fold {reported['fold']} step {step}: {experiment.metric} {score:.4f}")

    def finish(state: str, **fields) -> None:
        artifacts.atomic_write_json(paths.trial_record, {**record, "state": state, **fields,
                                                         "elapsed_s": round(time.perf_counter() - started, 1)})

    scores, evaluations_before = [], 0  # evaluations of the folds already trained
    try:
        try:
            cfg = load_config(experiment.config, [*experiment.overrides, *experiment.space.overrides(values),
                                                  f"name={paths.root.name}"])
        except InputError as err:
            raise TrialSettingsError(str(err)) from err
        for fold in experiment.folds:
            reported["fold"] = fold
            try:
                metrics = train_fold(cfg, fold, resume=True, progress=experiment.progress, on_evaluation=report)
            except InputError as err:
                raise TrialSettingsError(str(err)) from err
            # A fold resumed or already finished reported only part of its evaluations: count them all.
            evaluations_before += len(metrics["history"])
            reported["evaluations"] = evaluations_before
            scores.append(metrics[experiment.metric])
    except optuna.TrialPruned as pruned:
        # A pruned trial is never continued nor blended: its unfinished fold's state and checkpoint only take disk.
        artifacts.remove_dir(paths.training_state(reported["fold"]))
        artifacts.remove_dir(paths.model_dir(reported["fold"]))
        finish("pruned", at=str(pruned), evaluations=reported["evaluations"])
        _story(trial.number, values, f"pruned at evaluation {reported['evaluations']} ({pruned})", started)
        raise
    except TrialSettingsError as err:
        finish("failed", error=str(err))
        _story(trial.number, values, f"failed: {err}", started)
        raise
    except (KeyboardInterrupt, SystemExit):
        finish("interrupted")  # retried, from its saved training state, when the search is run again
        raise
    except Exception as err:
        finish("failed", error=f"{type(err).__name__}: {err}")
        raise
    value = sum(scores) / len(scores)
    finish("complete", value=value, scores=scores)
    folds = ", ".join(map(str, experiment.folds))
    _story(trial.number, values, f"{experiment.metric} {value:.4f} (mean of fold(s) {folds})", started)
    return value


def take_over(previous: str | None, paths: artifacts.RunPaths) -> int | None:
    """A retried trial continues in its predecessor's run folder, renamed to its own number: returns the
    predecessor's trial number, or None when this trial is not a retry (or the predecessor left no folder)."""
    if previous is None or Path(previous) == paths.root or not Path(previous).is_dir() or paths.root.exists():
        return None
    record = read_record(artifacts.RunPaths(Path(previous)))
    os.replace(previous, paths.root)
    number = record.get("trial") if record else None
    log.info("trial %s continues in %s (was %s)", paths.root.name, paths.root, previous)
    return number


def check_folder(paths: artifacts.RunPaths, study: str, number: int) -> None:
    """A trial's folder is new or its own: never another study's trial, nor a run that only shares the name."""
    if not paths.root.exists():
        return
    record = read_record(paths)
    if record is None:
        raise InputError(f"{paths.root} exists and is not a trial of a search (no {paths.trial_record.name}): "
                         "move it away, or give the search another experiment name (--set name=...)")
    if record.get("study") != study or record.get("trial") != number:
        raise InputError(f"{paths.root} holds trial {record.get('trial')} of study {record.get('study')}, not trial "
                         f"{number} of study {study} (another space file or --storage makes another study): move it "
                         "away, or give this search another experiment name (--set name=...)")


def read_record(paths: artifacts.RunPaths) -> dict[str, Any] | None:
    try:
        return json.loads(paths.trial_record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _story(number: int, values: dict, outcome: str, started: float) -> None:
    """The search's one line per trial."""
    write(f"trial {number} ({describe(values)}): {outcome} in {time.perf_counter() - started:.0f} s")
