"""Blend folds and experiments: score the out-of-fold predictions (the CV) and write submission.csv."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from foldnlp import artifacts
from foldnlp.config import DecodeConfig, ExperimentConfig
from foldnlp.data import read_qa_csv
from foldnlp.ensembling import average_char_scores
from foldnlp.errors import InputError
from foldnlp.folds import read_folds
from foldnlp.metrics import jaccard_report
from foldnlp.steps.infer import load_run_config, read_test, sample_submission_path
from foldnlp.tasks.qa import task
from foldnlp.tasks.qa.charscores import CharScores, concat_char_scores

log = logging.getLogger(__name__)


@dataclass
class Experiment:
    paths: artifacts.RunPaths
    cfg: ExperimentConfig
    folds: list[int]


def ensemble(run_dirs: list[Path], *, weights: list[float] | None, test_csv: str | None, sample_csv: str | None,
             out: Path, decode_overrides: dict | None = None, folds: list[list[int]] | None = None,
             score_oof: bool = True) -> str:
    """Write the blended submission to `out`; returns the CV report of the blended out-of-fold outputs.

    decode_overrides: DecodeConfig fields replacing the first experiment's (max_answer_chars, ...).
    folds: per run dir, the folds to blend (default: every trained fold, found by its metrics.json).
    score_oof=False skips the CV report, for test-only run folders (a Kaggle kernel has no OOF outputs or train CSV).
    """
    folds = folds if folds is not None else [None] * len(run_dirs)
    experiments = [_open(Path(d), k) for d, k in zip(run_dirs, folds, strict=True)]
    if weights is not None and len(weights) != len(experiments):
        raise InputError(f"--weights: {len(weights)} weights for {len(experiments)} experiments")
    decode_cfg = dataclasses.replace(experiments[0].cfg.decode, **(decode_overrides or {}))
    report = cv_report(experiments, weights, decode_cfg) if score_oof else "CV not computed (test-only blend)"
    test_csv = test_csv or experiments[0].cfg.data.test_csv
    sample_csv = Path(sample_csv or sample_submission_path(test_csv, experiments[0].cfg.data.sample_submission_csv))
    test, sample = read_test(test_csv, sample_csv)
    blended = _blend([_test_scores(e) for e in experiments], weights, "test outputs")
    answers = dict(zip(blended.ids, task.decode(test, blended, decode_cfg)))
    submission = pd.DataFrame({"id": sample["id"], "PredictionString": sample["id"].map(answers)})
    artifacts.atomic_write_csv(out, submission)
    if decode_cfg.n_best > 1:
        artifacts.atomic_write_csv(nbest_path(out), task.n_best_table(test, blended, decode_cfg))
    log.info("wrote %s: %d rows, blended from %s", out, len(submission),
             ", ".join(f"{e.paths.root} folds {e.folds}" for e in experiments))
    return report


def nbest_path(out: Path) -> Path:
    """submission.csv → submission.nbest.csv: the n best candidate answers per test id, for error analysis."""
    return out.with_suffix(".nbest.csv")


def cv_report(experiments: list[Experiment], weights: list[float] | None, decode_cfg: DecodeConfig) -> str:
    """CV Jaccard of the blended out-of-fold predictions, per fold, overall and per language."""
    oof = _blend([_oof_scores(e) for e in experiments], weights, "out-of-fold outputs")
    cfg = experiments[0].cfg
    all_rows = read_qa_csv(cfg.data.train_csv, with_answers=True)
    folds = read_folds(artifacts.fold_file(cfg.folds.folds_dir, cfg.folds.scheme), all_rows["id"])
    train = all_rows.set_index("id").loc[list(oof.ids)].reset_index()
    raw = task.decode(train, oof, decode_cfg, clean=False)  # train is in oof.ids order
    frame = train.assign(fold=train["id"].map(folds).to_numpy(), raw=raw,
                         prediction=task.clean_answers(raw, train["context"].tolist()))
    by_fold = jaccard_report(frame, "fold")
    by_language = jaccard_report(frame, "language")
    raw = jaccard_report(frame, prediction_col="raw")["jaccard"].iloc[0]
    lines = [f"CV Jaccard (out-of-fold, {len(frame)} questions, folds {sorted(set(frame['fold']))}): "
             f"{by_fold['jaccard'].iloc[0]:.4f}  (without post-processing {raw:.4f})",
             "per fold:     " + "  ".join(f"{r.fold}: {r.jaccard:.4f} (n={r.n})"
                                          for r in by_fold.iloc[1:].itertuples()),
             "per language: " + "  ".join(f"{r.language}: {r.jaccard:.4f} (n={r.n})"
                                          for r in by_language.iloc[1:].itertuples())]
    return "\n".join(lines)


def _open(run_dir: Path, folds: list[int] | None) -> Experiment:
    paths = artifacts.RunPaths(run_dir)
    cfg = load_run_config(paths)
    folds = folds if folds is not None else paths.trained_folds()
    if not folds:
        raise InputError(f"{run_dir} has no trained fold (no fold*/metrics.json): run train_fold.py first")
    return Experiment(paths, cfg, folds)


def _oof_scores(e: Experiment) -> CharScores:
    return concat_char_scores([artifacts.load_char_scores(e.paths.oof_scores(k)) for k in e.folds])


def _test_scores(e: Experiment) -> CharScores:
    """The experiment's test scores: every fold's, averaged with equal weights."""
    missing = [k for k in e.folds if not e.paths.test_scores(k).is_file()]
    if missing:
        raise InputError(f"{e.paths.root}: no test outputs for fold(s) {missing}: run infer.py first")
    return _blend([artifacts.load_char_scores(e.paths.test_scores(k)) for k in e.folds], None,
                  f"test outputs of {e.paths.root}")


def _blend(members: list[CharScores], weights: list[float] | None, what: str) -> CharScores:
    try:
        return average_char_scores(members, weights)
    except ValueError as err:
        raise InputError(f"cannot blend the {what}: {err}") from err
