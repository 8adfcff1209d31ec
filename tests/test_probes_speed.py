"""The sweep's speed measures change nothing it measures: thread capping, the Gram matrix through
numpy's BLAS, and the world store vs scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import replab
from replab.probes import LogisticProbe, control_labels, shuffled_labels, sweep
from replab.probes import threads as threads_mod
from replab.probes.logistic import fit_logistic, gram, rescaled_inverse, spd_inverse, weighted_squares
from replab.probes.threads import MACS_PER_THREAD, solver_threads
from replab.probes import workspace
from replab.probes.workspace import reuse, scratch


def test_solver_threads_caps_small_cpu_solves_and_restores_the_setting():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with solver_threads(1000 * 256 * 16, torch.device("cpu")) as used:
            assert used == torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with solver_threads(8 * MACS_PER_THREAD, torch.device("cpu")) as used:
            assert used == torch.get_num_threads() == 2  # never above the caller's setting
        with pytest.raises(RuntimeError), solver_threads(10, torch.device("cpu")):
            raise RuntimeError("fit failed")
        assert torch.get_num_threads() == 2  # restored on error too
    finally:
        torch.set_num_threads(before)


def test_capped_solve_equals_the_uncapped_one(monkeypatch):
    rng = np.random.default_rng(0)
    X = torch.from_numpy(rng.normal(size=(300, 20)).astype(np.float32))
    y = torch.from_numpy((rng.random((300, 3)) < 0.5).astype(np.int64))
    train = torch.from_numpy(rng.random((300, 3)) < 0.8)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        capped = fit_logistic(X, y, train, 2)
        monkeypatch.setattr(threads_mod, "MACS_PER_THREAD", 1)  # every solve gets all threads
        free = fit_logistic(X, y, train, 2)
    finally:
        torch.set_num_threads(before)
    for a, b in zip(capped, free):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)


def test_scratch_reuses_one_buffer_per_dtype_only_inside_reuse(monkeypatch):
    cpu = torch.device("cpu")
    with reuse():  # below glibc's mmap threshold: ordinary tensors
        assert scratch((4, 5), torch.float32, cpu).data_ptr() != scratch((4, 5), torch.float32, cpu).data_ptr()
    monkeypatch.setattr(workspace, "MMAP_MAX", 0)
    assert scratch((4, 5), torch.float32, cpu).data_ptr() != scratch((4, 5), torch.float32, cpu).data_ptr()
    with reuse():
        a = scratch((4, 5), torch.float32, cpu)
        b = scratch((2, 3), torch.float32, cpu)  # smaller: a view of the same memory
        assert b.shape == (2, 3) and b.data_ptr() == a.data_ptr()
        c = scratch((2, 3), torch.float64, cpu)  # another dtype, another buffer
        assert c.dtype == torch.float64 and c.data_ptr() != a.data_ptr()
        d = scratch((10, 10), torch.float32, cpu)  # larger: the buffer grows
        assert d.shape == (10, 10) and d.is_contiguous()
        assert scratch((10, 10), torch.float32, cpu).data_ptr() == d.data_ptr()
    assert scratch((10, 10), torch.float32, cpu).data_ptr() != d.data_ptr()  # released with the block
    with reuse():  # a buffer made inside inference mode (as fit_logistic's) is still writable outside it
        with torch.inference_mode():
            scratch((4,), torch.float64, cpu).fill_(1.0)
        assert scratch((4,), torch.float64, cpu).copy_(torch.zeros(4)).sum() == 0


def test_fits_in_a_reused_buffer_equal_fits_in_fresh_memory(monkeypatch):
    monkeypatch.setattr(workspace, "MMAP_MAX", 0)  # (these activations are small)
    rng = np.random.default_rng(1)
    X = torch.from_numpy((rng.normal(size=(2, 200, 12)) + 5).astype(np.float32))
    y = torch.from_numpy((rng.random((200, 4)) < 0.5).astype(np.int64))
    train = torch.from_numpy(rng.random((200, 4)) < 0.8)
    fresh, fresh_one = fit_logistic(X, y, train, 2), fit_logistic(X[:1], y, train, 2)
    with reuse():
        buf = scratch((10_000,), torch.float32, torch.device("cpu")).fill_(float("nan"))  # stale contents must not leak
        first, again = fit_logistic(X, y, train, 2), fit_logistic(X[:1], y, train, 2)  # the second reuses the first's
        assert not buf[: X.numel()].isnan().any()  # the fits centred their activations there
    for want, got in zip((*fresh, *fresh_one), (*first, *again)):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_center_in_a_reused_buffer_equals_the_float64_formula(monkeypatch):
    from replab.probes.folds import center

    monkeypatch.setattr(workspace, "MMAP_MAX", 0)
    rng = np.random.default_rng(2)
    X, X2 = (torch.from_numpy((rng.normal(size=(50, 6)) + 100).astype(np.float32)) for _ in range(2))
    want, before = X.to(torch.float64) - X.to(torch.float64).mean(0), X.clone()
    with reuse():
        Xc, mean = center(X)
        torch.testing.assert_close(Xc, want, rtol=0, atol=0)
        torch.testing.assert_close(mean, X.to(torch.float64).mean(0), rtol=0, atol=0)
        assert center(X2)[0].data_ptr() == Xc.data_ptr()  # the next centring reuses the buffer
    torch.testing.assert_close(X, before, rtol=0, atol=0)  # the input is untouched


def test_weighted_squares_in_row_blocks_equal_the_whole_product():
    rng = np.random.default_rng(0)
    X = torch.from_numpy(rng.normal(size=(2, 30, 5)))
    M = torch.from_numpy(rng.random((30, 3)))
    row = 2 * 5 * 8  # bytes of one row of X across its layers
    for rows in (0.5, 1, 7, 30, 64):  # under a row, one row, a ragged last block, one block, more than the rows
        torch.testing.assert_close(weighted_squares(M, X, block_bytes=int(rows * row)), M.T @ X.square(),
                                   rtol=1e-12, atol=1e-12)


def test_gram_through_numpy_equals_torch_and_keeps_the_thread_setting():
    rng = np.random.default_rng(0)
    X = torch.from_numpy(rng.normal(size=(3, 500, 40)).astype(np.float32))
    before = torch.get_num_threads()
    G = gram(X)
    assert G.dtype == torch.float32 and G.shape == (3, 40, 40) and torch.get_num_threads() == before
    ref = torch.einsum("lni,lnj->lij", X.double(), X.double())
    torch.testing.assert_close(G.double(), ref, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(gram(X.bfloat16()).double(), ref, rtol=2e-2, atol=2.0)  # torch's path


def test_spd_inverse_through_lapack_equals_torch_and_refuses_indefinite_matrices():
    rng = np.random.default_rng(0)
    B = torch.from_numpy(rng.normal(size=(3, 40, 40)))
    A = B @ B.mT / 40 + 1e-2 * torch.eye(40, dtype=torch.float64)
    for dtype, tol in ((torch.float64, 1e-9), (torch.float32, 1e-3)):
        inv = spd_inverse(A.to(dtype, copy=True))  # (it overwrites its argument)
        assert inv.dtype == dtype
        torch.testing.assert_close(inv, inv.mT, rtol=tol * 1e-2, atol=tol * 1e-2)  # both triangles filled
        torch.testing.assert_close(inv.double(), torch.linalg.inv(A), rtol=tol, atol=tol)
    A[1, 5, 5] = -1.0
    with pytest.raises(torch.linalg.LinAlgError, match="not positive definite"):
        spd_inverse(A)


@pytest.mark.parametrize("r, bound", [(1.0, 1e-12), (0.8, 0.0063), (0.6, 0.0323), (0.4, 0.102), (0.25, 0.22)])
def test_rescaled_inverse_is_within_its_chebyshev_bound(r, bound):
    """``alpha B + beta reg B^2`` against the exact inverse at curvature ``r * curv``: every eigenvalue
    of ``exact^-1 @ approx`` within ``1 +- bound`` (the documented 3% at 0.6, 22% at 0.25)."""
    rng = np.random.default_rng(1)
    d, curv, reg = 60, 0.25, 1e-3
    Q = np.linalg.qr(rng.normal(size=(d, d)))[0]
    Z = rng.normal(size=(500, d)) * np.exp(-np.arange(d) / 4) @ Q  # correlated, anisotropic, as activations are
    C = np.corrcoef(Z, rowvar=False)
    assert np.linalg.eigvalsh(C)[0] < reg / curv / 10 < 10 * reg / curv < np.linalg.eigvalsh(C)[-1]  # both ends
    B = np.linalg.inv(curv * C + reg * np.eye(d))
    alpha, beta = (float(v) for v in rescaled_inverse(torch.tensor(r, dtype=torch.float64)))
    approx = alpha * B + beta * reg * B @ B
    eig = np.linalg.eigvals(np.linalg.solve(np.linalg.inv(r * curv * C + reg * np.eye(d)), approx)).real
    assert np.abs(eig - 1).max() <= bound
    if r < 1:  # the bound is tight: the spectrum reaches it (reg B has eigenvalues near 0 and near 1)
        assert np.abs(eig - 1).max() > bound / 2


def test_failing_first_steps_are_foreseen_and_each_problem_keeps_its_own_path(monkeypatch):
    """On anisotropic activations, random labels fail their unit first step: the look along it on every
    15th of 2,000 rows (``SAMPLE_ROWS``) chooses them before any trial, while a separable task takes its
    step (and is chosen after it). Each problem runs the iterations, to the point, that it runs in a
    batch of its own."""
    from replab.probes import logistic

    rng = np.random.default_rng(3)
    n, d = 2000, 40
    Q = np.linalg.qr(rng.normal(size=(d, d)))[0]
    X = (rng.normal(size=(n, d)) * np.exp(-np.arange(d) / 4)) @ Q
    labels = np.stack([(X @ Q[:, 0] > 0), *(rng.integers(0, 2, n) for _ in range(3))], 1).astype(np.int64)
    train = torch.from_numpy(rng.random((n, 4)) < 0.8)
    calls = []
    solve = logistic.lbfgs_batched

    def spied(fg, x0, preconditioner=None, **kw):
        def factory(s, y, rows):
            out = preconditioner(s, y, rows)
            calls.append(("before" if y is None else "after", [] if out is None else rows[out[1]].tolist()))
            return out
        return solve(fg, x0, preconditioner=factory, **kw)

    monkeypatch.setattr(logistic, "lbfgs_batched", spied)
    Xt = torch.from_numpy(X.astype(np.float32))
    coef, intercept, n_iter = fit_logistic(Xt, torch.from_numpy(labels), train, 2, return_n_iter=True)
    assert calls == [("before", [1, 2, 3]), ("after", [0])]
    for p in range(4):
        alone = fit_logistic(Xt, torch.from_numpy(labels[:, p:p + 1]), train[:, p:p + 1], 2, return_n_iter=True)
        assert alone[2].tolist() == [n_iter[p].item()], p
        np.testing.assert_allclose(alone[0][0].numpy(), coef[p].numpy(), atol=1e-3 * coef[p].abs().max().item())


def test_world_sentiment_sweep_matches_sklearn_on_all_three_label_sets(world_model, tmp_path):
    prompts = replab.datasets.load("world:sentiment")
    prompts = prompts.subset(np.random.default_rng(0).choice(len(prompts), 200, replace=False).tolist())  # seconds
    store = replab.capture(world_model, prompts, "blocks.*.hook_resid_post", positions="last", out=tmp_path / "s")
    res = sweep(store, probes=["logistic"], cv=5, seed=0, progress=False)
    y = store.metadata["label"].to_numpy()
    sets = {"task": y, "control": control_labels(y, store.metadata["subject"].to_numpy(), 0),
            "shuffled": shuffled_labels(y, 0)}
    t = res.table.set_index(["hook", "task"])
    folds = list(StratifiedKFold(5, shuffle=True, random_state=0).split(y, y))  # the sweep's folds, every set
    for hook in store.hooks:
        X = np.asarray(store[hook])
        ref = {k: cross_val_score(make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)), X, labels,
                                  cv=folds) for k, labels in sets.items()}
        for k in sets:
            assert t.loc[(hook, k), "mean"] == pytest.approx(ref[k].mean(), abs=0.02), (hook, k)
        assert t.loc[(hook, "task"), "selectivity"] == pytest.approx(ref["task"].mean() - ref["control"].mean(),
                                                                      abs=0.03)
    assert t.xs("task", level="task")["mean"].min() > 0.9  # the world model carries sentiment
    # the control task is near-separable on these anisotropic activations: the preconditioned L-BFGS (M
    # following the curvature) reaches scikit-learn's optimum in a few iterations where its L-BFGS takes many
    for hook in store.hooks:
        X = np.asarray(store[hook])
        probe = LogisticProbe(tol=1e-6).fit(X, sets["control"])
        sk = make_pipeline(StandardScaler(), LogisticRegression(tol=1e-8, max_iter=10_000)).fit(X, sets["control"])
        np.testing.assert_allclose(probe.predict_proba(X), sk.predict_proba(X), atol=3e-3)
        assert probe.n_iter_[0] <= 12 < 50 < sk[-1].n_iter_[0], (hook, probe.n_iter_, sk[-1].n_iter_)
