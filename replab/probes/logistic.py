"""L2-regularised logistic regression probes, many problems per pass over the data.

``fit_logistic`` solves P independent problems (folds x tasks, or MDL blocks) that share the
rows ``X`` but differ in labels and in which rows train them. Each problem is scikit-learn's
``StandardScaler`` + ``LogisticRegression(lbfgs)`` objective -- features standardised with
its own training rows' mean and std, mean log-loss + ``||w||^2 / (2 C n_train)``, intercept
unpenalised, binary = one sigmoid, multiclass = multinomial softmax -- but standardisation is
folded into the weights instead of copying ``X``, and the P problems run in lockstep
(``lbfgs_batched``: one L-BFGS per problem, each with its own history, step and stopping
test) so every function evaluation is one ``[n, d] @ [d, P]`` matrix product instead of P
matrix-vector products. On a CUDA tensor the products run on the GPU.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin

from replab.errors import DataError
from replab.probes.base import Folds, Probe, as_features, encode_labels, unit


MACS_PER_THREAD = 2**27
"""Multiply-adds per function evaluation that earn one more CPU thread (``solver_threads``)."""


@contextlib.contextmanager
def solver_threads(macs: int, device: torch.device) -> Iterator[int]:
    """Run a CPU solve with one torch thread per ``MACS_PER_THREAD`` of work per evaluation.

    Why: an L-BFGS evaluation is ~30 small torch ops, each an OpenMP parallel region whose
    threads spin and then sleep at its closing barrier. On a small problem (a 1,000 x 256 store)
    those barriers cost more than the arithmetic, and when other processes hold the cores a
    descheduled worker stalls every region: a two-thread solve ran 7x slower (and burnt 3x the
    CPU time) than a one-thread one with two busy processes on a 2-core machine. One thread
    solves even a 20,000 x 768 x 16-problem batch faster than scikit-learn's loop, so threads
    are only added for much larger batches (never above ``torch.get_num_threads()``); the
    caller's setting is restored afterwards. CUDA tensors are left alone.

    Args:
        macs: multiply-adds of one function evaluation (``L * n * d * P * K``).
        device: where the solve runs.

    Yields:
        the number of threads used.
    """
    before = torch.get_num_threads()
    if device.type != "cpu":
        yield before
        return
    want = max(1, min(before, macs // MACS_PER_THREAD))
    if want == before:
        yield before
        return
    torch.set_num_threads(want)
    try:
        yield want
    finally:
        torch.set_num_threads(before)


def lbfgs_batched(fg: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]], x0: torch.Tensor, *,
                  tol: float = 1e-4, max_iter: int = 1000, history: int = 10) -> tuple[torch.Tensor, int, bool]:
    """Minimise P independent smooth functions at once, one L-BFGS per row of ``x0``.

    Every problem keeps its own curvature pairs, step length and stopping test (largest
    gradient entry <= ``tol``, as scipy's ``gtol``), so each needs the iterations it would need
    alone; the caller's ``fg`` evaluates all P at once (one matrix product for all).

    Args:
        fg: ``x [P, D] -> (f [P], g [P, D])`` (float64).
        x0: ``[P, D]`` starting points.
        tol: per-problem gradient tolerance.
        max_iter: iterations.
        history: curvature pairs kept.

    Returns:
        ``(x [P, D], iterations, converged)``; a problem whose backtracking line search cannot
        decrease ``f`` (float32 round-off near the optimum) counts as converged, like scipy.
    """
    x = x0.clone()
    f, g = fg(x)
    active = g.abs().amax(1) > tol
    pairs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # (s, y, rho) per step, rows per problem
    it = 0
    while bool(active.any()) and it < max_iter:
        it += 1
        q, alphas = g.clone(), []
        for s, y, rho in reversed(pairs):
            a = rho * (s * q).sum(1)
            q -= a[:, None] * y
            alphas.append(a)
        if pairs:
            s, y, rho = pairs[-1]
            yy = (y * y).sum(1)
            gamma = torch.where(rho > 0, 1.0 / (rho * yy).clamp_min(1e-300), 1.0 / g.norm(dim=1).clamp_min(1e-300))
        else:
            gamma = 1.0 / g.norm(dim=1).clamp_min(1e-300)  # first step: unit length, as L-BFGS-B
        r = gamma[:, None] * q
        for (s, y, rho), a in zip(pairs, reversed(alphas)):
            r += s * (a - rho * (y * r).sum(1))[:, None]
        step = torch.where(active[:, None], -r, torch.zeros_like(r))
        slope = (g * step).sum(1)
        step = torch.where((slope < 0)[:, None] | ~active[:, None], step, -g * gamma[:, None])  # keep descent
        slope = (g * step).sum(1)
        t = torch.ones_like(f)
        for _ in range(40):  # backtracking (Armijo) per problem
            fn, gn = fg(x + t[:, None] * step)
            ok = (fn <= f + 1e-4 * t * slope) | ~active
            if bool(ok.all()):
                break
            t = torch.where(ok, t, t * 0.5)
        moved = ok & active
        s_new = torch.where(moved[:, None], t[:, None] * step, torch.zeros_like(step))
        y_new = torch.where(moved[:, None], gn - g, torch.zeros_like(g))
        sy = (s_new * y_new).sum(1)
        pairs.append((s_new, y_new, torch.where(sy > 1e-12, 1.0 / sy.clamp_min(1e-300), torch.zeros_like(sy))))
        pairs = pairs[-history:]
        x = x + s_new
        f = torch.where(moved, fn, f)
        g = torch.where(moved[:, None], gn, g)
        active = moved & (g.abs().amax(1) > tol)
    return x, it, not bool(active.any())


def fit_logistic(
    X: torch.Tensor,
    labels: torch.Tensor,
    train: torch.Tensor,
    n_classes: int,
    *,
    C: float = 1.0,
    tol: float = 1e-4,
    max_iter: int = 1000,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit P standardised L2 logistic regressions on the rows of ``X`` selected per problem.

    Args:
        X: ``[n, d]`` float32 activations (CPU or CUDA), or a stack ``[L, n, d]`` of feature
            sets (e.g. layers) that share the rows, labels and folds: all ``L x P`` problems
            then run in one batch, each standardised on its own feature set.
        labels: ``[n, P]`` class index (``0..n_classes-1``) of each row for each problem.
        train: ``[n, P]`` bool, the rows each problem trains on (at least one per problem).
        n_classes: K; K = 2 fits one sigmoid per problem, K > 2 a softmax over K.
        C: inverse regularisation strength (scikit-learn's ``C``).
        tol: stop a problem when its largest gradient entry is below ``tol`` (scikit-learn's ``tol``).
        max_iter: L-BFGS iterations.

    Returns:
        ``coef [P, K', d]`` and ``intercept [P, K']`` (K' = 1 for binary; ``[L, ...]`` in front
        for a stack) in the original, unstandardised coordinates: ``logits = X @ coef[p].T +
        intercept[p]``.
    """
    stacked = X.ndim == 3
    X = X if stacked else X[None]
    L, n, d = X.shape
    P = labels.shape[1]
    K = 1 if n_classes == 2 else n_classes
    dev, dt = X.device, X.dtype
    mean0 = X.mean(1, keepdim=True)  # [L, 1, d]
    Xc = X - mean0  # centring first keeps the folded standardisation accurate in float32
    M = train.to(dev, dt)
    cnt = M.sum(0)
    if bool((cnt == 0).any()):
        raise DataError("A logistic problem has no training rows; every fold needs training data.")
    mu = (M.T @ Xc) / cnt[:, None]  # [L, P, d] training mean per problem
    var = ((M.T @ Xc.square()) / cnt[:, None] - mu.square()).clamp_min(0)
    sd = var.sqrt()
    floor = 1e-6 * sd.amax((1, 2), keepdim=True).clamp_min(1e-30)
    sd = torch.where(sd > floor, sd, torch.ones_like(sd))  # constant columns: scale 1
    labels = labels.to(dev)
    Y = (labels == 1).to(dt)[..., None] if K == 1 else torch.nn.functional.one_hot(labels, K).to(dt)  # [n, P, K]
    inv_sd = (1.0 / sd)[..., None]  # [L, P, d, 1]
    mu_k = mu[..., None]  # [L, P, d, 1]
    w_row = (M / cnt)[..., None]  # [n, P, 1]: mean over each problem's training rows
    reg = (1.0 / (C * cnt))[:, None, None].to(torch.float64)  # [P, 1, 1]
    n_w = d * K

    def weights(theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        V = theta[:, :n_w].view(L, P, d, K)  # weights on standardised features
        W = V.to(dt) * inv_sd  # ... on centred, unstandardised features
        c = theta[:, n_w:].view(L, P, K).to(dt) - (mu_k * W).sum(2)  # [L, P, K]
        return V, W, c

    def fg(theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        V, W, c = weights(theta)
        Z = (Xc @ W.permute(0, 2, 1, 3).reshape(L, d, P * K)).view(L, n, P, K) + c[:, None]
        if K == 1:
            loss_i = torch.nn.functional.softplus(Z) - Y * Z
            R = torch.sigmoid(Z) - Y
        else:
            loss_i = torch.logsumexp(Z, -1, keepdim=True) - (Z * Y).sum(-1, keepdim=True)
            R = torch.softmax(Z, -1) - Y
        R = R * w_row
        f = (loss_i * w_row).sum((1, 3), dtype=torch.float64) + 0.5 * (V.square() * reg).sum((2, 3))  # [L, P]
        rs = R.sum(1)  # [L, P, K]
        G = (Xc.transpose(1, 2) @ R.reshape(L, n, P * K)).view(L, d, P, K).permute(0, 2, 1, 3)  # [L, P, d, K]
        gV = ((G - mu_k * rs[:, :, None, :]) * inv_sd).to(torch.float64) + V * reg
        return f.reshape(L * P), torch.cat([gV.reshape(L * P, n_w), rs.reshape(L * P, K).to(torch.float64)], 1)

    with solver_threads(L * n * d * P * K, dev):
        theta, _, converged = lbfgs_batched(fg, torch.zeros(L * P, n_w + K, dtype=torch.float64, device=dev),
                                            tol=tol, max_iter=max_iter)
    if not converged:
        warnings.warn(f"Logistic probe did not converge in {max_iter} iterations; raise max_iter or lower C.",
                      stacklevel=2)
    _, W, c = weights(theta)
    coef = W.permute(0, 1, 3, 2)  # [L, P, K, d]
    intercept = c - (coef * mean0[:, None]).sum(-1)
    return (coef, intercept) if stacked else (coef[0], intercept[0])


def logistic_logits(X: torch.Tensor, coef: torch.Tensor, intercept: torch.Tensor) -> torch.Tensor:
    """``[n, P, K']`` logits of every problem on every row (``[L, n, P, K']`` for a stack)."""
    *_, P, K, d = coef.shape
    Z = X @ coef.reshape(*coef.shape[:-3], P * K, d).transpose(-1, -2)
    return Z.view(*Z.shape[:-1], P, K) + intercept[..., None, :, :]


def _predict_index(Z: torch.Tensor) -> torch.Tensor:
    return (Z[..., 0] > 0).long() if Z.shape[-1] == 1 else Z.argmax(-1)


class LogisticProbe(Probe, ClassifierMixin, BaseEstimator):
    """Binary or multinomial logistic regression on standardised features (L2, L-BFGS).

    Matches ``make_pipeline(StandardScaler(), LogisticRegression(C=C))``; the fitted
    ``coef_ [K', d]`` and ``intercept_ [K']`` are in the original activation coordinates.
    A scikit-learn classifier (``clone``, ``GridSearchCV(LogisticProbe(), {"C": [...]})``).

    Args:
        C: inverse L2 strength on the standardised weights (> 0).
        tol: gradient tolerance (as scikit-learn).
        max_iter: L-BFGS iterations.
    """

    kind = "logistic"
    task = "classification"
    metric = "accuracy"

    def __init__(self, C: float = 1.0, *, tol: float = 1e-4, max_iter: int = 1000) -> None:
        self.C = C
        self.tol = tol
        self.max_iter = max_iter

    def _check_params(self) -> None:
        if not (np.isscalar(self.C) and float(self.C) > 0):
            raise DataError(f"C must be a positive number, got {self.C!r}.")
        if not (np.isscalar(self.tol) and float(self.tol) > 0):
            raise DataError(f"tol must be a positive number, got {self.tol!r}.")
        if not (isinstance(self.max_iter, (int, np.integer)) and self.max_iter >= 1):
            raise DataError(f"max_iter must be a positive integer, got {self.max_iter!r}.")

    def fit(self, X, y, *, hook: str | None = None, position: str | None = None,
            model: str | None = None) -> "LogisticProbe":
        """Fit on ``X [n, d]`` and class labels ``y [n]``."""
        self._check_params()
        Xt = as_features(X)
        classes, idx = encode_labels(y, Xt.shape[0])
        n = Xt.shape[0]
        coef, intercept = fit_logistic(Xt, torch.from_numpy(idx)[:, None], torch.ones(n, 1, dtype=torch.bool),
                                       len(classes), C=float(self.C), tol=float(self.tol),
                                       max_iter=int(self.max_iter))
        self.classes_ = classes
        self.coef_ = coef[0].cpu().numpy()
        self.intercept_ = intercept[0].cpu().numpy()
        self.d_ = Xt.shape[1]
        self._provenance(hook, position, model)
        return self

    def decision_function(self, X) -> np.ndarray:
        """Logits: ``[n]`` for binary (positive class = ``classes_[1]``), ``[n, K]`` otherwise."""
        Xt = self._features(X)
        Z = Xt @ torch.from_numpy(self.coef_).to(Xt.device).T + torch.from_numpy(self.intercept_).to(Xt.device)
        Z = Z.cpu().numpy()
        return Z[:, 0] if Z.shape[1] == 1 else Z

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities ``[n, K]`` in the order of ``classes_``."""
        Z = torch.from_numpy(np.asarray(self.decision_function(X), dtype=np.float64))
        if Z.ndim == 1:
            p = torch.sigmoid(Z)
            return torch.stack([1 - p, p], 1).numpy()
        return torch.softmax(Z, 1).numpy()

    def predict(self, X) -> np.ndarray:
        Z = self.decision_function(X)
        return self.classes_[(Z > 0).astype(int) if Z.ndim == 1 else Z.argmax(1)]

    @property
    def directions(self) -> np.ndarray:
        """Unit weight vector per logit ``[K', d]`` (one row for binary)."""
        self._check_fitted()
        return np.stack([unit(w) for w in self.coef_])

    @property
    def direction(self) -> np.ndarray:
        """Unit normal of the decision boundary ``[d]`` (towards ``classes_[1]``); binary only."""
        self._check_fitted()
        if self.coef_.shape[0] != 1:
            raise DataError(
                f"This probe separates {len(self.classes_)} classes, so it has one direction per class; "
                "use probe.directions[k] (k indexes probe.classes_)."
            )
        return unit(self.coef_[0])

    def cross_validate(self, X: torch.Tensor, targets: Mapping[str, np.ndarray], folds: Folds, *,
                       refit=None) -> dict[str, np.ndarray]:
        """Test accuracy per fold for each target, all folds x targets as one batch.

        ``refit`` (labels ``[n]``) also fits this probe on all rows, as one more problem of the
        same batch when it has as many classes as the targets.
        """
        scores, fitted = self.cross_validate_stack(X[None], targets, folds, refit=refit)[0]
        if refit is not None:
            self.classes_, self.coef_, self.intercept_, self.d_ = (fitted.classes_, fitted.coef_, fitted.intercept_,
                                                                   fitted.d_)
        return scores

    def cross_validate_stack(self, Xs: torch.Tensor, targets: Mapping[str, np.ndarray], folds: Folds, *,
                             refit=None) -> list[tuple[dict[str, np.ndarray], "LogisticProbe"]]:
        """``cross_validate`` for every feature set of ``Xs [L, n, d]`` in one batch of
        ``L x (folds x targets + 1)`` problems (one matrix product per L-BFGS evaluation)."""
        n = Xs.shape[1]
        names = list(targets)
        classes = np.unique(np.concatenate([np.asarray(targets[t]) for t in names]))
        if len(classes) < 2:
            raise DataError("The labels have a single class; a classifier needs at least two.")
        F, T = len(folds), len(names)
        columns = [np.searchsorted(classes, np.asarray(targets[t])) for t in names for _ in range(F)]
        train = torch.zeros(n, T * F + 1, dtype=torch.bool)
        for j in range(T):
            for k, (tr, _) in enumerate(folds):
                train[torch.as_tensor(tr), j * F + k] = True
        refit_classes = None
        if refit is not None:
            refit_classes, refit_idx = encode_labels(refit, n, "refit labels")
            if len(refit_classes) == len(classes):  # same number of logits: batch it
                columns.append(refit_idx)
                train[:, -1] = True
        train = train[:, : len(columns)]
        labels = torch.from_numpy(np.stack(columns, 1))
        self._check_params()
        with solver_threads(Xs.numel() * labels.shape[1] * (1 if len(classes) == 2 else len(classes)), Xs.device):
            coef, intercept = fit_logistic(Xs, labels, train, len(classes), C=float(self.C), tol=float(self.tol),
                                           max_iter=int(self.max_iter))
            correct = (_predict_index(logistic_logits(Xs, coef, intercept)).cpu() == labels).numpy()  # [L, n, P]
        out = []
        for layer, X in enumerate(Xs):
            probe = self.clone()
            if len(columns) > T * F:
                probe.classes_, probe.d_ = refit_classes, X.shape[1]
                probe.coef_, probe.intercept_ = coef[layer, -1].cpu().numpy(), intercept[layer, -1].cpu().numpy()
            elif refit is not None:
                probe.fit(X, refit)
            scores = {t: np.array([correct[layer, te, j * F + k].mean() for k, (_, te) in enumerate(folds)])
                      for j, t in enumerate(names)}
            out.append((scores, probe))
        return out

    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return {"coef": self.coef_, "intercept": self.intercept_}, {"classes": self.classes_.tolist()}

    def _restore(self, tensors, fitted) -> None:
        self.coef_ = tensors["coef"]
        self.intercept_ = tensors["intercept"]
        self.classes_ = np.asarray(fitted["classes"])
