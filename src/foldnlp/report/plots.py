"""The leaderboard's PNG plots, drawn with matplotlib's Agg canvas (no display, no pyplot state): the only module
that imports matplotlib. Each function draws one table's experiments and writes the PNG atomically."""

from __future__ import annotations

import io
from itertools import cycle
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from foldnlp import artifacts
from foldnlp.report.experiments import ExperimentSummary

FIGURE_SIZE = (9, 5.5)  # inches; at DPI, 900 × 550 pixels
DPI = 100
FOLD_STYLES = ("-", "--", ":", "-.")  # a fold's line style; an experiment's colour


def validation_curves(experiments: list[ExperimentSummary], path: Path) -> None:
    """Every fold's validation metric at each evaluation (metrics.json's history) against the optimizer step, one
    line per fold per experiment, its best evaluation starred."""
    first = experiments[0]
    figure, axes = _figure()
    for e, colour in zip(experiments, _colours()):
        for f, style in zip(e.folds, cycle(FOLD_STYLES)):
            steps = [h["step"] for h in f.history]
            values = [h[e.metric] for h in f.history]
            axes.plot(steps, values, style, marker="o", markersize=3, color=colour, label=f"{e.name} fold {f.fold}")
            if values:
                best = (max if e.higher_is_better else min)(range(len(values)), key=values.__getitem__)
                axes.plot(steps[best], values[best], "*", markersize=11, color=colour)
    axes.set_title(f"Validation {first.metric} of each fold during training (★ best, the checkpoint kept)")
    axes.set_xlabel("optimizer step")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylabel(f"{first.metric} ({_direction(first.higher_is_better)} is better)")
    _finish(figure, axes, path)


def training_loss(experiments: list[ExperimentSummary], path: Path) -> None:
    """Every fold's mean training loss over the steps before each evaluation, against the optimizer step."""
    figure, axes = _figure()
    for e, colour in zip(experiments, _colours()):
        for f, style in zip(e.folds, cycle(FOLD_STYLES)):
            points = [(h["step"], h["train_loss"]) for h in f.history if h.get("train_loss") is not None]
            axes.plot([s for s, _ in points], [v for _, v in points], style, marker="o", markersize=3, color=colour,
                      label=f"{e.name} fold {f.fold}")
    axes.set_title("Training loss of each fold (mean over the steps since the previous evaluation)")
    axes.set_xlabel("optimizer step")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylabel("training loss (lower is better)")
    _finish(figure, axes, path)


def bucket_scores(experiments: list[ExperimentSummary], path: Path) -> None:
    """The out-of-fold measure per bucket (Task.score_by_bucket): one bar per bucket per experiment, each bar
    labelled with its bucket's size. Experiments without buckets are left out."""
    drawn = [e for e in experiments if e.buckets is not None]
    first = drawn[0].buckets
    labels = list(dict.fromkeys(g for e in drawn for g in e.buckets.table["group"]))
    width = 0.8 / len(drawn)
    figure, axes = _figure()
    for number, (e, colour) in enumerate(zip(drawn, _colours())):
        table = e.buckets.table.set_index("group")
        present = [g for g in labels if g in table.index and pd.notna(table.loc[g, "score"])]
        x = [labels.index(g) - 0.4 + width * (number + 0.5) for g in present]
        bars = axes.bar(x, [table.loc[g, "score"] for g in present], width, color=colour, label=e.name)
        axes.bar_label(bars, [f"n={table.loc[g, 'n']}" for g in present], fontsize=7, padding=2)
    axes.set_xticks(range(len(labels)), labels)
    axes.set_title(f"Out-of-fold {first.measure} by {first.by}; over each bar: the examples in its bucket")
    axes.set_xlabel(first.by)
    axes.set_ylabel(f"{first.measure} ({_direction(first.higher_is_better)} is better)")
    axes.margins(y=0.15)  # room for the labels above the tallest bar
    _finish(figure, axes, path)


def cv_against_public(points: pd.DataFrame, metric: str, path: Path) -> None:
    """Each --lb submission's CV (its experiments' blend) against its public-board score, with the line y = x."""
    figure, axes = _figure()
    axes.scatter(points["cv"], points["public_score"], zorder=3)
    for row in points.itertuples(index=False):
        axes.annotate(f"{row.submission} ({row.experiments})", (row.cv, row.public_score), fontsize=8,
                      xytext=(5, 5), textcoords="offset points")
    low = min(points["cv"].min(), points["public_score"].min())
    high = max(points["cv"].max(), points["public_score"].max())
    axes.plot([low, high], [low, high], "--", color="grey", linewidth=1, label="public = CV")
    axes.set_title("CV against the public board (one point per submission)")
    axes.set_xlabel(f"CV {metric} (out-of-fold, equal-weight blend of the submission's experiments)")
    axes.set_ylabel(f"public board {metric}")
    axes.margins(0.15)
    _finish(figure, axes, path)


def _figure():
    figure = Figure(figsize=FIGURE_SIZE, dpi=DPI)
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def _colours():
    return cycle([f"C{i}" for i in range(10)])  # matplotlib's default colour cycle


def _direction(higher_is_better: bool) -> str:
    return "higher" if higher_is_better else "lower"


def _finish(figure: Figure, axes, path: Path) -> None:
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8, loc="best")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    artifacts.atomic_write_bytes(path, buffer.getvalue())
