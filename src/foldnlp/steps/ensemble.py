"""Blend folds and experiments: score the out-of-fold predictions (the CV) and write submission.csv."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from foldnlp import artifacts
from foldnlp.ensembling import average_scores
from foldnlp.errors import InputError, format_rows
from foldnlp.folds import read_folds
from foldnlp.provenance import file_sha256, mismatch
from foldnlp.runs import Run, open_run
from foldnlp.scores import Scores, concat_scores
from foldnlp.steps.infer import test_paths
from foldnlp.tables import describe_id_differences
from foldnlp.tasks import get_task

log = logging.getLogger(__name__)


@dataclass
class Experiment:
    run: Run
    provenance: dict | None  # of its first trained fold, every fold's checked to match; None in a test-only blend

    @property
    def paths(self) -> artifacts.RunPaths:
        return self.run.paths

    @property
    def cfg(self):
        return self.run.cfg

    @property
    def folds(self) -> list[int]:
        return self.run.folds


def ensemble(run_dirs: list[Path], *, weights: list[float] | None, test_csv: str | None, sample_csv: str | None,
             out: Path, overrides: list[str] = (), folds: list[list[int]] | None = None, score_oof: bool = True,
             allow_mixed_folds: bool = False) -> str:
    """Write the blended submission to `out`; returns the CV report of the blended out-of-fold outputs.

    overrides: "section.key=value" settings applied to the first experiment's config, whose task decodes the
    blend (QA: qa.decode.max_answer_chars=...).
    folds: per run dir, the folds to blend (default: every trained fold, found by its metrics.json).
    score_oof=False skips the CV report and the training-side checks, for test-only run folders (a Kaggle kernel
    has no OOF outputs, metrics or train CSV); test ids are checked either way.
    Experiments whose fold files or data differ, or whose out-of-fold outputs do not cover every training id
    exactly once, are refused (InputError) unless allow_mixed_folds, which warns and scores the CV on the ids
    every experiment covers exactly once.
    """
    folds = folds if folds is not None else [None] * len(run_dirs)
    experiments = [_open(Path(d), k, overrides if i == 0 else [], checked=score_oof,
                         allow_mixed_folds=allow_mixed_folds)
                   for i, (d, k) in enumerate(zip(run_dirs, folds, strict=True))]
    tasks = {e.cfg.task for e in experiments}
    if len(tasks) > 1:
        raise InputError("cannot blend experiments of different tasks: " + ", ".join(
            f"{e.paths.root} is task {e.cfg.task}" for e in experiments))
    if weights is not None and len(weights) != len(experiments):
        raise InputError(f"--weights: {len(weights)} weights for {len(experiments)} experiments")
    task = get_task(experiments[0].cfg)
    if score_oof:
        _check_same_folds(experiments, allow_mixed_folds)
        train, fold_of_id, oof = blended_oof(task, experiments, weights, allow_mixed_folds)
        report = task.cv_report(train, oof, fold_of_id)
        task = task.fit_decoding(train, oof)
    else:
        report = "CV not computed (test-only blend)"
    test_csv, sample_csv = test_paths(experiments[0].cfg, test_csv, sample_csv)
    test, sample = task.read_test(test_csv, sample_csv)
    blended = _blend([_test_scores(e, test["id"], test_csv) for e in experiments], weights, "test outputs")
    submission = task.submission(sample, task.decode(test, blended))
    artifacts.atomic_write_csv(out, submission)
    for name, table in task.side_tables(test, blended).items():
        artifacts.atomic_write_csv(side_table_path(out, name), table)
    log.info("wrote %s: %d rows, blended from %s", out, len(submission),
             ", ".join(f"{e.paths.root} folds {e.folds}" for e in experiments))
    return report


def side_table_path(out: Path, name: str) -> Path:
    """submission.csv → submission.<name>.csv (QA: submission.nbest.csv, the n best answers per test id)."""
    return out.with_suffix(f".{name}.csv")


def blended_oof(task, experiments: list[Experiment], weights: list[float] | None,
                allow_mixed_folds: bool = False) -> tuple[pd.DataFrame, pd.Series, Scores]:
    """(training examples, fold per id, blended out-of-fold scores), every experiment's OOF checked to cover
    the training ids exactly once."""
    cfg = experiments[0].cfg
    train = task.read_train()
    folds = read_folds(artifacts.fold_file(cfg.folds.folds_dir, cfg.folds.scheme), train["id"])
    members = [_oof_scores(e) for e in experiments]
    problems = [f"{e.paths.root}: {p}" for e, m in zip(experiments, members)
                if (p := oof_coverage_problem(m.ids, folds, e.folds))]
    if problems and not allow_mixed_folds:
        raise InputError("out-of-fold outputs must cover every training id exactly once: " + "; ".join(problems)
                         + ". Train the missing folds, or pass --allow-mixed-folds to score the ids covered")
    if problems:
        common = _covered_by_all(members)
        log.warning("--allow-mixed-folds: %s; the CV covers the %d ids every experiment has exactly once",
                    "; ".join(problems), len(common))
        members = [m.select(common) for m in members]
    return train, folds, _blend(members, weights, "out-of-fold outputs")


def oof_coverage_problem(oof_ids, folds: pd.Series, trained: list[int]) -> str:
    """'' when oof_ids hold every id of `folds` (index id, value fold) exactly once, else what is wrong."""
    counts = pd.Series(list(oof_ids), dtype=object).value_counts()
    repeated = counts.index[counts > 1].tolist()
    unknown = sorted(set(counts.index) - set(folds.index))
    missing = folds.index[~folds.index.isin(counts.index)]
    parts = []
    if len(missing):
        untrained = sorted(set(folds.loc[missing].tolist()) - set(trained))
        why = f" (fold(s) {untrained} not trained)" if untrained else ""
        parts.append(f"{len(missing)} of {len(folds)} training ids missing{why}, e.g. {format_rows(missing, 3)}")
    if repeated:
        parts.append(f"{len(repeated)} id(s) predicted by several folds, e.g. {format_rows(repeated, 3)}")
    if unknown:
        parts.append(f"{len(unknown)} id(s) not in the training data, e.g. {format_rows(unknown, 3)}")
    return ", ".join(parts)


def _covered_by_all(members: list[Scores]) -> list[str]:
    """Ids that every member holds exactly once, in the first member's order."""
    once = [{i for i, n in Counter(m.ids.tolist()).items() if n == 1} for m in members]
    common = set.intersection(*once)
    return [i for i in dict.fromkeys(members[0].ids.tolist()) if i in common]


def _open(run_dir: Path, folds: list[int] | None, overrides: list[str], *, checked: bool,
          allow_mixed_folds: bool) -> Experiment:
    """An experiment's run folder; checked: its folds share one training config, fold file and data."""
    run = open_run(run_dir, folds, overrides=overrides)
    if not checked:
        return Experiment(run, provenance=None)
    records = {k: run.provenance(k) for k in run.folds}
    first = records[run.folds[0]]
    differing = {k: why for k, r in records.items() if (why := mismatch(first, r))}
    if differing:
        _refuse_or_warn(f"{run_dir}: fold(s) {list(differing)} were trained with another config, fold file or data "
                        f"than fold {run.folds[0]} ({'; '.join(differing.values())})", allow_mixed_folds)
    return Experiment(run, first)


def _check_same_folds(experiments: list[Experiment], allow_mixed_folds: bool) -> None:
    """Blending OOF outputs of different fold splits leaks: a model's OOF row was another's training row."""
    reference = experiments[0]
    fold_file = artifacts.fold_file(reference.cfg.folds.folds_dir, reference.cfg.folds.scheme)
    if not fold_file.is_file():
        raise InputError(f"fold file {fold_file} of {reference.paths.root} does not exist (run make_folds.py)")
    now, train_now = file_sha256(fold_file), file_sha256(reference.cfg.data.train_csv)
    for e in experiments:
        recorded = e.provenance["fold_file"]
        if recorded["sha256"] != now:
            _refuse_or_warn(f"{e.paths.root} was trained on fold file {recorded['path']} (sha256 "
                            f"{recorded['sha256'][:12]}), but {fold_file} is now sha256 {now[:12]}: its folds differ",
                            allow_mixed_folds)
        train_then = e.provenance["data"][e.cfg.data.train_csv]
        if train_then != train_now:
            _refuse_or_warn(f"{e.paths.root} was trained on {e.cfg.data.train_csv} with sha256 {train_then[:12]}, "
                            f"but {reference.cfg.data.train_csv} is now sha256 {train_now[:12]}: the data changed",
                            allow_mixed_folds)


def _refuse_or_warn(problem: str, allow_mixed_folds: bool) -> None:
    if not allow_mixed_folds:
        raise InputError(f"{problem}; the CV of such a blend is not valid. Pass --allow-mixed-folds to blend anyway")
    log.warning("--allow-mixed-folds: %s", problem)


def _oof_scores(e: Experiment) -> Scores:
    return concat_scores([artifacts.load_scores(e.paths.oof_scores(k)) for k in e.folds])


def _test_scores(e: Experiment, test_ids, test_csv) -> Scores:
    """The experiment's test scores: every fold's, averaged with equal weights; each must cover the test ids."""
    missing = [k for k in e.folds if not e.paths.test_scores(k).is_file()]
    if missing:
        raise InputError(f"{e.paths.root}: no test outputs for fold(s) {missing}: run infer.py first")
    members = []
    for k in e.folds:
        scores = artifacts.load_scores(e.paths.test_scores(k))
        differences = describe_id_differences(test_ids, scores.ids, str(test_csv), str(e.paths.test_scores(k)))
        if differences:
            raise InputError(f"test outputs of fold {k} of {e.paths.root} cover other ids than the submission "
                             f"({differences}): run infer.py on this test set")
        members.append(scores)
    return _blend(members, None, f"test outputs of {e.paths.root}")


def _blend(members: list[Scores], weights: list[float] | None, what: str) -> Scores:
    try:
        return average_scores(members, weights)
    except ValueError as err:
        raise InputError(f"cannot blend the {what}: {err}") from err
