"""Blend folds and experiments: score the out-of-fold predictions (the CV) and write submission.csv."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from foldnlp import artifacts
from foldnlp.config import DecodeConfig, ExperimentConfig
from foldnlp.data import describe_id_differences, read_qa_csv
from foldnlp.ensembling import average_char_scores
from foldnlp.errors import InputError, format_rows
from foldnlp.folds import read_folds
from foldnlp.metrics import jaccard_report
from foldnlp.provenance import file_sha256, mismatch
from foldnlp.steps.infer import load_run_config, read_test, sample_submission_path
from foldnlp.tasks.qa import task
from foldnlp.tasks.qa.charscores import CharScores, concat_char_scores

log = logging.getLogger(__name__)


@dataclass
class Experiment:
    paths: artifacts.RunPaths
    cfg: ExperimentConfig
    folds: list[int]
    provenance: dict | None  # of its first trained fold, every fold's checked to match; None in a test-only blend


def ensemble(run_dirs: list[Path], *, weights: list[float] | None, test_csv: str | None, sample_csv: str | None,
             out: Path, decode_overrides: dict | None = None, folds: list[list[int]] | None = None,
             score_oof: bool = True, allow_mixed_folds: bool = False) -> str:
    """Write the blended submission to `out`; returns the CV report of the blended out-of-fold outputs.

    decode_overrides: DecodeConfig fields replacing the first experiment's (max_answer_chars, ...).
    folds: per run dir, the folds to blend (default: every trained fold, found by its metrics.json).
    score_oof=False skips the CV report and the training-side checks, for test-only run folders (a Kaggle kernel
    has no OOF outputs, metrics or train CSV); test ids are checked either way.
    Experiments whose fold files or data differ, or whose out-of-fold outputs do not cover every training id
    exactly once, are refused (InputError) unless allow_mixed_folds, which warns and scores the CV on the ids
    every experiment covers exactly once.
    """
    folds = folds if folds is not None else [None] * len(run_dirs)
    experiments = [_open(Path(d), k, checked=score_oof, allow_mixed_folds=allow_mixed_folds)
                   for d, k in zip(run_dirs, folds, strict=True)]
    if weights is not None and len(weights) != len(experiments):
        raise InputError(f"--weights: {len(weights)} weights for {len(experiments)} experiments")
    decode_cfg = dataclasses.replace(experiments[0].cfg.decode, **(decode_overrides or {}))
    if score_oof:
        _check_same_folds(experiments, allow_mixed_folds)
        report = cv_report(experiments, weights, decode_cfg, allow_mixed_folds)
    else:
        report = "CV not computed (test-only blend)"
    test_csv = test_csv or experiments[0].cfg.data.test_csv
    sample_csv = Path(sample_csv or sample_submission_path(test_csv, experiments[0].cfg.data.sample_submission_csv))
    test, sample = read_test(test_csv, sample_csv)
    blended = _blend([_test_scores(e, sample["id"], sample_csv) for e in experiments], weights, "test outputs")
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


def cv_report(experiments: list[Experiment], weights: list[float] | None, decode_cfg: DecodeConfig,
              allow_mixed_folds: bool = False) -> str:
    """CV Jaccard of the blended out-of-fold predictions, per fold, overall and per language."""
    cfg = experiments[0].cfg
    all_rows = read_qa_csv(cfg.data.train_csv, with_answers=True)
    folds = read_folds(artifacts.fold_file(cfg.folds.folds_dir, cfg.folds.scheme), all_rows["id"])
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
    oof = _blend(members, weights, "out-of-fold outputs")
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


def _covered_by_all(members: list[CharScores]) -> list[str]:
    """Ids that every member holds exactly once, in the first member's order."""
    once = [{i for i, n in Counter(m.ids.tolist()).items() if n == 1} for m in members]
    common = set.intersection(*once)
    return [i for i in dict.fromkeys(members[0].ids.tolist()) if i in common]


def _open(run_dir: Path, folds: list[int] | None, *, checked: bool, allow_mixed_folds: bool) -> Experiment:
    """An experiment's run folder; checked: its folds share one training config, fold file and data."""
    paths = artifacts.RunPaths(run_dir)
    cfg = load_run_config(paths)
    folds = paths.folds_to_use(folds)
    if not checked:
        return Experiment(paths, cfg, folds, provenance=None)
    records = {k: json.loads(paths.metrics(k).read_text(encoding="utf-8")).get("provenance") for k in folds}
    unrecorded = [k for k, r in records.items() if r is None]
    if unrecorded:
        raise InputError(f"{run_dir}: fold(s) {unrecorded} have no provenance in metrics.json (trained by an older "
                         "foldnlp): retrain them with --overwrite")
    first = records[folds[0]]
    differing = {k: why for k, r in records.items() if (why := mismatch(first, r))}
    if differing:
        _refuse_or_warn(f"{run_dir}: fold(s) {list(differing)} were trained with another config, fold file or data "
                        f"than fold {folds[0]} ({'; '.join(differing.values())})", allow_mixed_folds)
    return Experiment(paths, cfg, folds, first)


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


def _oof_scores(e: Experiment) -> CharScores:
    return concat_char_scores([artifacts.load_char_scores(e.paths.oof_scores(k)) for k in e.folds])


def _test_scores(e: Experiment, sample_ids, sample_csv: Path) -> CharScores:
    """The experiment's test scores: every fold's, averaged with equal weights; each must cover the sample's ids."""
    missing = [k for k in e.folds if not e.paths.test_scores(k).is_file()]
    if missing:
        raise InputError(f"{e.paths.root}: no test outputs for fold(s) {missing}: run infer.py first")
    members = []
    for k in e.folds:
        scores = artifacts.load_char_scores(e.paths.test_scores(k))
        differences = describe_id_differences(sample_ids, scores.ids, str(sample_csv), str(e.paths.test_scores(k)))
        if differences:
            raise InputError(f"test outputs of fold {k} of {e.paths.root} cover other ids than the submission "
                             f"({differences}): run infer.py on this test set")
        members.append(scores)
    return _blend(members, None, f"test outputs of {e.paths.root}")


def _blend(members: list[CharScores], weights: list[float] | None, what: str) -> CharScores:
    try:
        return average_char_scores(members, weights)
    except ValueError as err:
        raise InputError(f"cannot blend the {what}: {err}") from err
