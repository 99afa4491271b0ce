"""What the leaderboard reads: each run folder's CV recomputed from its out-of-fold scores (overall, per fold, per
group and bucket), its training time and speed, the settings it was trained with and every fold's evaluation
history; the CV of a blend of experiments; and the public-board file (--lb)."""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from foldnlp import artifacts
from foldnlp.ensembling import average_scores
from foldnlp.errors import InputError, format_rows
from foldnlp.provenance import file_sha256, flatten_config, training_config
from foldnlp.runs import Run, open_run
from foldnlp.scores import Scores, concat_scores
from foldnlp.tables import read_text_csv, refuse_bad_cells, require_columns
from foldnlp.tasks import get_task
from foldnlp.tasks.base import GroupScores

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FoldRecord:
    fold: int
    score: float  # the metric of the fold's out-of-fold predictions
    seconds: float  # the training loop's wall-clock, evaluations and the parts before a resume included
    windows: float | None  # training windows seen (per-epoch windows × epochs trained); None: older metrics.json
    history: list[dict]  # metrics.json's evaluations: step, epoch, the metric, train_loss, lr, elapsed_s


@dataclass(frozen=True)
class ExperimentSummary:
    folder: Path
    task: str
    metric: str
    higher_is_better: bool
    fold_file: str  # the fold file it was trained on, as recorded
    fold_file_sha256: str
    n_folds: int  # folds of its fold scheme
    cv: float  # the metric of every trained fold's out-of-fold predictions together
    scored: int  # training examples those predictions cover
    n_train: int  # training examples
    folds: list[FoldRecord]  # the trained folds, in order
    groups: GroupScores | None  # Task.score_by_group of the out-of-fold predictions
    buckets: GroupScores | None  # Task.score_by_bucket of them
    settings: dict  # the training config, flat ("train.lr": 0.0001)

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def partial(self) -> bool:
        """Its CV covers only some training examples (folds not trained yet)."""
        return self.scored < self.n_train

    @property
    def train_seconds(self) -> float:
        return sum(f.seconds for f in self.folds)

    @property
    def windows_per_second(self) -> float | None:
        """Training windows per second of training wall-clock over all folds; None if a fold predates the count."""
        if any(f.windows is None for f in self.folds) or self.train_seconds <= 0:
            return None
        return sum(f.windows for f in self.folds) / self.train_seconds


def run_folders(paths: list[Path]) -> list[Path]:
    """The folders to report, in the order given: files among them are skipped (`outputs/*` takes in
    outputs/submission.csv), as are run folders without a finished fold (one still training its first); a folder
    that is not a run folder is an InputError naming it."""
    found = []
    for path in paths:
        paths_of = artifacts.RunPaths(Path(path))
        if Path(path).is_file():
            log.info("skipping %s: a file, not a run folder", path)
        elif not paths_of.config.is_file():
            raise InputError(f"{path} is not a run folder (no {paths_of.config.name}; a run folder is "
                             "<output_dir>/<name>/ as train_fold.py writes it)")
        elif not paths_of.trained_folds():
            log.warning("skipping %s: no finished fold yet (no fold*/metrics.json)", path)
        else:
            found.append(Path(path))
    if not found:
        raise InputError(f"no run folder with a finished fold among {format_rows(map(str, paths), 5)}")
    return found


def summarize(folder: Path) -> ExperimentSummary:
    """The leaderboard's record of one run folder (with at least one finished fold)."""
    run = open_run(folder)
    task = get_task(run.cfg)
    train = task.read_train()
    parts = [artifacts.load_scores(run.paths.oof_scores(k)) for k in run.folds]
    oof = concat_scores(parts)
    scored = _scored_examples(run, train, oof)
    predictions = task.decode(scored, oof)
    metrics = {k: json.loads(run.paths.metrics(k).read_text(encoding="utf-8")) for k in run.folds}
    records = []
    for k, part in zip(run.folds, parts):
        mine = set(part.ids.tolist())
        records.append(_fold_record(k, metrics[k], task.score(scored[scored["id"].isin(mine)],
                                                              predictions[predictions["id"].isin(mine)])))
    provenance = metrics[run.folds[0]].get("provenance") or {}
    fold_file = provenance.get("fold_file") or _current_fold_file(run)
    return ExperimentSummary(
        folder=Path(folder), task=task.name, metric=task.metric_name, higher_is_better=task.higher_is_better,
        fold_file=fold_file["path"], fold_file_sha256=fold_file["sha256"], n_folds=run.cfg.folds.n_folds,
        cv=task.score(scored, predictions), scored=len(scored), n_train=len(train), folds=records,
        groups=task.score_by_group(scored, predictions), buckets=task.score_by_bucket(scored, predictions),
        settings=flatten_config(provenance.get("config") or training_config(run.cfg)))


def blend_cv(folders: list[Path]) -> float:
    """The metric of the equal-weight blend (ensembling.average_scores) of these experiments' out-of-fold scores,
    on the training ids every one of them covers; decoded and scored by the first one's task."""
    runs = [open_run(folder) for folder in folders]
    task = get_task(runs[0].cfg)
    train = task.read_train()
    members = [concat_scores([artifacts.load_scores(run.paths.oof_scores(k)) for k in run.folds]) for run in runs]
    common = set.intersection(*(set(m.ids.tolist()) for m in members))
    if not common:
        raise InputError(f"{', '.join(map(str, folders))}: their out-of-fold predictions share no training id")
    ids = [i for i in members[0].ids.tolist() if i in common]
    try:
        blended = average_scores([m.select(ids) for m in members])
    except ValueError as err:
        raise InputError(f"cannot blend the out-of-fold outputs of {', '.join(map(str, folders))}: {err}") from err
    scored = _scored_examples(runs[0], train, blended)
    return task.score(scored, task.decode(scored, blended))


def read_public_board(path: Path) -> pd.DataFrame:
    """--lb: columns submission, experiments (a list of run folders, each resolved from the directory the report
    runs in) and public_score (float), one row per submission scored on the public board."""
    frame = read_text_csv(path)
    require_columns(frame, ["submission", "experiments", "public_score"], path)
    score = pd.to_numeric(frame["public_score"].str.strip(), errors="coerce").to_numpy(dtype=float)
    refuse_bad_cells(frame, ~np.isfinite(score), "public_score", "must hold numbers", path)
    folders = frame["experiments"].str.split()
    refuse_bad_cells(frame, (folders.str.len() == 0).to_numpy(), "experiments",
                     "must list run folders, space-separated", path)
    return pd.DataFrame({"submission": frame["submission"],
                         "experiments": [[Path(f).resolve() for f in row] for row in folders],
                         "public_score": score})


def _scored_examples(run: Run, train: pd.DataFrame, oof: Scores) -> pd.DataFrame:
    """The training examples of the out-of-fold ids, in their order; InputError for ids predicted twice or not
    in the training data (the data changed since training)."""
    repeated = sorted(i for i, n in Counter(oof.ids.tolist()).items() if n > 1)
    if repeated:
        raise InputError(f"{run.paths.root}: {len(repeated)} training id(s) predicted by several folds, e.g. "
                         f"{format_rows(repeated, 3)}: retrain those folds with --overwrite")
    unknown = sorted(set(oof.ids.tolist()) - set(train["id"]))
    if unknown:
        raise InputError(f"{run.paths.root}: {len(unknown)} out-of-fold id(s) are not in the training data "
                         f"{run.cfg.data.train_csv}, e.g. {format_rows(unknown, 3)}: it changed since training")
    return train.set_index("id").loc[list(oof.ids)].reset_index()


def _fold_record(fold: int, metrics: dict, score: float) -> FoldRecord:
    history = metrics.get("history", [])
    seconds = history[-1]["elapsed_s"] if history else metrics["train_seconds"]
    windows = None
    if metrics.get("train_windows") is not None and metrics.get("steps_per_epoch"):
        windows = metrics["train_windows"] * metrics["steps"] / metrics["steps_per_epoch"]
    return FoldRecord(fold, score, float(seconds), windows, history)


def _current_fold_file(run: Run) -> dict:
    """The fold file of the run's config, for folds that predate provenance records."""
    path = artifacts.fold_file(run.cfg.folds.folds_dir, run.cfg.folds.scheme)
    return {"path": str(path), "sha256": file_sha256(path) if path.is_file() else "unknown"}
