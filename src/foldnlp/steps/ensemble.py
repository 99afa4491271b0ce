"""Blend folds and experiments: score the out-of-fold predictions (the CV) and write submission.csv."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from foldnlp import artifacts, oof_weights, test_outputs
from foldnlp.blend_weights import DEFAULT_ROUNDS
from foldnlp.ensembling import average_scores
from foldnlp.errors import InputError, format_rows
from foldnlp.folds import read_folds
from foldnlp.postprocess_ablation import ablation_report
from foldnlp.provenance import file_sha256, mismatch
from foldnlp.runs import Run, open_run
from foldnlp.scores import Scores, concat_scores
from foldnlp.steps.infer import test_paths
from foldnlp.tables import describe_id_differences
from foldnlp.tasks import get_task

log = logging.getLogger(__name__)

# What a blend reads of the first experiment's config, so what ensemble.py --set may change: the data it scores and
# decodes (training CSV, test CSV and sample submission, fold file) and the task's decoding settings
# (Task.decoding_key). Window, model and training settings belong to the folds: a blend of finished outputs cannot
# change them, and accepting them would let a user believe it had.
BLEND_SETTINGS = ("data.", "folds.")


@dataclass
class Experiment:
    """One member of the blend: a run's folds, and which of its test outputs."""

    spec: str  # as given: a run folder, RUN@KEY, or a folder written by infer.py --out-dir
    run: Run
    home: artifacts.RunPaths  # the folder holding its test outputs: the run folder or an infer.py --out-dir
    key: str | None  # the test outputs asked for (RUN@KEY); None: the most recent made from the test file
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


def ensemble(experiments: list[str | Path], *, weights: list[float] | None, test_csv: str | None,
             sample_csv: str | None, out: Path, overrides: list[str] = (), folds: list[list[int]] | None = None,
             score_oof: bool = True, allow_mixed_folds: bool = False, fit_weights: bool = False,
             fit_rounds: int = DEFAULT_ROUNDS) -> str:
    """Write the blended submission to `out`; returns the report: the CV of the blended out-of-fold outputs, each
    member's beside it, what each post-processing rule is worth on them, which test outputs were blended, and
    what was written.

    experiments: members, each a run folder, `RUN@KEY` (its test outputs RUN/test/KEY/; default: the most recent
    made from the test file) or a folder written by infer.py --out-dir; one run may come several times with
    different test outputs (a test-time ensemble of inference settings).
    overrides: "section.key=value" settings applied to the first experiment's config, whose task decodes the
    blend (QA: qa.decode.max_answer_chars=...); only what a blend reads (BLEND_SETTINGS, Task.decoding_key).
    folds: per member, the folds to blend (default: every trained fold, found by its metrics.json).
    score_oof=False skips the CV report and the training-side checks, for test-only run folders (a Kaggle kernel
    has no OOF outputs, metrics or train CSV); test ids are checked either way.
    fit_weights: the members' weights fit on their out-of-fold outputs (oof_weights, at most fit_rounds additions
    of greedy selection), reported with the honest per-fold estimate, written to <out>.weights.json and used for
    the test blend; refused with weights or without score_oof.
    Experiments whose fold files or data differ, or whose out-of-fold outputs do not cover every training id
    exactly once, are refused (InputError) unless allow_mixed_folds, which warns and scores the CV on the ids
    every experiment covers exactly once. Test outputs made from another test file than test_csv are refused.
    """
    if fit_weights and weights is not None:
        raise InputError("--fit-weights fits the weights on the out-of-fold outputs: drop --weights")
    if fit_weights and not score_oof:
        raise InputError("--fit-weights fits the weights on the out-of-fold outputs, which --no-cv skips: drop one")
    folds = folds if folds is not None else [None] * len(experiments)
    members = [_open(spec, k, overrides if i == 0 else [], checked=score_oof, allow_mixed_folds=allow_mixed_folds)
               for i, (spec, k) in enumerate(zip(experiments, folds, strict=True))]
    tasks = {e.cfg.task for e in members}
    if len(tasks) > 1:
        raise InputError("cannot blend experiments of different tasks: " + ", ".join(
            f"{e.paths.root} is task {e.cfg.task}" for e in members))
    if weights is not None and len(weights) != len(members):
        raise InputError(f"--weights: {len(weights)} weights for {len(members)} experiments")
    task = get_task(members[0].cfg)
    check_blend_overrides(overrides, task)
    written = []
    if score_oof:
        _check_same_folds(members, allow_mixed_folds)
        labels = [e.spec for e in members]
        train, fold_of_id, member_oof = members_oof(task, members, allow_mixed_folds)
        fit = None
        if fit_weights and len(members) > 1:
            _blend(member_oof, None, "out-of-fold outputs")  # members that cannot blend fail here, in one line
            fit = oof_weights.fit_weights(task, train, fold_of_id, labels, member_oof, max_rounds=fit_rounds)
            weights = fit.weights
        oof = _blend(member_oof, weights, "out-of-fold outputs")
        report = [task.cv_report(train, oof, fold_of_id)]
        blend_value = fit.value if fit is not None else None  # the metric of oof, once decoded
        if fit is not None:
            report.append(fit.report)
            artifacts.atomic_write_json(weights_path(out), fit.record)
            written.append(f"wrote {weights_path(out)} (the fitted weights, used for the test blend: pass them "
                           f"back with --weights {' '.join(repr(w) for w in fit.weights)})")
        elif fit_weights:
            report.append("--fit-weights: one experiment, nothing to fit (its weight is 1)")
        elif len(members) > 1:
            blend_value = task.metric(train, oof)
            report.append(member_report(task, labels, [task.metric(train, m) for m in member_oof], blend_value,
                                        len(oof)))
        ablation = ablation_report(task, train, oof, blend_value)
        if ablation is not None:
            report.append(ablation)
        decoding = task.fit_decoding(train, oof, fold_of_id)
        if decoding is not None:
            report.append(decoding.report)
            task = decoding.task
            artifacts.atomic_write_json(decoding_path(out), decoding.settings)
            written.append(f"wrote {decoding_path(out)} (the decoding settings fit on the out-of-fold blend)")
    else:
        report = ["CV not computed (test-only blend)"]
    test_csv, sample_csv = test_paths(members[0].cfg, test_csv, sample_csv)
    test, sample = task.read_test(test_csv, sample_csv)
    test_sha = file_sha256(test_csv)
    chosen = [test_outputs.select(e.home, e.key, test_csv, test_sha, e.folds, infer_command(e, test_csv))
              for e in members]
    repeated = [label for label, n in Counter(f"{r.label} folds {e.folds}" for e, r in zip(members, chosen)).items()
                if n > 1]
    if repeated:
        log.warning("the same test outputs come more than once in the blend: %s (name other settings with RUN@KEY)",
                    ", ".join(repeated))
    blended = _blend([_test_scores(e, r, test["id"], test_csv) for e, r in zip(members, chosen)], weights,
                     "test outputs")
    report.append(f"test outputs blended (for {test_csv}, sha256 {test_sha[:12]}):\n"
                  + "\n".join(f"  {r.describe()}" for r in chosen))
    submission = task.submission(sample, task.decode(test, blended))
    artifacts.atomic_write_csv(out, submission)
    for name, table in task.side_tables(test, blended).items():
        artifacts.atomic_write_csv(side_table_path(out, name), table)
        written.append(f"wrote {side_table_path(out, name)}")
    report.append(f"wrote {out}: {len(submission)} rows, blended from "
                  + ", ".join(f"{r.label} folds {e.folds}" for e, r in zip(members, chosen)))
    return "\n".join(report + written)


def parse_member(spec: str | Path) -> tuple[Path, str | None]:
    """'outputs/a@chaii_test-1a2b3c4d' → (outputs/a, 'chaii_test-1a2b3c4d'); 'outputs/a' → (outputs/a, None). A
    folder whose own name holds an '@' is taken whole."""
    text = str(spec)
    folder, at, key = text.rpartition("@")
    if at and folder and "/" not in key and not Path(text).exists():
        return Path(folder), key
    return Path(text), None


def default_out(first_member: str | Path) -> Path:
    """submission.csv beside the first member's folder: outputs/submission.csv for outputs/default, so it follows
    the experiment's output_dir."""
    return parse_member(first_member)[0].parent / "submission.csv"


def infer_command(e: Experiment, test_csv) -> str:
    """The infer.py command that writes the test outputs this member lacks."""
    out_dir = f" --out-dir {e.home.root}" if e.home.root != e.paths.root else ""
    return f"python infer.py --run-dir {e.paths.root}{out_dir} --test-csv {test_csv}"


def check_blend_overrides(overrides: list[str], task) -> None:
    """Refuse a --set that a blend would silently ignore (a window or training setting)."""
    allowed = (*BLEND_SETTINGS, f"{task.decoding_key or task.name}.")
    shown = ", ".join(a + "*" if a.endswith(".") else a for a in allowed)
    for override in overrides:
        key = override.partition("=")[0].strip()
        if not any(key == a or key.startswith(a) for a in allowed):
            raise InputError(f"ensemble.py --set {override}: a blend reads only the decoding and data settings of "
                             f"the first experiment's config ({shown}); {key} is the folds' own: change it for "
                             "inference with infer.py --set, then blend those outputs")


def member_report(task, labels: list[str], values: list[float], blended: float, n_ids: int) -> str:
    """Each member's score (values) beside the blend's, on the same n_ids out-of-fold ids, so that a blend worse
    than its best member shows."""
    sign = 1 if task.higher_is_better else -1
    best = max(range(len(values)), key=lambda i: sign * values[i])
    width = max(len(label) for label in [*labels, "blend"])
    lines = [f"{task.metric_name} of each member on the same {n_ids} out-of-fold ids "
             f"({'higher' if task.higher_is_better else 'lower'} is better):"]
    lines += [f"  {label:<{width}}  {value:.4f}" for label, value in zip(labels, values)]
    gain = sign * (blended - values[best])
    if gain > 0:
        verdict = f"{blended - values[best]:+.4f} over the best member, {labels[best]}"
    elif gain == 0:
        verdict = f"the same as the best member, {labels[best]}"
    else:
        verdict = (f"WORSE than the best member, {labels[best]}, by {abs(blended - values[best]):.4f}: drop or "
                   "down-weight (--weights, or --fit-weights) the weaker members")
    lines.append(f"  {'blend':<{width}}  {blended:.4f}  ({verdict})")
    return "\n".join(lines)


def decoding_path(out: Path) -> Path:
    """submission.csv → submission.decoding.json: the decoding settings fit on the out-of-fold blend."""
    return out.with_suffix(".decoding.json")


def weights_path(out: Path) -> Path:
    """submission.csv → submission.weights.json: the member weights fit on the out-of-fold outputs."""
    return out.with_suffix(".weights.json")


def side_table_path(out: Path, name: str) -> Path:
    """submission.csv → submission.<name>.csv (QA: submission.nbest.csv, the n best answers per test id)."""
    return out.with_suffix(f".{name}.csv")


def members_oof(task, experiments: list[Experiment],
                allow_mixed_folds: bool = False) -> tuple[pd.DataFrame, pd.Series, list[Scores]]:
    """(training examples, fold per id, each member's out-of-fold scores), every experiment's OOF checked to cover
    the training ids exactly once (or, with allow_mixed_folds, cut to the ids all cover once)."""
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
    return train, folds, members


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


def _open(spec: str | Path, folds: list[int] | None, overrides: list[str], *, checked: bool,
          allow_mixed_folds: bool) -> Experiment:
    """A member: its run folder and where its test outputs are; checked: its folds share one training config,
    fold file and data."""
    folder, key = parse_member(spec)
    run_dir, home = test_outputs.locate(folder)
    run = open_run(run_dir, folds, overrides=overrides)
    if not checked:
        return Experiment(str(spec), run, home, key, provenance=None)
    records = {k: run.provenance(k) for k in run.folds}
    first = records[run.folds[0]]
    differing = {k: why for k, r in records.items() if (why := mismatch(first, r))}
    if differing:
        _refuse_or_warn(f"{run_dir}: fold(s) {list(differing)} were trained with another config, fold file or data "
                        f"than fold {run.folds[0]} ({'; '.join(differing.values())})", allow_mixed_folds)
    return Experiment(str(spec), run, home, key, first)


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


def _test_scores(e: Experiment, record: test_outputs.Record, test_ids, test_csv) -> Scores:
    """The member's test scores: every fold's of the chosen outputs, averaged with equal weights; each must cover
    the test ids."""
    members = []
    for k in e.folds:
        path = record.home.test_scores(record.key, k)
        if not path.is_file():
            raise InputError(f"{path} is missing, though {record.home.test_record(record.key)} lists fold {k}: run "
                             f"`{infer_command(e, test_csv)} --folds {k}` again")
        scores = artifacts.load_scores(path)
        differences = describe_id_differences(test_ids, scores.ids, str(test_csv), str(path))
        if differences:
            raise InputError(f"test outputs of fold {k} of {record.label} cover other ids than the submission "
                             f"({differences}): run `{infer_command(e, test_csv)}`")
        members.append(scores)
    return _blend(members, None, f"test outputs of {record.label}")


def _blend(members: list[Scores], weights: list[float] | None, what: str) -> Scores:
    try:
        return average_scores(members, weights)
    except ValueError as err:
        raise InputError(f"cannot blend the {what}: {err}") from err
