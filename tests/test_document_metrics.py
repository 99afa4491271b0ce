import math

import numpy as np
import pytest
from sklearn import metrics as sk

from foldnlp.errors import InputError
from foldnlp.tasks.document.metrics import (
    CLASSIFICATION_METRICS,
    REGRESSION_METRICS,
    accuracy,
    apply_thresholds,
    crossfit_qwk,
    default_thresholds,
    fit_thresholds,
    log_loss,
    macro_f1,
    mcrmse,
    qwk,
    rmse,
    roc_auc,
)

GRADES = [1, 2, 3, 4, 5, 6]


def random_single_label(seed, n=200, n_classes=4):
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_classes, n), rng.dirichlet(np.ones(n_classes), n)


def random_multi_label(seed, n=200, n_labels=5):
    rng = np.random.default_rng(seed)
    return (rng.random((n, n_labels)) < 0.3).astype(int), rng.random((n, n_labels))


def essays(seed=0, n=600):
    """Grades 1-6, most in the middle, and a regression output squeezed toward the mean as squared error makes it:
    0.6 * grade + 1.0 + noise, so the midpoints (rounding) rarely give 1, 5 or 6."""
    rng = np.random.default_rng(seed)
    y = rng.choice(GRADES, size=n, p=[0.08, 0.2, 0.3, 0.24, 0.13, 0.05])
    return y, 0.6 * y + 1.0 + rng.normal(0, 0.3, n)


# --- classification ---------------------------------------------------------------------------------------------


def test_accuracy_of_the_argmax():
    proba = [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.5, 0.1, 0.4]]  # argmax 0, 1, 0
    assert accuracy([0, 1, 2], proba) == pytest.approx(2 / 3)


def test_accuracy_refuses_multi_label():
    with pytest.raises(ValueError, match="accuracy is single-label only"):
        accuracy([[1, 0], [0, 1]], [[0.9, 0.1], [0.2, 0.7]])


def test_macro_f1_single_label_by_hand():
    # class 0: P 1, R 1/2, F1 2/3; class 1: P 2/3, R 1, F1 4/5.
    proba = [[0.9, 0.1], [0.3, 0.7], [0.2, 0.8], [0.4, 0.6]]
    assert macro_f1([0, 0, 1, 1], proba) == pytest.approx((2 / 3 + 4 / 5) / 2)


def test_macro_f1_multi_label_by_hand_positive_at_one_half():
    y = [[1, 0], [1, 1], [0, 0]]
    proba = [[0.9, 0.2], [0.4, 0.5], [0.6, 0.1]]  # predicted [[1, 0], [0, 1], [1, 0]]: 0.5 counts as positive
    # label 0: 1 hit, 1 false alarm, 1 miss: F1 1/2; label 1: exact, F1 1.
    assert macro_f1(y, proba) == pytest.approx(0.75)
    # A label with no true and no predicted positive scores 0 (zero_division=0).
    assert macro_f1([[1, 0], [0, 0]], [[0.9, 0.1], [0.1, 0.1]]) == pytest.approx(0.5)


@pytest.mark.parametrize("seed", range(3))
def test_macro_f1_matches_scikit_learn(seed):
    y, proba = random_single_label(seed)
    assert macro_f1(y, proba) == pytest.approx(sk.f1_score(y, proba.argmax(1), average="macro"))
    y, proba = random_multi_label(seed)
    assert macro_f1(y, proba) == pytest.approx(sk.f1_score(y, proba >= 0.5, average="macro", zero_division=0))


def test_binary_roc_auc_by_hand():
    # Positives score 0.35 and 0.8, negatives 0.1 and 0.4: 3 of the 4 positive-negative pairs are ordered right.
    proba = [[0.9, 0.1], [0.6, 0.4], [0.65, 0.35], [0.2, 0.8]]
    assert roc_auc([0, 0, 1, 1], proba) == pytest.approx(0.75)


@pytest.mark.parametrize("seed", range(3))
def test_roc_auc_matches_scikit_learn(seed):
    y, proba = random_single_label(seed, n_classes=2)
    assert roc_auc(y, proba) == pytest.approx(sk.roc_auc_score(y, proba[:, 1]))
    y, proba = random_single_label(seed, n_classes=4)
    assert roc_auc(y, proba) == pytest.approx(sk.roc_auc_score(y, proba, multi_class="ovr", average="macro"))
    y, proba = random_multi_label(seed)
    assert roc_auc(y, proba) == pytest.approx(sk.roc_auc_score(y, proba, average="macro"))


def test_roc_auc_of_a_class_or_label_with_one_value_is_an_error():
    with pytest.raises(InputError, match=r"^roc_auc is undefined: class 1 is in none of the 3 true rows; "):
        roc_auc([0, 0, 0], [[0.9, 0.1], [0.6, 0.4], [0.7, 0.3]])
    with pytest.raises(InputError, match=r"^roc_auc is undefined: class 2 is in none of the 2 true rows"):
        roc_auc([0, 1], [[0.8, 0.1, 0.1], [0.1, 0.8, 0.1]])
    with pytest.raises(InputError, match=r"^roc_auc is undefined: label 1 is in every one of the 2 true rows"):
        roc_auc([[1, 1], [0, 1]], [[0.8, 0.7], [0.3, 0.9]])


def test_log_loss_by_hand_and_clipped():
    assert log_loss([0, 1], [[0.8, 0.2], [0.4, 0.6]]) == pytest.approx(-(math.log(0.8) + math.log(0.6)) / 2)
    # Certain and wrong: each row costs -log(1e-7) instead of infinity.
    assert log_loss([1, 0], [[1.0, 0.0], [0.0, 1.0]]) == pytest.approx(-math.log(1e-7))
    # Multi-label: the mean binary cross-entropy of the 2 entries.
    assert log_loss([[1, 0]], [[0.8, 0.3]]) == pytest.approx(-(math.log(0.8) + math.log(0.7)) / 2)
    assert log_loss([[1, 0]], [[0.0, 1.0]]) == pytest.approx(-math.log(1e-7))


@pytest.mark.parametrize("seed", range(3))
def test_log_loss_matches_scikit_learn(seed):
    y, proba = random_single_label(seed, n_classes=4)
    y[y == 3] = 2  # a class that never occurs still has its column
    assert log_loss(y, proba) == pytest.approx(sk.log_loss(y, proba, labels=range(4)))
    y, proba = random_multi_label(seed)
    per_label = [sk.log_loss(y[:, j], proba[:, j], labels=[0, 1]) for j in range(y.shape[1])]
    assert log_loss(y, proba) == pytest.approx(np.mean(per_label))


@pytest.mark.parametrize("y_true, proba, message", [
    ([0, 3], [[0.5, 0.5], [0.5, 0.5]], r"class indices in 0\.\.1"),
    ([0.0, 1.0], [[0.5, 0.5], [0.5, 0.5]], "integer class indices"),
    ([0, 1, 1], [[0.5, 0.5], [0.5, 0.5]], r"y_true must be \(n,\) class indices or \(n, C\) labels"),
    ([[0, 2]], [[0.5, 0.5]], "only 0 and 1"),
    ([0], [0.5], r"proba must be \(n, C\)"),
])
def test_bad_classification_input_is_named(y_true, proba, message):
    with pytest.raises(ValueError, match=message):
        macro_f1(y_true, proba)


def test_classification_registry():
    assert {name: (m.higher_is_better, m.multi_label_ok) for name, m in CLASSIFICATION_METRICS.items()} == {
        "accuracy": (True, False), "macro_f1": (True, True), "roc_auc": (True, True), "log_loss": (False, True)}
    y, proba = random_multi_label(0)
    for name, metric in CLASSIFICATION_METRICS.items():
        if metric.multi_label_ok:
            assert np.isfinite(metric.fn(y, proba)), name
        else:
            with pytest.raises(ValueError, match="single-label only"):
                metric.fn(y, proba)


# --- regression -------------------------------------------------------------------------------------------------


def test_rmse_and_mcrmse_by_hand():
    assert rmse([1, 2, 3], [1, 2, 5]) == pytest.approx(math.sqrt(4 / 3))
    y, pred = [[1, 0], [3, 0]], [[1, 1], [1, 1]]
    assert rmse(y, pred) == pytest.approx(math.sqrt((0 + 1 + 4 + 1) / 4))
    assert mcrmse(y, pred) == pytest.approx((math.sqrt(2) + 1) / 2)  # column RMSEs sqrt(4/2) and 1
    assert mcrmse([1, 2, 3], [1, 2, 5]) == pytest.approx(math.sqrt(4 / 3))  # one column


@pytest.mark.parametrize("seed", range(3))
def test_rmse_and_mcrmse_match_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    y, pred = rng.normal(size=(50, 6)) * [1, 2, 3, 4, 5, 6], rng.normal(size=(50, 6))
    assert rmse(y, pred) == pytest.approx(sk.root_mean_squared_error(y.ravel(), pred.ravel()))
    assert mcrmse(y, pred) == pytest.approx(sk.root_mean_squared_error(y, pred, multioutput="uniform_average"))
    assert mcrmse(y, pred) < rmse(y, pred)  # unequal column errors: the mean of roots is below the root of the mean


def test_regression_shapes_must_match():
    with pytest.raises(ValueError, match=r"same shape, \(n,\) or \(n, T\); got \(2,\) and \(3,\)"):
        rmse([1, 2], [1, 2, 3])


def test_qwk_by_hand():
    assert qwk([1, 2, 3, 4], [1, 2, 3, 4]) == 1.0
    # Confusion (1,1), (2,3), (3,3): observed disagreement 1; expected (1/3) * sum_ij w_ij * 1 * [1, 0, 2]_j = 5.
    assert qwk([1, 2, 3], [1, 3, 3]) == pytest.approx(1 - 1 / 5)
    assert qwk([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


def test_qwk_is_zero_where_undefined():
    assert qwk([3, 3, 3], [3, 3, 3]) == 0.0  # scikit-learn: nan
    assert qwk([3, 3, 3], [3, 4, 3]) == 0.0  # defined, and exactly chance


@pytest.mark.parametrize("seed", range(3))
def test_qwk_matches_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 6, 300)
    pred = np.clip(y + rng.integers(-2, 3, 300), 0, 5)
    assert qwk(y, pred) == pytest.approx(sk.cohen_kappa_score(y, pred, weights="quadratic"))
    assert qwk(y.astype(float), pred.astype(float)) == qwk(y, pred)


def test_qwk_refuses_raw_float_predictions():
    with pytest.raises(ValueError, match="qwk takes integer grades; y_pred has non-integer values"):
        qwk([1, 2, 3], [1.2, 2.0, 2.7])


def test_regression_registry():
    assert {name: (m.higher_is_better, m.multi_label_ok) for name, m in REGRESSION_METRICS.items()} == {
        "rmse": (False, False), "mcrmse": (False, False), "qwk": (True, False)}
    assert REGRESSION_METRICS["rmse"].fn([1, 2, 3], [1, 2, 5]) == rmse([1, 2, 3], [1, 2, 5])


# --- ordinal thresholds -----------------------------------------------------------------------------------------


def test_apply_thresholds_boundaries_go_to_the_higher_grade():
    pred = [-10.0, 1.49, 1.5, 2.49, 2.5, 2.51, 10.0]
    assert apply_thresholds(pred, [1.5, 2.5], [1, 2, 3]).tolist() == [1, 1, 2, 2, 3, 3, 3]
    assert apply_thresholds(pred, [1.5, 2.5], [1, 2, 3]).dtype.kind == "i"  # the grades' own values
    assert apply_thresholds([0.2, 0.8], [0.5], [0.0, 0.5]).tolist() == [0.0, 0.5]
    # Tied cut points: grade 2 gets no rows.
    assert apply_thresholds([1.9, 2.0, 2.1], [2.0, 2.0], [1, 2, 3]).tolist() == [1, 3, 3]


def test_default_thresholds_are_midpoints_and_round_half_up():
    assert default_thresholds(GRADES).tolist() == [1.5, 2.5, 3.5, 4.5, 5.5]
    assert default_thresholds([0, 1, 3]).tolist() == [0.5, 2.0]
    pred = np.random.default_rng(0).uniform(-1, 8, 1000)
    pred[:4] = [2.5, 3.5, 0.5, 6.5]
    expected = np.clip(np.floor(pred + 0.5), 1, 6)
    assert (apply_thresholds(pred, default_thresholds(GRADES), GRADES) == expected).all()


@pytest.mark.parametrize("thresholds, message", [
    ([1.5], r"3 grades need 2 thresholds; got shape \(1,\)"),
    ([2.5, 1.5], "thresholds must be finite and non-decreasing"),
])
def test_bad_thresholds_are_named(thresholds, message):
    with pytest.raises(ValueError, match=message):
        apply_thresholds([1.0], thresholds, [1, 2, 3])


def test_bad_grades_and_truths_are_input_errors():
    with pytest.raises(InputError, match=r"grades must be two or more increasing numbers; got \[1, 3, 2\]"):
        default_thresholds([1, 3, 2])
    with pytest.raises(InputError, match=r"y_true holds value\(s\) that are not grades \[1.0, 2.0, 3.0\]: 0.0, 7.0"):
        fit_thresholds([1, 0, 7, 2], [1.0, 1.0, 1.0, 1.0], [1, 2, 3])


def test_fitting_undoes_a_compressed_prediction():
    y, pred = essays()
    midpoints = qwk(y, apply_thresholds(pred, default_thresholds(GRADES), GRADES))
    fitted = fit_thresholds(y, pred, GRADES)
    assert (np.diff(fitted) >= 0).all()
    assert qwk(y, apply_thresholds(pred, fitted, GRADES)) > midpoints + 0.1
    # The truth was cut from 0.6 * grade + 1.0: cut points near the images of the midpoints, 1.9, 2.5, ..., 4.3.
    assert fitted == pytest.approx(0.6 * default_thresholds(GRADES) + 1.0, abs=0.15)


@pytest.mark.parametrize("decimals", [None, 1])
def test_fitted_cut_points_are_a_local_optimum(decimals):
    """No single cut point can be moved anywhere between its neighbours for a better QWK (checked by brute force
    with scikit-learn's kappa, which the vectorised search must reproduce), also when predictions tie."""
    y, pred = essays(seed=2, n=200)
    if decimals is not None:
        pred = pred.round(decimals)
    assert set(y) == set(GRADES)
    fitted = fit_thresholds(y, pred, GRADES)
    best = qwk(y, apply_thresholds(pred, fitted, GRADES))
    values = np.unique(pred)
    candidates = np.concatenate([values, (values[:-1] + values[1:]) / 2, [values[-1] + 1]])
    for j in range(len(fitted)):
        low = fitted[j - 1] if j else -np.inf
        high = fitted[j + 1] if j < len(fitted) - 1 else np.inf
        for cut in candidates[(candidates >= low) & (candidates <= high)]:
            moved = fitted.copy()
            moved[j] = cut
            assert qwk(y, apply_thresholds(pred, moved, GRADES)) <= best + 1e-12


def test_fitting_splits_neighbouring_floats():
    pred = [1.0, float(np.nextafter(1.0, 2.0))]  # their middle rounds to one of them
    fitted = fit_thresholds([1, 2], pred, [1, 2])
    assert apply_thresholds(pred, fitted, [1, 2]).tolist() == [1, 2]


@pytest.mark.parametrize("seed", range(20))
def test_fitting_never_loses_to_the_midpoints(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 60))
    y = rng.choice(GRADES[: int(rng.integers(2, 7))], size=n)  # grades missing from the truth too
    pred = rng.normal(3.5, 2.0, n) if seed % 2 else y + rng.normal(0, 1.5, n)  # unrelated, or noisy
    fitted = fit_thresholds(y, pred, GRADES)
    assert (np.diff(fitted) >= 0).all()
    assert qwk(y, apply_thresholds(pred, fitted, GRADES)) >= qwk(y, apply_thresholds(pred, default_thresholds(GRADES),
                                                                                     GRADES))


def test_fitting_is_deterministic_and_ignores_row_order():
    y, pred = essays()
    fitted = fit_thresholds(y, pred, GRADES)
    assert fit_thresholds(y, pred, GRADES).tolist() == fitted.tolist()
    order = np.random.default_rng(3).permutation(len(y))
    assert fit_thresholds(y[order], pred[order], GRADES).tolist() == fitted.tolist()


def test_half_point_grades_fit_as_their_ranks():
    y, pred = essays()
    halves = [g / 2 for g in GRADES]
    assert (fit_thresholds(y / 2, pred / 2, halves) == fit_thresholds(y, pred, GRADES) / 2).all()
    folds = np.arange(len(y)) % 4
    assert crossfit_qwk(y / 2, pred / 2, folds, halves) == crossfit_qwk(y, pred, folds, GRADES)


def test_crossfit_qwk_sits_between_the_midpoints_and_the_in_sample_fit():
    y, pred = essays()
    folds = np.random.default_rng(1).permutation(len(y)) % 5
    midpoints = qwk(y, apply_thresholds(pred, default_thresholds(GRADES), GRADES))
    in_sample = qwk(y, apply_thresholds(pred, fit_thresholds(y, pred, GRADES), GRADES))
    honest = crossfit_qwk(y, pred, folds, GRADES)
    assert midpoints + 0.1 < honest <= in_sample
    assert crossfit_qwk(y, pred, folds, GRADES) == honest


def test_crossfit_qwk_cuts_each_fold_with_the_other_folds_thresholds():
    y, pred = essays(n=120)
    folds = np.arange(120) % 3
    cut = np.empty(120)
    for k in range(3):
        fitted = fit_thresholds(y[folds != k], pred[folds != k], GRADES)
        cut[folds == k] = apply_thresholds(pred[folds == k], fitted, GRADES)
    assert crossfit_qwk(y, pred, folds, GRADES) == pytest.approx(qwk(y, cut))


def test_crossfit_qwk_needs_two_folds():
    with pytest.raises(InputError, match="crossfit_qwk needs rows of at least 2 folds; all 3 rows are in fold 0"):
        crossfit_qwk([1, 2, 3], [1.0, 2.0, 3.0], [0, 0, 0], [1, 2, 3])
