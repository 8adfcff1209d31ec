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
import functools
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

ANISOTROPY = 4.0
"""Logistic problems whose loss curves more than this many times its average along their first
L-BFGS step switch to the preconditioned L-BFGS (``lbfgs_batched``)."""


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


Preconditioner = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``(q [P, D], rows [P] bool) -> M q`` on those rows, ``M`` a fixed positive-definite
approximation of each problem's inverse Hessian."""

PreconditionerFactory = Callable[[torch.Tensor, torch.Tensor, torch.Tensor],
                                 "tuple[Preconditioner, torch.Tensor] | None"]
"""``(s [P, D], y [P, D], candidates [P]) -> (M, rows)`` or ``None``: given a step and the gradient
change along it, which candidate problems to precondition, and an ``M`` valid for every problem
chosen so far (it may be called twice)."""


def lbfgs_batched(fg: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]], x0: torch.Tensor, *,
                  tol: float = 1e-4, ftol: float = 0.0, max_iter: int = 1000, history: int = 10,
                  preconditioner: PreconditionerFactory | None = None) -> tuple[torch.Tensor, int, bool]:
    """Minimise P independent smooth functions at once, one L-BFGS per row of ``x0``.

    Every problem keeps its own curvature pairs, step length and stopping test (largest
    gradient entry <= ``tol``, as scipy's ``gtol``), so each needs the iterations it would need
    alone; the caller's ``fg`` evaluates all P at once (one matrix product for all).

    With ``preconditioner``, each problem's first step decides whether it switches to a
    preconditioned L-BFGS (initial inverse Hessian ``M`` instead of ``gamma * I``): a problem
    whose unit-length first step fails the line search is shown that trial step and its gradient
    change at once (and, if chosen, retries with the step ``-M g``); one whose first step is
    accepted is shown it after the iteration (its history then restarts). Why: building ``M``
    costs several evaluations, which an easy or well-conditioned problem never repays, while an
    ill-conditioned one (anisotropic activations, near-separable control or shuffled labels)
    takes ~20x fewer iterations with it, and one step shows which is which. Each problem's
    choice depends on its own step only, so its path does not depend on the rest of the batch;
    the optimum and the stopping test are unchanged.

    Args:
        fg: ``(x [P, D], active [P] bool) -> (f [P], g [P, D])`` (float64); rows not active (finished
            problems) may be left as anything, so ``fg`` can skip them.
        x0: ``[P, D]`` starting points.
        tol: per-problem gradient tolerance.
        ftol: also stop a problem whose accepted step lowers ``f`` by at most ``ftol * max(|f|, 1)``
            (scipy's ``ftol``): with ``f`` summed from float32 terms, steps below its round-off
            would otherwise be accepted on noise forever.
        max_iter: iterations.
        history: curvature pairs kept.
        preconditioner: see ``PreconditionerFactory``.

    Returns:
        ``(x [P, D], iterations, converged)``; a problem whose backtracking line search cannot
        decrease ``f`` (float32 round-off near the optimum) counts as converged, like scipy.
    """
    x = x0.clone()
    f, g = fg(x, torch.ones(len(x), dtype=torch.bool, device=x.device))
    active = g.abs().amax(1) > tol
    pairs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # (s, y, rho) per step, rows per problem
    M: Preconditioner | None = None
    pre = torch.zeros_like(active)  # problems on the preconditioned L-BFGS
    tried = torch.zeros_like(active)  # problems shown to the preconditioner in their first line search

    def precondition(v: torch.Tensor) -> torch.Tensor:
        return v if M is None else torch.where(pre[:, None], M(v, pre & active), v)

    it = 0
    while bool(active.any()) and it < max_iter:
        it += 1
        if preconditioner is not None and it == 2:  # problems whose first step was accepted
            chosen = preconditioner(pairs[-1][0], pairs[-1][1], active & ~tried)
            if chosen is not None:
                M, new = chosen[0], chosen[1] & active & ~tried
                pre = pre | new
                pairs = [(s, y, torch.where(new, torch.zeros_like(rho), rho)) for s, y, rho in pairs]  # restart
        q, alphas = g.clone(), []
        for s, y, rho in reversed(pairs):
            a = rho * (s * q).sum(1)
            q -= a[:, None] * y
            alphas.append(a)
        # initial matrix: gamma * I with scipy's scaling (first step: unit length, as L-BFGS-B),
        # or M itself, already to scale
        gamma = 1.0 / g.norm(dim=1).clamp_min(1e-300)
        if pairs:
            s, y, rho = pairs[-1]
            gamma = torch.where(rho > 0, 1.0 / (rho * (y * y).sum(1)).clamp_min(1e-300), gamma)
        gamma = torch.where(pre, 1.0, gamma)
        r = gamma[:, None] * precondition(q)
        for (s, y, rho), a in zip(pairs, reversed(alphas)):
            r += s * (a - rho * (y * r).sum(1))[:, None]
        step = torch.where(active[:, None], -r, torch.zeros_like(r))
        slope = (g * step).sum(1)
        uphill = (slope >= 0) & active
        if bool(uphill.any()):  # keep descent: (preconditioned) steepest descent where the direction is not
            step = torch.where(uphill[:, None], -gamma[:, None] * precondition(g), step)
        slope = (g * step).sum(1)
        t, pending, fn, gn = torch.ones_like(f), active, f, g
        for k in range(40):  # backtracking (Armijo) per problem, to the minimum of a quadratic fit
            fe, ge = fg(x + t[:, None] * step, pending)  # only problems whose step is not yet accepted
            fn, gn = torch.where(pending, fe, fn), torch.where(pending[:, None], ge, gn)
            ok = (fn <= f + 1e-4 * t * slope) | ~active
            if bool(ok.all()):
                break
            fit = -slope * t * t / (2 * (fn - f - slope * t)).clamp_min(1e-300)
            t = torch.where(ok, t, torch.minimum(torch.maximum(fit, 0.1 * t), 0.5 * t))
            if preconditioner is not None and it == 1 and k == 0:  # unit first steps that failed
                tried = ~ok
                chosen = preconditioner(step, gn - g, tried)
                if chosen is not None:
                    M, pre = chosen[0], chosen[1] & tried
                    step = torch.where(pre[:, None], -precondition(g), step)  # retry with M's own step
                    slope = (g * step).sum(1)
                    t = torch.where(pre, 1.0, t)
            pending = ~ok
        moved = ok & active
        s_new = torch.where(moved[:, None], t[:, None] * step, torch.zeros_like(step))
        y_new = torch.where(moved[:, None], gn - g, torch.zeros_like(g))
        sy = (s_new * y_new).sum(1)
        pairs.append((s_new, y_new, torch.where(sy > 1e-12, 1.0 / sy.clamp_min(1e-300), torch.zeros_like(sy))))
        pairs = pairs[-history:]
        x = x + s_new
        f_old, f = f, torch.where(moved, fn, f)
        g = torch.where(moved[:, None], gn, g)
        active = moved & (g.abs().amax(1) > tol) & (f_old - f > ftol * f_old.abs().clamp_min(1.0))
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
    Y = (labels == 1).to(dt).T[:, None] if K == 1 else torch.nn.functional.one_hot(labels, K).to(dt).permute(1, 2, 0)
    inv_sd = (1.0 / sd)[..., None]  # [L, P, d, 1]
    mu_k = mu[..., None]  # [L, P, d, 1]
    w_row = (M / cnt).T[:, None]  # [P, 1, n]: mean over each problem's training rows
    reg = (1.0 / (C * cnt))[:, None, None].to(torch.float64)  # [P, 1, 1]
    n_w = d * K
    XcT = Xc.transpose(1, 2)  # [L, d, n] view: products are laid out [L, P*K, n] (5-10x faster for small P)

    per = (inv_sd, mu_k, Y, w_row, reg)  # per-problem tensors, problem axis 1 or 0
    axes = (1, 1, 0, 0, 0)
    cache: dict[bytes, tuple] = {}

    def columns(active: torch.Tensor) -> tuple:
        """The problems (columns of ``[L, P]``) active in some layer, and their slices of ``per``."""
        cols = active.view(L, P).any(0)
        key = cols.cpu().numpy().tobytes()
        if key not in cache:
            if len(cache) > 8:
                cache.clear()
            idx = cols.nonzero().flatten()
            cache[key] = (idx, *(t.index_select(ax, idx) for t, ax in zip(per, axes)))
        return cache[key]

    def weights(theta: torch.Tensor, inv_sd=inv_sd, mu_k=mu_k) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        V = theta[..., :n_w].reshape(L, -1, d, K)  # weights on standardised features
        W = V.to(dt) * inv_sd  # ... on centred, unstandardised features
        c = theta[..., n_w:].reshape(L, -1, K).to(dt) - (mu_k * W).sum(2)  # [L, P, K]
        return V, W, c

    def fg(theta: torch.Tensor, active: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx, inv_sd_a, mu_a, Y_a, w_a, reg_a = columns(active)  # only problems still running
        Pa = len(idx)
        V, W, c = weights(theta.view(L, P, -1).index_select(1, idx), inv_sd_a, mu_a)
        Z = (W.transpose(2, 3).reshape(L, Pa * K, d) @ XcT).view(L, Pa, K, n) + c[..., None]
        if K == 1:
            loss_i = torch.nn.functional.softplus(Z) - Y_a * Z
            R = torch.sigmoid(Z) - Y_a
        else:
            loss_i = torch.logsumexp(Z, 2, keepdim=True) - (Z * Y_a).sum(2, keepdim=True)
            R = torch.softmax(Z, 2) - Y_a
        R = R * w_a
        f = (loss_i * w_a).sum((2, 3), dtype=torch.float64) + 0.5 * (V.square() * reg_a).sum((2, 3))  # [L, Pa]
        rs = R.sum(3)  # [L, Pa, K]
        G = (R.reshape(L, Pa * K, n) @ Xc).view(L, Pa, K, d).transpose(2, 3)  # [L, Pa, d, K]
        gV = ((G - mu_a * rs[:, :, None, :]) * inv_sd_a).to(torch.float64) + V * reg_a
        g = torch.cat([gV.reshape(L, Pa, n_w), rs.to(torch.float64)], 2)
        if Pa == P:
            return f.reshape(L * P), g.reshape(L * P, -1)
        f_all = f.new_zeros(L, P).index_copy_(1, idx, f)  # finished problems: ignored by lbfgs_batched
        return f_all.reshape(L * P), g.new_zeros(L, P, g.shape[2]).index_copy_(1, idx, g).reshape(L * P, -1)

    curv = (n_classes - 1) / n_classes**2  # softmax curvature at theta = 0 (binary: 1/4)

    values, group = torch.unique(reg.flatten(), return_inverse=True)  # problems by regularisation
    inverses: dict[int, torch.Tensor] = {}  # group -> [L, d, d], made once each (the factory may be called twice)

    @functools.cache
    def corr() -> torch.Tensor:  # [L, d, d] feature correlation of each layer's rows
        cov = (XcT @ Xc) / n
        sd_all = cov.diagonal(dim1=1, dim2=2).sqrt()  # [L, d]
        sd_all = torch.where(sd_all > floor[:, 0], sd_all, torch.ones_like(sd_all))
        return cov / (sd_all[:, :, None] * sd_all[:, None, :])

    def preconditioner(s: torch.Tensor, y: torch.Tensor, candidates: torch.Tensor):
        # Ill-conditioned problems show themselves in one step: the loss curves along it much more
        # than its average, curv * mean(eig(corr)) + reg = curv + reg (1.0x on isotropic activations,
        # 25-170x on the world model's, whose gradients lie in a few high-variance directions).
        along = (s * y).sum(1) / (s * s).sum(1).clamp_min(1e-300)
        rows = candidates & (along > ANISOTROPY * (curv + reg.flatten().repeat(L)))
        if not bool(rows.any()):
            return None
        # M: the inverse Hessian at theta = 0, curv * corr + reg (intercept: curv), each problem's
        # training standardisation approximated by its layer's: one factor per layer and
        # regularisation (the folds share one), built from the layer's rows alone.
        eye = torch.eye(d, dtype=dt, device=dev)
        for g in torch.unique(group[rows.view(L, P).any(0)]).tolist():  # only the chosen problems' factors
            if g not in inverses:  # in the activations' precision unless too ill-conditioned for it
                A = curv * corr() + values[g].item() * eye
                factor, info = torch.linalg.cholesky_ex(A)
                if bool((info != 0).any()):
                    factor = torch.linalg.cholesky(A.to(torch.float64))
                inverses[g] = torch.cholesky_inverse(factor).to(dt)  # [L, d, d]

        def apply(q: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
            idx = columns(active)[0]
            Vt = q.view(L, P, -1)[:, :, :n_w].to(dt).reshape(L, P, d, K).transpose(2, 3)  # rows @ inverse: fast
            out = torch.zeros(L, P, K, d, dtype=dt, device=q.device)  # a search direction: float32 is enough
            for g, inv in inverses.items():
                sel = idx[group[idx] == g]
                out[:, sel] = (Vt[:, sel].reshape(L, -1, d) @ inv).view(L, -1, K, d)
            return torch.cat([out.transpose(2, 3).reshape(L * P, n_w).to(q.dtype), q[:, n_w:] / curv], 1)

        return apply, rows

    with solver_threads(L * n * d * P * K, dev):
        theta, _, converged = lbfgs_batched(fg, torch.zeros(L * P, n_w + K, dtype=torch.float64, device=dev),
                                            tol=tol, ftol=2 * torch.finfo(dt).eps, max_iter=max_iter,
                                            preconditioner=preconditioner)
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
