"""Probe types against scikit-learn and exact formulas; save/load; input errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import r2_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from replab.errors import DataError, ReplabError
from replab.probes import LogisticProbe, MeanDiffProbe, RidgeProbe, load_probe


def _data(n=300, d=20, seed=0, classes=2):
    rng = np.random.default_rng(seed)
    X = (rng.normal(size=(n, d)) * rng.uniform(0.5, 5, d) + rng.normal(size=d) * 3).astype(np.float32)
    s = X @ rng.normal(size=d) + rng.normal(size=n) * 3
    y = (s > np.median(s)).astype(int) if classes == 2 else np.digitize(s, np.quantile(s, [1 / 3, 2 / 3]))
    return X, y, s


def _sk_logistic(X, y):
    return make_pipeline(StandardScaler(), LogisticRegression(tol=1e-8, max_iter=10_000)).fit(X, y)


def test_logistic_binary_matches_sklearn():
    X, y, _ = _data()
    probe = LogisticProbe(tol=1e-8).fit(X, y)
    sk = _sk_logistic(X, y)
    np.testing.assert_allclose(probe.predict_proba(X), sk.predict_proba(X), atol=2e-3)
    assert probe.score(X, y) == pytest.approx(sk.score(X, y), abs=1 / len(y))
    sk_coef = sk[-1].coef_[0] / sk[0].scale_  # original coordinates
    assert probe.direction @ (sk_coef / np.linalg.norm(sk_coef)) > 0.9999
    assert np.linalg.norm(probe.direction) == pytest.approx(1.0, abs=1e-6)


def test_logistic_multiclass_matches_sklearn_and_has_per_class_directions():
    X, y, _ = _data(classes=3)
    labels = np.array(["a", "b", "c"])[y]
    probe = LogisticProbe(tol=1e-8).fit(X, labels)
    sk = _sk_logistic(X, labels)
    np.testing.assert_allclose(probe.predict_proba(X), sk.predict_proba(X), atol=2e-3)
    assert (probe.predict(X) == sk.predict(X)).mean() > 0.99
    assert probe.directions.shape == (3, X.shape[1])
    with pytest.raises(DataError, match="one direction per class"):
        _ = probe.direction


def test_logistic_accepts_torch_and_memmap_columns(tmp_path):
    X, y, _ = _data(n=120, d=8)
    mm = np.memmap(tmp_path / "col.f32", dtype=np.float32, mode="w+", shape=X.shape)
    mm[:] = X
    a = LogisticProbe().fit(torch.from_numpy(X), torch.from_numpy(y))
    b = LogisticProbe().fit(mm, y)
    np.testing.assert_allclose(a.coef_, b.coef_, rtol=1e-6)
    assert a.predict(mm).tolist() == b.predict(torch.from_numpy(X)).tolist()


def test_ridge_matches_sklearn_and_gurnee_tegmark_recipe():
    X, _, s = _data(n=200, d=30)
    probe = RidgeProbe().fit(X, s)  # alpha = d_model
    sk = Ridge(alpha=X.shape[1]).fit(X.astype(np.float64), s)
    np.testing.assert_allclose(probe.coef_, sk.coef_, rtol=1e-6, atol=1e-9)
    assert probe.intercept_ == pytest.approx(sk.intercept_, rel=1e-6)
    assert probe.score(X, s) == pytest.approx(r2_score(s, sk.predict(X)), abs=1e-9)
    # G&T: Ridge(alpha=d) on standardised targets, predictions un-standardised: same predictions
    gt = Ridge(alpha=X.shape[1]).fit(X.astype(np.float64), (s - s.mean()) / s.std())
    np.testing.assert_allclose(probe.predict(X), gt.predict(X) * s.std() + s.mean(), rtol=1e-6, atol=1e-6)
    assert probe.direction @ (sk.coef_ / np.linalg.norm(sk.coef_)) == pytest.approx(1.0, abs=1e-6)


def test_meandiff_is_difference_of_class_means_with_midpoint_threshold():
    X, y, _ = _data()
    probe = MeanDiffProbe().fit(X, y)
    X64 = X.astype(np.float64)
    theta = X64[y == 1].mean(0) - X64[y == 0].mean(0)
    np.testing.assert_allclose(probe.coef_, theta, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(probe.direction, theta / np.linalg.norm(theta), atol=1e-6)
    midpoint = (X64[y == 1].mean(0) + X64[y == 0].mean(0)) / 2
    assert probe.decision_function(midpoint[None].astype(np.float32))[0] == pytest.approx(0.0, abs=1e-4)
    assert probe.score(X, y) == pytest.approx(np.mean((X64 @ theta > midpoint @ theta) == (y == 1)))


@pytest.mark.parametrize("n,d", [(300, 20), (60, 80)])  # full-rank and rank-deficient covariance
def test_meandiff_iid_matches_numpy_pinv_of_pooled_covariance(n, d):
    X, y, _ = _data(n=n, d=d, seed=1)
    probe = MeanDiffProbe(iid=True, rcond=1e-6).fit(X, y)
    X64 = X.astype(np.float64)
    pos, neg = X64[y == 1], X64[y == 0]
    centred = np.concatenate([pos - pos.mean(0), neg - neg.mean(0)])
    cov = centred.T @ centred / n  # geometry-of-truth MMProbe.from_data
    w = np.linalg.pinv(cov, rcond=1e-6, hermitian=True) @ (pos.mean(0) - neg.mean(0))
    np.testing.assert_allclose(probe.coef_, w, rtol=1e-6, atol=1e-8 * np.abs(w).max())


@pytest.mark.parametrize("probe,target", [(LogisticProbe(), "y"), (LogisticProbe(), "y3"), (RidgeProbe(), "s"),
                                          (MeanDiffProbe(iid=True), "y")])
def test_save_load_round_trip(tmp_path, probe, target):
    X, y, s = _data(n=150, d=12)
    y3 = np.array(["x", "y", "z"])[_data(n=150, d=12, classes=3)[1]]
    t = {"y": y, "y3": y3, "s": s}[target]
    probe = probe.clone().fit(X, t, hook="blocks.1.hook_resid_post", position="last", model="world")
    probe.meta["note"] = "kept"
    path = probe.save(tmp_path / "p")
    assert path.suffix == ".json" and (tmp_path / "p.safetensors").is_file()
    doc = json.loads(path.read_text())
    assert doc["type"] == probe.kind and doc["hook"] == "blocks.1.hook_resid_post"
    back = load_probe(tmp_path / "p.safetensors")
    assert type(back) is type(probe) and back.params() == probe.params()
    provenance = (back.hook, back.position, back.model, back.meta["note"])
    assert provenance == ("blocks.1.hook_resid_post", "last", "world", "kept")
    np.testing.assert_array_equal(back.predict(X), probe.predict(X))
    if isinstance(probe, LogisticProbe):
        assert back.n_iter_.tolist() == probe.n_iter_.tolist()
    if target != "y3":
        np.testing.assert_allclose(back.direction, probe.direction, atol=1e-7)
    assert type(probe).load(tmp_path / "p").d_ == 12


def test_load_reports_missing_and_corrupt_files(tmp_path):
    X, y, _ = _data(n=80, d=6)
    LogisticProbe().fit(X, y).save(tmp_path / "p")
    with pytest.raises(DataError, match="missing"):
        load_probe(tmp_path / "nothing")
    (tmp_path / "p.safetensors").write_bytes(b"garbage")
    with pytest.raises(DataError, match="corrupt"):
        load_probe(tmp_path / "p")
    LogisticProbe().fit(X, y).save(tmp_path / "q")
    (tmp_path / "q.json").write_text("{not json")
    with pytest.raises(DataError, match="corrupt"):
        load_probe(tmp_path / "q")
    (tmp_path / "q.json").write_text(json.dumps({"format": "replab.probe", "type": "mystery"}))
    with pytest.raises(DataError, match="unknown probe type"):
        load_probe(tmp_path / "q")
    LogisticProbe().fit(X, y).save(tmp_path / "r")
    with pytest.raises(DataError, match="not a RidgeProbe"):
        RidgeProbe.load(tmp_path / "r")


@pytest.mark.parametrize("cls", [LogisticProbe, MeanDiffProbe])
def test_classifier_input_errors(cls):
    X, y, _ = _data(n=50, d=5)
    with pytest.raises(DataError, match="single class"):
        cls().fit(X, np.zeros(50))
    bad = X.copy()
    bad[7, 2] = np.nan
    with pytest.raises(DataError, match="NaN or inf .* row 7"):
        cls().fit(bad, y)
    with pytest.raises(DataError, match="49 entries but X has 50 rows"):
        cls().fit(X, y[:49])
    with pytest.raises(DataError, match="2-D"):
        cls().fit(X[:, 0], y)
    with pytest.raises(ReplabError, match="not fitted"):
        cls().predict(X)
    probe = cls().fit(X, y)
    with pytest.raises(DataError, match="4 features but this probe was fitted on 5"):
        probe.predict(X[:, :4])


def test_regression_and_meandiff_specific_errors():
    X, y, s = _data(n=50, d=5)
    with pytest.raises(DataError, match="constant"):
        RidgeProbe().fit(X, np.ones(50))
    with pytest.raises(DataError, match="NaN or inf"):
        RidgeProbe().fit(X, np.where(np.arange(50) == 3, np.nan, s))
    with pytest.raises(DataError, match="not numeric"):
        RidgeProbe().fit(X, np.array(["a"] * 50))
    with pytest.raises(DataError, match="exactly two classes"):
        MeanDiffProbe().fit(X, np.arange(50) % 3)


def _quadratics(A, b, dtype=torch.float64, asked=None):
    """``fg`` of f_p(x) = x A_p x / 2 - b_p x (minimum at A_p^-1 b_p), gradients in ``dtype``,
    reporting ``f`` itself as the preconditioner's value; ``asked`` collects the problems each call
    evaluates."""
    def fg(x, rows):
        if asked is not None:
            asked.append(rows.tolist())
        Ax = torch.einsum("pij,pj->pi", A[rows], x)
        f = 0.5 * (x * Ax).sum(1) - (b[rows] * x).sum(1)
        return f, (Ax - b[rows]).to(dtype), f
    return fg


def test_lbfgs_batched_solves_each_problem_to_its_own_optimum():
    from replab.probes.lbfgs import lbfgs_batched

    rng = np.random.default_rng(0)
    P, D = 4, 6
    A = torch.from_numpy(np.stack([np.diag(rng.uniform(0.1, 10.0 ** k, D)) for k in range(P)]))  # conditioning 1..1e3
    b = torch.from_numpy(rng.normal(size=(P, D)))
    asked = []

    def quadratics(A, b):
        return _quadratics(A, b, asked=asked)

    x, n_iter, converged = lbfgs_batched(quadratics(A, b), torch.zeros(P, D, dtype=torch.float64), tol=1e-10)
    assert converged and n_iter.max() < 200
    alone = [lbfgs_batched(_quadratics(A[p:p + 1], b[p:p + 1]), torch.zeros(1, D, dtype=torch.float64),
                           tol=1e-10)[1].item() for p in range(P)]
    assert n_iter.tolist() == alone and len(set(alone)) > 1  # each its own count, as if solved alone
    np.testing.assert_allclose(x.numpy(), torch.linalg.solve(A, b).numpy(), rtol=1e-6, atol=1e-8)
    assert asked[0] == [0, 1, 2, 3] and [0] not in asked[-3:]  # finished problems are no longer evaluated
    assert all(r == sorted(r) for r in asked)

    # Preconditioned by the exact inverse Hessian where the first step shows curvature above 2:
    # the same optima; the well-conditioned problem 0 (eigenvalues in [0.1, 1]) stays plain.
    seen = set()

    def newton(A):  # M = the exact inverse Hessian of each problem
        return lambda q, rows, h: torch.einsum("pij,pj->pi", torch.linalg.inv(A[rows]), q)

    def exact(A):
        def factory(s, y, rows):  # called for the failed unit first steps, then for the accepted ones
            if y is None:  # (before the first step: chooses none)
                return None
            chosen = (s * y).sum(1) / (s * s).sum(1) > 2
            seen.update(rows[chosen].tolist())
            return newton(A), chosen
        return factory

    x2, it2, converged = lbfgs_batched(quadratics(A, b), torch.zeros(P, D, dtype=torch.float64), tol=1e-10,
                                       preconditioner=exact(A))
    assert converged and seen == {1, 2, 3}
    np.testing.assert_allclose(x2.numpy(), x.numpy(), rtol=1e-6, atol=1e-8)
    # M is told each problem's value at its current iterate: f(x0) = 0 first (not the rejected unit
    # step's, where f > 0), then the accepted iterates', which only decrease
    told = []

    def rough(s, y, rows):  # an inexact inverse Hessian, so that the problems take several steps
        if y is None:
            return None

        def M(q, rows, h):
            told.extend(zip(rows.tolist(), h.tolist()))
            return torch.einsum("pij,pj->pi", torch.linalg.inv(A[rows] + 3 * torch.diag_embed(A[rows][:, 0]).abs()), q)
        return M, (s * y).sum(1) / (s * s).sum(1) > 2

    x3, _, converged = lbfgs_batched(quadratics(A, b), torch.zeros(P, D, dtype=torch.float64), tol=1e-10,
                                     preconditioner=rough)
    assert converged and {q for q, _ in told} == {1, 2, 3}
    np.testing.assert_allclose(x3.numpy(), x.numpy(), rtol=1e-6, atol=1e-8)
    for p in (1, 2, 3):
        values = [v for q, v in told if q == p]
        assert values[0] == 0.0 and len(values) > 3
        assert all(b <= a for a, b in zip(values, values[1:])) and values[-1] < 0
    _, it3, converged = lbfgs_batched(quadratics(A[1:], b[1:]), torch.zeros(P - 1, D, dtype=torch.float64),
                                      tol=1e-10, preconditioner=exact(A[1:]))
    assert converged and it3.max() <= 3 < n_iter.max()  # one plain step, then Newton steps

    # Chosen before the first step: a factory that foresees which unit first steps would fail (here
    # exactly, from A) gives those problems the path they take after a failed trial, without the trial.
    from replab.probes.lbfgs import ARMIJO

    foreseen = set()

    def foresee(A):
        after_trial = exact(A)

        def factory(s, y, rows):
            if y is not None:
                return after_trial(s, y, rows)
            u = s / s.norm(dim=1, keepdim=True)  # the unit first step from x0 = 0, where f = 0
            uAu = torch.einsum("pi,pij,pj->p", u, A[rows], u)
            fails = 0.5 * uAu - (b[rows] * u).sum(1) > -ARMIJO * s.norm(dim=1)
            chosen = fails & (uAu > 2)
            foreseen.update(rows[chosen].tolist())
            return newton(A), chosen
        return factory

    asked.clear()
    seen.clear()
    x4, it4, converged = lbfgs_batched(quadratics(A, b), torch.zeros(P, D, dtype=torch.float64), tol=1e-10,
                                       preconditioner=foresee(A))
    calls_foreseen, chosen_after_a_step = len(asked), set(seen)
    asked.clear()
    _, it2_again, _ = lbfgs_batched(quadratics(A, b), torch.zeros(P, D, dtype=torch.float64), tol=1e-10,
                                    preconditioner=exact(A))
    assert converged and foreseen and foreseen | chosen_after_a_step == {1, 2, 3}
    assert not foreseen & chosen_after_a_step  # (not shown again)
    assert it4.tolist() == it2.tolist() == it2_again.tolist()  # the same iterations as after a failed trial
    np.testing.assert_allclose(x4.numpy(), x2.numpy(), rtol=1e-12, atol=1e-14)
    assert calls_foreseen == len(asked) - 1  # but without the trial's evaluation


def test_lbfgs_batched_float32_gradients_reach_the_float64_optimum():
    """Logistic gradients are float32: the search state then is too, the iterates stay float64."""
    from replab.probes.lbfgs import lbfgs_batched

    rng = np.random.default_rng(1)
    A = torch.from_numpy(rng.normal(size=(3, 20, 20)))
    A = A @ A.transpose(1, 2) / 20 + 0.1 * torch.eye(20)  # SPD, condition ~1e2
    b = torch.from_numpy(rng.normal(size=(3, 20)))
    exact = torch.linalg.solve(A, b)
    for dtype in (torch.float64, torch.float32):
        x, _, converged = lbfgs_batched(_quadratics(A, b, dtype), torch.zeros(3, 20, dtype=torch.float64), tol=1e-5)
        assert converged and x.dtype == torch.float64
        torch.testing.assert_close(x, exact, rtol=1e-3, atol=1e-4)


def test_torch_free_probe_tasks_match_the_registry():
    from replab.probes import PROBES
    from replab.probes.config import PROBE_TASKS

    assert set(PROBE_TASKS) <= set(PROBES)
    for name, task in PROBE_TASKS.items():
        assert PROBES[name]().task == task
