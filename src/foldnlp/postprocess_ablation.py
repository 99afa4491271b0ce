"""What each post-processing rule of a task is worth on the out-of-fold blend: the CV with every rule on, and with
each one switched off (Task.postprocess_rules names them with the config override that switches each off)."""

from __future__ import annotations

import shlex

import pandas as pd

from foldnlp.config import with_overrides
from foldnlp.scores import Scores
from foldnlp.tasks import get_task


def rule_effects(task, examples: pd.DataFrame, scores: Scores) -> list[tuple[str, str, float]]:
    """(rule, the override that switches it off, the metric of scores decoded without it), per rule of the task."""
    return [(rule, switch, get_task(with_overrides(task.cfg, [switch])).metric(examples, scores))
            for rule, switch in task.postprocess_rules().items()]


def ablation_report(task, examples: pd.DataFrame, scores: Scores, with_all: float | None = None) -> str | None:
    """Printable table: rule, CV without it, delta (without - with), and whether it helps; with_all: the metric of
    scores with every rule on, if the caller has it. None when the task has no rule on."""
    effects = rule_effects(task, examples, scores)
    if not effects:
        return None
    if with_all is None:
        with_all = task.metric(examples, scores)
    sign = 1 if task.higher_is_better else -1
    width = max(len(rule) for rule, _, _ in [*effects, ("rule", "", 0.0)])
    lines = [f"post-processing rules checked on the out-of-fold blend ({task.metric_name}, "
             f"{'higher' if task.higher_is_better else 'lower'} is better): {with_all:.4f} with all of them on",
             f"  {'rule':<{width}}  without it    delta"]
    for rule, switch, without in effects:
        delta = without - with_all
        verdict = ("helps" if sign * delta < 0 else "no effect on these rows" if delta == 0
                   else f"HURTS: switch it off with --set {shlex.quote(switch)}")
        lines.append(f"  {rule:<{width}}  {without:10.4f}  {delta:+.4f}  {verdict}")
    return "\n".join(lines)
