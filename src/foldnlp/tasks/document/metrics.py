"""Scores of document classification and regression: numpy in, float out, plus the ordinal cut points that turn a
regression output into grades for quadratic weighted kappa (essay scoring).

Classification inputs: proba (n, C). Single-label when y_true is (n,) class indices in 0..C-1 and proba a row of
class probabilities; multi-label when y_true is (n, C) of 0/1 and proba each label's own probability.
scikit-learn is imported inside the functions that use it: a Kaggle kernel may not have it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from foldnlp.errors import InputError, format_rows

# Probabilities are clipped to [_EPS, 1 - _EPS] for log loss: one confident wrong answer costs -log(1e-7) ≈ 16.1
# instead of infinity.
_EPS = 1e-7
# Multi-label: a label is predicted present at probability >= this.
_POSITIVE_AT = 0.5


@dataclass(frozen=True)
class Metric:
    """A score function and how to read it."""

    fn: Callable[[np.ndarray, np.ndarray], float]
    higher_is_better: bool
    multi_label_ok: bool = False  # fn also scores multi-label input (y_true (n, C) of 0/1)


def accuracy(y_true, proba) -> float:
    """Share of rows whose most probable class (argmax, first on ties) is the true class. Single-label only:
    multi-label rows have no one predicted class."""
    y, p, multi_label = _probabilities(y_true, proba)
    if multi_label:
        raise ValueError("accuracy is single-label only; y_true is (n, C) multi-label (use macro_f1 or roc_auc)")
    return float(np.mean(p.argmax(axis=1) == y))


def macro_f1(y_true, proba) -> float:
    """Unweighted mean of per-class F1, so rare classes count as much as common ones.

    Single-label: F1 of the argmax class, over the classes that occur in the truth or the predictions (scikit-learn's
    default; a class in neither is left out, not scored 0). Multi-label: a label is predicted at proba >= 0.5, every
    one of the C labels counts, and one with no true and no predicted positive scores 0 (zero_division=0).
    """
    from sklearn.metrics import f1_score

    y, p, multi_label = _probabilities(y_true, proba)
    predicted = (p >= _POSITIVE_AT).astype("int64") if multi_label else p.argmax(axis=1)
    return float(f1_score(y, predicted, average="macro", zero_division=0))


def roc_auc(y_true, proba) -> float:
    """Area under the ROC curve: of proba[:, 1] when single-label with C == 2; else the unweighted mean over classes
    (one-vs-rest, the class's probability against the rest) or over labels. Raises InputError when a class or label
    has only one value in y_true: its AUC is undefined (a small fold without any positive of a rare label)."""
    from sklearn.metrics import roc_auc_score

    y, p, multi_label = _probabilities(y_true, proba)
    n_classes = p.shape[1]
    truth = y if multi_label else np.eye(n_classes, dtype="int64")[y]
    columns = [1] if not multi_label and n_classes == 2 else list(range(n_classes))
    unit = "label" if multi_label else "class"
    for j in columns:
        positives = int(truth[:, j].sum())
        if positives in (0, len(truth)):
            where = "in none" if positives == 0 else "in every one"
            raise InputError(f"roc_auc is undefined: {unit} {j} is {where} of the {len(truth)} true rows; "
                             f"score more rows or use another metric")
    return float(np.mean([roc_auc_score(truth[:, j], p[:, j]) for j in columns]))


def log_loss(y_true, proba) -> float:
    """Mean cross-entropy in nats, probabilities clipped to [1e-7, 1 - 1e-7].

    Single-label: -mean(log proba[i, y_i]), what scikit-learn's log_loss(labels=range(C)) gives; computed here
    because scikit-learn warns about every row that clipping moved off a sum of one. Multi-label: the mean binary
    cross-entropy over all n * C entries.
    """
    y, p, multi_label = _probabilities(y_true, proba)
    p = np.clip(p, _EPS, 1 - _EPS)
    if multi_label:
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    return float(-np.mean(np.log(p[np.arange(len(y)), y])))


def rmse(y_true, pred) -> float:
    """Root mean squared error over all entries of y (n,) or (n, T), in the target's units."""
    y, p = _targets(y_true, pred)
    return float(np.sqrt(np.mean((y - p) ** 2)))


def mcrmse(y_true, pred) -> float:
    """Mean over the T target columns of each column's RMSE (Kaggle's Feedback Prize ELL and CommonLit metric), so
    every target weighs the same whatever its spread. A (n,) target is one column: its RMSE."""
    y, p = _targets(y_true, pred)
    if y.ndim == 1:
        y, p = y[:, None], p[:, None]
    return float(np.mean(np.sqrt(np.mean((y - p) ** 2, axis=0))))


def qwk(y_true, y_pred) -> float:
    """Quadratic weighted Cohen's kappa of integer grades (scikit-learn's, the Kaggle essay-scoring metric): 1 for
    perfect agreement, 0 for chance, below 0 for worse. Disagreement weighs the squared distance between the ranks of
    the two grades among the values that occur in either array.

    Returns 0.0 (chance) where kappa is undefined, i.e. both arrays hold one and the same value: a constant score
    carries no agreement beyond chance, and a nan would poison a mean over folds. Float predictions must first be cut
    into grades (apply_thresholds): raw regression outputs raise ValueError instead of scoring near 0.
    """
    from sklearn.metrics import cohen_kappa_score

    a, b = np.asarray(y_true), np.asarray(y_pred)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"qwk needs y_true and y_pred of the same shape (n,); got {a.shape} and {b.shape}")
    if not len(a):
        raise ValueError("no examples to score")
    for name, values in (("y_true", a), ("y_pred", b)):
        if not np.all(np.mod(values, 1) == 0):
            raise ValueError(f"qwk takes integer grades; {name} has non-integer values "
                             "(cut float predictions into grades with apply_thresholds first)")
    if len(np.unique(np.concatenate([a, b]))) == 1:  # the only undefined case (scikit-learn would also warn)
        return 0.0
    return float(cohen_kappa_score(a, b, weights="quadratic"))


CLASSIFICATION_METRICS = {
    "accuracy": Metric(accuracy, higher_is_better=True),
    "macro_f1": Metric(macro_f1, higher_is_better=True, multi_label_ok=True),
    "roc_auc": Metric(roc_auc, higher_is_better=True, multi_label_ok=True),
    "log_loss": Metric(log_loss, higher_is_better=False, multi_label_ok=True),
}
REGRESSION_METRICS = {
    "rmse": Metric(rmse, higher_is_better=False),
    "mcrmse": Metric(mcrmse, higher_is_better=False),
    "qwk": Metric(qwk, higher_is_better=True),
}


def apply_thresholds(pred, thresholds, grades) -> np.ndarray:
    """(n,) grade values, in the dtype of grades, for the (n,) float predictions pred.

    thresholds (K-1,) non-decreasing cut points between the K grades: pred < thresholds[0] is grades[0], and
    thresholds[k-1] <= pred < thresholds[k] is grades[k]. A prediction exactly on a cut point takes the higher grade,
    so with default_thresholds 2.5 becomes 3 (half up, not numpy's half to even).
    """
    values = np.asarray(grades)
    cuts = _thresholds(thresholds, len(_grades(grades)))
    return values[np.searchsorted(cuts, _predictions(pred), side="right")]


def default_thresholds(grades) -> np.ndarray:
    """The midpoints between consecutive grades: apply_thresholds then rounds to the nearest grade, halves up."""
    g = _grades(grades)
    return (g[:-1] + g[1:]) / 2


def fit_thresholds(y_true, pred, grades) -> np.ndarray:
    """Cut points (K-1,), non-decreasing, that maximise qwk(y_true, apply_thresholds(pred, ·, grades)).

    A model trained with squared error pulls its predictions toward the mean, so rare extreme grades need cut points
    nearer the middle than the midpoints. Coordinate ascent from the midpoints: each cut point in turn moves to the
    best place between its neighbours (checking every split of the predictions there), until no move gains; ties
    keep the earlier place, so the result is deterministic. It never scores below the midpoints on (y_true, pred).
    """
    g = _grades(grades)
    truth = _grade_index(y_true, g)
    return _fit(truth, _predictions(pred, len(truth)), default_thresholds(g))


def crossfit_qwk(y_true, pred, folds, grades) -> float:
    """QWK with cut points fitted out of fold: each fold's rows are cut with thresholds fitted on the other folds'
    rows, then all rows are scored together. Set beside the in-sample fitted QWK, it shows how much of the gain of
    fitting cut points is overfit. folds: (n,) fold ids, at least two distinct."""
    g = _grades(grades)
    truth = _grade_index(y_true, g)
    p = _predictions(pred, len(truth))
    fold = np.asarray(folds)
    if fold.shape != truth.shape:
        raise ValueError(f"folds must be (n,) = {truth.shape}; got {fold.shape}")
    ids = np.unique(fold)
    if len(ids) < 2:
        raise InputError(f"crossfit_qwk needs rows of at least 2 folds; all {len(fold)} rows are in fold {ids[0]}")
    start = default_thresholds(g)
    cut = np.empty(len(truth), dtype="int64")
    for k in ids:
        held_out = fold == k
        fitted = _fit(truth[~held_out], p[~held_out], start)
        cut[held_out] = np.searchsorted(fitted, p[held_out], side="right")
    # Grade positions score as the grade values would: kappa depends only on the order of the values present.
    return qwk(truth, cut)


def _fit(truth: np.ndarray, pred: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Coordinate ascent of the cut points between grade positions 0..K-1; truth (n,) positions, pred (n,)."""
    n_grades = len(start) + 1
    rank = np.arange(n_grades)
    weights = np.subtract.outer(rank, rank).astype(np.float64) ** 2  # (K, K) squared rank distance
    # Σ_i truth_hist[i] * weights[i, k]: a row predicted k adds this / n to the expected disagreement.
    expected_weight = np.bincount(truth, minlength=n_grades) @ weights
    one_hot = np.eye(n_grades)[truth]  # (n, K)
    cuts = start.copy()
    moved = True
    while moved:
        moved = False
        for j in range(n_grades - 1):  # cut j splits grade j from grade j+1
            low = cuts[j - 1] if j else -np.inf
            high = cuts[j + 1] if j < n_grades - 2 else np.inf
            between = (pred >= low) & (pred < high)  # the rows that cut j assigns to grade j or j+1
            if not between.any():
                continue
            order = np.argsort(pred[between], kind="stable")
            values = pred[between][order]
            assigned = np.searchsorted(cuts, pred[~between], side="right")
            # The other rows' agreement and disagreement stay put while cut j moves.
            fixed_disagreement = weights[truth[~between], assigned].sum()
            fixed_expected = expected_weight @ np.bincount(assigned, minlength=n_grades)
            # below[m]: true-grade counts of the m lowest rows between the neighbours (they go to j; the rest to j+1).
            below = np.vstack([np.zeros(n_grades), np.cumsum(one_hot[between][order], axis=0)])
            count = len(values)
            m = np.arange(count + 1)
            disagreement = fixed_disagreement + below @ weights[:, j] + (below[-1] - below) @ weights[:, j + 1]
            expected = (fixed_expected + m * expected_weight[j] + (count - m) * expected_weight[j + 1]) / len(pred)
            kappa = np.where(expected > 0, 1 - disagreement / np.where(expected > 0, expected, 1), 0.0)
            # A cut can only fall between two distinct values: tied predictions share a grade.
            kappa[1:-1][values[:-1] == values[1:]] = -np.inf
            now = int(np.searchsorted(values, cuts[j], side="left"))
            best = int(np.argmax(kappa))
            if kappa[best] > kappa[now] + 1e-12:
                cuts[j] = _cut_point(values, best, high)
                moved = True
    # The ascent maximises kappa over all K grades; qwk ranks only the grades present, which differs when a grade
    # occurs in neither truth nor prediction. Keep the promise under the metric that is reported.
    if qwk(truth, np.searchsorted(cuts, pred, side="right")) < qwk(truth, np.searchsorted(start, pred, side="right")):
        return start
    return cuts


def _cut_point(values: np.ndarray, m: int, high: float) -> float:
    """A cut with exactly the m lowest of the sorted values below it, inside [values[0], high]."""
    if m == 0:
        return float(values[0])  # on the lowest value: it goes up
    if m == len(values):
        return float(high) if np.isfinite(high) else float(np.nextafter(values[-1], np.inf))
    middle = (values[m - 1] + values[m]) / 2
    return float(middle if middle > values[m - 1] else values[m])  # two neighbouring floats have no middle


def _probabilities(y_true, proba) -> tuple[np.ndarray, np.ndarray, bool]:
    """(y_true as int64, proba as float64, multi_label), checked: multi-label when y_true is 2-D."""
    y, p = np.asarray(y_true), np.asarray(proba, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"proba must be (n, C); got shape {p.shape}")
    if not len(p):
        raise ValueError("no examples to score")
    if y.ndim == 2:
        if y.shape != p.shape:
            raise ValueError(f"multi-label y_true and proba must have the same shape; got {y.shape} and {p.shape}")
        if not np.isin(y, (0, 1)).all():
            raise ValueError("multi-label y_true must hold only 0 and 1")
        return y.astype("int64"), p, True
    if y.shape != (len(p),):
        raise ValueError(f"y_true must be (n,) class indices or (n, C) labels for proba {p.shape}; got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= p.shape[1]:
        raise ValueError(f"y_true must be integer class indices in 0..{p.shape[1] - 1}")
    return y.astype("int64"), p, False


def _targets(y_true, pred) -> tuple[np.ndarray, np.ndarray]:
    y, p = np.asarray(y_true, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    if y.shape != p.shape or y.ndim not in (1, 2):
        raise ValueError(f"y_true and pred must have the same shape, (n,) or (n, T); got {y.shape} and {p.shape}")
    if not len(y):
        raise ValueError("no examples to score")
    return y, p


def _grades(grades) -> np.ndarray:
    g = np.asarray(grades, dtype=np.float64)
    if g.ndim != 1 or len(g) < 2 or not np.isfinite(g).all() or (np.diff(g) <= 0).any():
        raise InputError(f"grades must be two or more increasing numbers; got {np.asarray(grades).tolist()}")
    return g


def _thresholds(thresholds, n_grades: int) -> np.ndarray:
    t = np.asarray(thresholds, dtype=np.float64)
    if t.shape != (n_grades - 1,):
        raise ValueError(f"{n_grades} grades need {n_grades - 1} thresholds; got shape {t.shape}")
    if not np.isfinite(t).all() or (np.diff(t) < 0).any():
        raise ValueError(f"thresholds must be finite and non-decreasing; got {t.tolist()}")
    return t


def _predictions(pred, n: int | None = None) -> np.ndarray:
    p = np.asarray(pred, dtype=np.float64)
    if p.ndim != 1 or (n is not None and len(p) != n):
        raise ValueError(f"pred must be (n,){f' with n = {n}' if n is not None else ''}; got shape {p.shape}")
    if not np.isfinite(p).all():
        raise ValueError(f"pred has {int((~np.isfinite(p)).sum())} non-finite value(s)")
    return p


def _grade_index(y_true, grades: np.ndarray) -> np.ndarray:
    """(n,) positions in grades of the true values; every value must be one of the grades."""
    y = np.asarray(y_true, dtype=np.float64)
    if y.ndim != 1 or not len(y):
        raise ValueError(f"y_true must be (n,) with n > 0; got shape {y.shape}")
    index = np.clip(np.searchsorted(grades, y), 0, len(grades) - 1)
    unknown = grades[index] != y
    if unknown.any():
        raise InputError(f"y_true holds value(s) that are not grades {grades.tolist()}: "
                         f"{format_rows(np.unique(y[unknown]).tolist(), 5)}")
    return index
