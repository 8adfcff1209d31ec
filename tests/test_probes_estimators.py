"""Probes are scikit-learn estimators: clone, get/set_params, Pipeline, GridSearchCV and cross_val_score."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from replab.probes import LogisticProbe, MeanDiffProbe, RidgeProbe


def _data(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((240, 10))
    return X, (X[:, 0] + 0.3 * rng.standard_normal(240) > 0).astype(int)


@pytest.mark.parametrize("make", [LogisticProbe, MeanDiffProbe, RidgeProbe])
def test_clone_keeps_the_parameters_as_given(make):
    probe = make()
    params = probe.get_params()
    twin = clone(probe)
    assert twin is not probe and twin.get_params() == params
    key = next(iter(params))
    assert clone(probe.set_params(**{key: params[key]})).get_params() == params


def test_logistic_probe_in_pipeline_and_grid_search_matches_sklearn():
    X, y = _data()
    ours = cross_val_score(make_pipeline(StandardScaler(), LogisticProbe()), X, y, cv=4)
    theirs = cross_val_score(make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)), X, y, cv=4)
    assert abs(ours.mean() - theirs.mean()) < 0.02
    grid = GridSearchCV(LogisticProbe(), {"C": [0.01, 1.0]}, cv=3).fit(X, y)
    assert grid.best_params_["C"] in (0.01, 1.0) and grid.best_score_ > 0.8


def test_logistic_n_iter_counts_iterations_as_sklearn():
    X, y = _data()
    probe = LogisticProbe().fit(X, y)
    assert probe.n_iter_.shape == (1,) and probe.n_iter_.dtype == np.int32 and 2 < probe.n_iter_[0] < 100
    with pytest.warns(ConvergenceWarning, match="max_iter"):
        capped = LogisticProbe(max_iter=2).fit(X, y)
    assert capped.n_iter_.tolist() == [2]


def test_meandiff_and_ridge_in_cross_val_score():
    X, y = _data(1)
    assert cross_val_score(MeanDiffProbe(), X, y, cv=3).mean() > 0.8
    assert cross_val_score(RidgeProbe(), X, X[:, 0] + 0.1 * X[:, 1], cv=3).mean() > 0.95


@parametrize_with_checks([LogisticProbe(), RidgeProbe(), MeanDiffProbe()])
def test_sklearn_check_estimator(estimator, check):
    check(estimator)
