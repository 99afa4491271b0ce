"""The leaderboard's tables, from experiment summaries: pure functions, no files read or written.

Experiments are comparable only on one task and metric and on one fold file (the same content): each such set is
one table, sorted by CV in the metric's direction. A row holds the CV (marked partial when folds are missing), each
fold's score, their spread, the task's per-group scores, training time and windows per second, and the settings
that differ between the table's experiments.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from foldnlp.errors import InputError
from foldnlp.report.experiments import ExperimentSummary

# Settings that differ between experiments without making them different: the name, and where the fold file lies
# (its content is the table's key). output_dir and the runtime sections are not in the training config at all.
TRIVIAL_SETTINGS = ("name", "folds.folds_dir")
ABSENT = "(absent)"  # the value shown for a setting an experiment's config lacks (one older than the setting)


@dataclass(frozen=True)
class Table:
    number: int  # 1, 2, ...: in the order the first experiment of each comes on the command line
    experiments: list[ExperimentSummary]  # best CV first
    settings: list[str]  # the settings whose values differ between them

    @property
    def first(self) -> ExperimentSummary:
        return self.experiments[0]

    @property
    def title(self) -> str:
        e = self.first
        direction = "higher" if e.higher_is_better else "lower"
        return (f"{e.task}: {e.metric} ({direction} is better), fold file {e.fold_file} "
                f"(sha256 {e.fold_file_sha256[:12]})")


def build_tables(summaries: list[ExperimentSummary]) -> list[Table]:
    """One table per task, metric and fold-file content, in the order their first experiment comes."""
    groups: dict[tuple, list[ExperimentSummary]] = {}
    for e in summaries:
        groups.setdefault((e.task, e.metric, e.higher_is_better, e.fold_file_sha256), []).append(e)
    tables = []
    for number, members in enumerate(groups.values(), start=1):
        sign = -1 if members[0].higher_is_better else 1
        ranked = sorted(members, key=lambda e: sign * e.cv)
        tables.append(Table(number, ranked, differing_settings(ranked)))
    return tables


def differing_settings(experiments: list[ExperimentSummary]) -> list[str]:
    """The flat config keys (TRIVIAL_SETTINGS aside) whose values are not the same in every experiment, sorted; a
    key one experiment lacks (a newer setting) counts as differing."""
    keys = sorted(set().union(*(e.settings for e in experiments)) - set(TRIVIAL_SETTINGS))
    return [k for k in keys if len({_text(e.settings.get(k, ABSENT)) for e in experiments}) > 1]


def table_frame(table: Table) -> pd.DataFrame:
    """One row per experiment: experiment, folder, cv, partial, folds (trained, space-separated), scored (training
    examples the CV covers) of n_train, fold<k> per fold of the scheme (NaN: not trained), fold_std (population)
    and fold_range (max - min; NaN with one fold), the per-group columns ('<measure>[<group>]'), train_s,
    windows_per_s (NaN when a fold predates the count), then the differing settings (as text)."""
    n_folds = max(e.n_folds for e in table.experiments)
    rows = []
    for e in table.experiments:
        scores = {f.fold: f.score for f in e.folds}
        values = np.array(list(scores.values()))
        row = {"experiment": e.name, "folder": str(e.folder), "cv": e.cv, "partial": e.partial,
               "folds": " ".join(str(k) for k in scores), "scored": e.scored, "n_train": e.n_train,
               **{f"fold{k}": scores.get(k, np.nan) for k in range(n_folds)},
               "fold_std": float(values.std()) if len(values) > 1 else np.nan,
               "fold_range": float(values.max() - values.min()) if len(values) > 1 else np.nan}
        if e.groups is not None:
            row.update({group_column(e.groups.measure, g): s for g, s in zip(e.groups.table["group"],
                                                                             e.groups.table["score"])})
        row["train_s"] = e.train_seconds
        row["windows_per_s"] = np.nan if e.windows_per_second is None else e.windows_per_second
        row.update({key: _text(e.settings.get(key, ABSENT)) for key in table.settings})
        rows.append(row)
    return pd.DataFrame(rows)


def leaderboard_frame(tables: list[Table]) -> pd.DataFrame:
    """Every table's rows in one frame (the CSV), each with its table's number, task, metric, direction and fold
    file first; a column one table lacks is empty in its rows."""
    frames = [table_frame(t).assign(table=t.number, task=t.first.task, metric=t.first.metric,
                                    higher_is_better=t.first.higher_is_better, fold_file=t.first.fold_file)
              for t in tables]
    frame = pd.concat(frames, ignore_index=True)
    settings = list(dict.fromkeys(key for t in tables for key in t.settings))
    scores = [c for c in frame.columns if c not in settings]  # in the order of the first table that has each
    folds = sorted((c for c in scores if c.startswith("fold") and c[4:].isdigit()), key=lambda c: int(c[4:]))
    first = ["table", "task", "metric", "higher_is_better", "fold_file", *scores[:scores.index("n_train") + 1],
             *folds, "fold_std", "fold_range"]
    last = ["train_s", "windows_per_s", *settings]
    return frame[first + [c for c in scores if c not in first and c not in last] + last]


def group_column(measure: str, group: str) -> str:
    return f"{measure}[{group}]"


def public_board_points(board: pd.DataFrame, tables: list[Table],
                        blend_cv: Callable[[list[Path]], float]) -> dict[int, pd.DataFrame]:
    """Per table number: submission, experiments (names, space-separated), cv (blend_cv of their folders) and
    public_score of each --lb row. An experiment must be one of the reported run folders (matched by path, or by
    folder name), and a submission's experiments must share a table (InputError naming the row otherwise)."""
    table_of = {e.folder.resolve(): t for t in tables for e in t.experiments}
    by_name = {folder.name: folder for folder in table_of}
    points: dict[int, list[dict]] = {}
    for row_number, row in enumerate(board.itertuples(index=False), start=2):  # row 1 is the header
        folders = []
        for folder in row.experiments:
            found = folder if folder in table_of else by_name.get(folder.name)
            if found is None:
                raise InputError(f"--lb row {row_number} ({row.submission}): {folder} is not among the reported "
                                 "run folders; add it to the command line")
            folders.append(found)
        numbers = sorted({table_of[f].number for f in folders})
        if len(numbers) > 1:
            raise InputError(f"--lb row {row_number} ({row.submission}): its experiments are in different tables "
                             f"({numbers}: another task, metric or fold file) and cannot be blended")
        points.setdefault(numbers[0], []).append({"submission": row.submission,
                                                  "experiments": " ".join(f.name for f in folders),
                                                  "cv": blend_cv(folders), "public_score": row.public_score})
    return {number: pd.DataFrame(rows) for number, rows in points.items()}


def markdown(tables: list[Table], public: dict[int, pd.DataFrame], plots: dict[int, dict[str, str]]) -> str:
    """The leaderboard as Markdown: per table a heading, the table, the --lb points, and its plots (file names
    relative to the Markdown file, by title)."""
    lines = ["# Leaderboard", ""]
    if len(tables) > 1:
        lines += [f"{len(tables)} separate tables: experiments of different tasks, metrics or fold files cannot be "
                  "compared (nor blended).", ""]
    for t in tables:
        e = t.first
        lines += [f"## Table {t.number}: {t.title}", "",
                  f"CV: the {e.metric} of the out-of-fold predictions of every trained fold together (partial: some "
                  "folds are not trained yet, so it covers only theirs); spread: population std and max - min of "
                  "the fold scores; train s: training wall-clock summed over folds (evaluations included); "
                  + (f"{e.groups.measure} per {e.groups.by}; " if e.groups is not None else "")
                  + ("differing settings: " + ", ".join(t.settings) if t.settings
                     else "no setting differs between these experiments") + ".", ""]
        lines += _markdown_table(_display(t))
        if t.number in public:
            points = public[t.number].assign(cv=lambda f: f["cv"].map(_number),
                                             public_score=lambda f: f["public_score"].map(_number))
            lines += ["", "Public board (CV of the equal-weight blend of each submission's experiments):", ""]
            lines += _markdown_table(points)
        for title, file in plots.get(t.number, {}).items():
            lines += ["", f"![{title}]({file})"]
        lines.append("")
    return "\n".join(lines)


def _display(table: Table) -> pd.DataFrame:
    """The table as shown: numbers to 4 decimals, '-' for none, the CV marked partial with its coverage."""
    frame = table_frame(table)
    shown = pd.DataFrame({"experiment": frame["experiment"]})
    shown["cv"] = [_number(v) + (f" (partial: {s} of {n})" if p else "")
                   for v, p, s, n in zip(frame["cv"], frame["partial"], frame["scored"], frame["n_train"])]
    shown["folds"] = frame["folds"]
    scores = list(frame.columns[list(frame.columns).index("n_train") + 1 : list(frame.columns).index("train_s")])
    for column in scores:  # fold<k>, fold_std, fold_range, then the per-group columns
        shown[column.replace("_", " ")] = frame[column].map(_number)
    shown["train s"] = frame["train_s"].map(lambda v: f"{v:.0f}")
    shown["windows/s"] = frame["windows_per_s"].map(lambda v: "-" if pd.isna(v) else f"{v:.1f}")
    for column in table.settings:
        shown[column] = frame[column].map(_shown_setting)
    return shown


def _markdown_table(frame: pd.DataFrame) -> list[str]:
    def cell(value) -> str:
        return str(value).replace("|", "\\|")

    header = "| " + " | ".join(cell(c) for c in frame.columns) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    return [header, rule, *("| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False))]


def _number(value) -> str:
    return "-" if value is None or pd.isna(value) else f"{value:.4f}"


def _shown_setting(text: str) -> str:
    """A setting as the Markdown table shows it: a float to 4 significant digits (a searched lr is
    0.00019560129439418058 in the config; the CSV keeps it whole), anything else as it is."""
    try:
        number = float(text)
    except ValueError:
        return text
    return text if text.lstrip("-").isdigit() else f"{number:.4g}"


def _text(value) -> str:
    """A setting's value as shown and compared: lists space-separated, None as null."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_text(v) for v in value) + "]"
    return "null" if value is None else str(value)
