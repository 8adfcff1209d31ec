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

import functools
import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from threadpoolctl import ThreadpoolController

from replab.errors import DataError
from replab.probes.base import Folds, Probe, as_features, encode_labels, unit
from replab.probes.lbfgs import ARMIJO, lbfgs_batched
from replab.probes.threads import logistic_macs, solver_threads
from replab.probes.workspace import scratch


ANISOTROPY = 4.0
"""Logistic problems whose loss curves more than this many times its average along their first
L-BFGS step switch to the preconditioned L-BFGS (``lbfgs_batched``)."""

SAMPLE_ROWS = 128
"""Before its first step, a problem's unit step is tried on every ``n // SAMPLE_ROWS``-th row (128 to 255
rows; all of them below 256): one that fails there and curves its loss more than ``ANISOTROPY`` times its
average starts preconditioned, without trying the step on every row first."""

MIN_CURVATURE = 0.25
"""The preconditioner follows a problem's mean curvature down to this fraction of its value at zero
(below it, its one-product approximation of the inverse would be too coarse)."""


@functools.cache
def _blas() -> ThreadpoolController:
    """The loaded BLAS libraries, found on first use (a 20 ms scan: not at import)."""
    return ThreadpoolController()


def gram(X: torch.Tensor) -> torch.Tensor:
    """``X^T X`` for each of ``X [L, n, d]``: ``[L, d, d]``.

    On the CPU through numpy's BLAS (OpenBLAS) with torch's thread count: torch's CPU matrix
    product (MKL) ran this shape at half OpenBLAS's rate on the AMD EPYC machine the benchmarks
    use (4 x 1,000 x 256: 6.4 ms vs 3.5 ms, one thread); it is one product per fit, so a BLAS
    that is slower elsewhere costs little. The result is allocated by torch (its allocator reuses
    freed memory; numpy's fresh pages cost a page fault per 4 KiB).
    """
    if X.device.type != "cpu" or X.dtype not in (torch.float32, torch.float64):
        return X.transpose(1, 2) @ X
    x, out = X.numpy(), X.new_empty(X.shape[0], X.shape[2], X.shape[2])
    with _blas().limit(limits=torch.get_num_threads(), user_api="blas"):
        np.matmul(x.transpose(0, 2, 1), x, out=out.numpy())
    return out


def spd_inverse(A: torch.Tensor) -> torch.Tensor:
    """``A^-1`` for each symmetric positive-definite ``A [L, d, d]`` (on the CPU in place of ``A``, if contiguous).

    On the CPU through LAPACK with torch's thread count: each matrix is factored (``potrf``) and
    inverted from its factor (``potri``) where it lies, then the computed half is mirrored onto the
    other (4 x 256 x 256, one thread: 3.3-4.0 ms against 4.4-5.6 ms for ``potrf`` + ``potrs``
    against the identity, interleaved in one process; 3.7 ms for torch's ``cholesky_inverse``).

    Raises:
        torch.linalg.LinAlgError: ``A`` is not positive definite in its precision.
    """
    if A.device.type != "cpu" or A.dtype not in (torch.float32, torch.float64):
        return torch.cholesky_inverse(torch.linalg.cholesky(A))
    from scipy.linalg import lapack  # (only preconditioned fits need it)

    A = A.contiguous()  # (so that LAPACK overwrites it rather than a copy)
    potrf, potri = lapack.get_lapack_funcs(("potrf", "potri"), dtype=A.numpy().dtype)
    with _blas().limit(limits=torch.get_num_threads(), user_api="blas"):
        for a in A.numpy():  # a C-order matrix read in Fortran order is its transpose: the same, as it is symmetric
            c, info = potrf(a.T, lower=0, clean=0, overwrite_a=1)
            if info == 0:
                _, info = potri(c, lower=0, overwrite_c=1)
            if info != 0:
                raise torch.linalg.LinAlgError(f"A {a.shape[0]}-square matrix is not positive definite (LAPACK "
                                               f"info {info}).")
    lower = A.tril_()  # (the Fortran upper half is the C-order lower one)
    return lower.add_(lower.transpose(1, 2).triu(1))


def rescaled_inverse(r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Coefficients of ``(r A + (1 - r) reg I)^-1 ~ alpha B + beta reg B^2`` for ``A = B^-1`` positive
    definite, ``A - reg I`` positive semi-definite and ``r`` in ``(0, 1]`` (same shape as ``r``).

    With ``A = curv * corr + reg * I`` the left side is the inverse at curvature ``r * curv``. It
    equals ``B (r I + (1 - r) reg B)^-1``, whose second factor has eigenvalues in ``[r, 1]``; on that
    interval ``alpha + beta x`` is the degree-1 Chebyshev approximation of ``1 / (r + (1 - r) x)``,
    relative error at most ``1 / T_2((1 + r) / (1 - r))``: 3.2% at ``r = 0.6``, 22% at ``r = 0.25``,
    exact at ``r = 1``.
    """
    alpha = 8 / (r * (r + 6) + 1)  # 8 / (2 (1 + r)^2 - (1 - r)^2)
    return alpha, (r - 1) * alpha


def softmax_loss(Z: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
    """Each row's softmax cross-entropy ``logsumexp(z) - z_y`` for logits ``Z [..., K, n]`` and one-hot labels
    ``onehot`` (broadcast against ``Z``): ``[..., 1, n]``."""
    return torch.logsumexp(Z, -2, keepdim=True) - (Z * onehot).sum(-2, keepdim=True)


def weighted_squares(M: torch.Tensor, X: torch.Tensor, block_bytes: int = 2**20) -> torch.Tensor:
    """``M^T @ X.square()`` for weights ``M [n, P]`` and values ``X [L, n, d]``: ``[L, P, d]``.

    Squares a block of rows at a time (``block_bytes`` of them, at least one row) into one reused
    buffer: materialising ``X.square()`` whole (fresh pages for a copy of the activations) cost
    49 ms per 20,000 x 768 hook, 2,048-row blocks 11 ms; a buffer of at most 1 MiB comes from the
    allocator's free lists instead of fresh pages (4 x 1,000 x 256: ~1,000 page faults fewer per fit).
    """
    L, n, d = X.shape
    block = max(1, block_bytes // (L * d * X.element_size()))
    out = X.new_zeros(L, M.shape[1], d)
    buf = X.new_empty(L, min(block, n), d)
    for start in range(0, n, block):
        rows = X[:, start:start + block]
        squares = torch.square(rows, out=buf[:, : rows.shape[1]])
        out.baddbmm_(M[start:start + block].T.expand(L, -1, -1), squares)
    return out


def fit_logistic(
    X: torch.Tensor,
    labels: torch.Tensor,
    train: torch.Tensor,
    n_classes: int,
    *,
    C: float = 1.0,
    tol: float = 1e-4,
    max_iter: int = 1000,
    return_n_iter: bool = False,
    progress: Callable[[int], None] | None = None,
) -> tuple[torch.Tensor, ...]:
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
        return_n_iter: also return the iterations each problem ran, ``n_iter [P]`` (``[L, P]``).
        progress: called with the number of problems that just converged, as they do (the calls
            add up to ``L x P``; for a progress bar over long fits).

    Returns:
        ``coef [P, K', d]`` and ``intercept [P, K']`` (K' = 1 for binary; ``[L, ...]`` in front
        for a stack) in the original, unstandardised coordinates: ``logits = X @ coef[p].T +
        intercept[p]``; then ``n_iter`` if asked.
    """
    stacked = X.ndim == 3
    with torch.inference_mode():  # no autograd bookkeeping: a tenth of a many-problem fit is per-op dispatch
        coef, intercept, n_iter = _solve(X if stacked else X[None], labels, train, n_classes, C, tol, max_iter,
                                         progress)
    # clones made outside inference mode are ordinary tensors (callers may update them in place)
    out = tuple(t.clone() for t in ((coef, intercept, n_iter) if return_n_iter else (coef, intercept)))
    return out if stacked else tuple(t[0] for t in out)


def _solve(X: torch.Tensor, labels: torch.Tensor, train: torch.Tensor, n_classes: int, C: float, tol: float,
           max_iter: int, progress: Callable[[int], None] | None,
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``fit_logistic`` on a stack ``X [L, n, d]``: ``coef [L, P, K', d]``, ``intercept [L, P, K']``,
    ``n_iter [L, P]``."""
    L, n, d = X.shape
    P = labels.shape[1]
    K = 1 if n_classes == 2 else n_classes
    dev, dt = X.device, X.dtype
    mean0 = X.mean(1, keepdim=True)  # [L, 1, d]
    # centring first keeps the folded standardisation accurate in float32 (in a sweep: into a reused buffer)
    Xc = torch.sub(X, mean0, out=scratch(X.shape, dt, dev))
    M = train.to(dev, dt)
    cnt = M.sum(0)
    if bool((cnt == 0).any()):
        raise DataError("A logistic problem has no training rows; every fold needs training data.")
    # training mean and std per problem [L, P, d], computed once per distinct row set (the task and its
    # baselines share each fold's)
    rowsets, of = torch.unique(train.cpu().to(torch.uint8), dim=1, return_inverse=True)
    Mu, of = rowsets.to(dev, dt), of.to(dev)
    cnt_u = Mu.sum(0)[:, None]
    mu_u = (Mu.T @ Xc) / cnt_u
    var_u = (weighted_squares(Mu, Xc) / cnt_u - mu_u.square()).clamp_min(0)
    mu, sd = mu_u[:, of], var_u.sqrt()[:, of]
    floor = 1e-6 * sd.amax((1, 2), keepdim=True).clamp_min(1e-30)
    sd = torch.where(sd > floor, sd, torch.ones_like(sd))  # constant columns: scale 1
    labels = labels.to(dev)
    Y = (labels == 1).to(dt).T[:, None] if K == 1 else torch.nn.functional.one_hot(labels, K).to(dt).permute(1, 2, 0)
    inv_sd = (1.0 / sd)[..., None]  # [L, P, d, 1]
    mu_k = mu[..., None]  # [L, P, d, 1]
    w_row = (M / cnt).T[:, None]  # [P, 1, n]: mean over each problem's training rows
    reg = (1.0 / (C * cnt))[:, None, None]  # [P, 1, 1]
    n_w = d * K
    XcT = Xc.transpose(1, 2)  # [L, d, n] view: products are laid out [L, P*K, n] (5-10x faster for small P)

    # binary: with the sign s = 1 - 2y of each label, the loss is softplus(s z) and its z-gradient
    # s sigmoid(s z) (fewer passes over [P, n] than softplus(z) - y z and sigmoid(z) - y, and no cancellation)
    lab = 1 - 2 * Y if K == 1 else Y
    per = (inv_sd, mu_k, lab, lab * w_row, w_row, reg)  # per-problem tensors, problem axis 1 or 0
    axes = (1, 1, 0, 0, 0, 0)
    reg_of = reg.flatten()  # [P]
    seen: list[tuple[torch.Tensor, tuple]] = []  # the last two row sets and their layouts (fg and apply
    # alternate between the running problems and the preconditioned ones among them)

    def columns(rows: torch.Tensor) -> tuple:
        """The grid that the problems ``rows`` (ascending indices into ``L * P``) fill: the layers
        ``lo:hi`` they fall in (a slice, so a finished layer's activations are not read again) and the
        problems (columns of ``[L, P]``) ``cols``; their slices of ``per``; where each row sits in the
        ``[hi - lo, len(cols)]`` grid; and the columns of each regularisation value (``apply``)."""
        for known, layout in seen:
            if known is rows or (known.shape == rows.shape and torch.equal(known, rows)):
                return layout
        lo, hi = (rows[[0, -1]] // P).tolist()
        hi += 1
        cols, pos = torch.unique(rows % P, return_inverse=True)
        values = reg_of[cols].tolist()  # grouped in Python: torch's unique + nonzero took ~0.1 ms per layout
        groups = [(v, torch.tensor([i for i, u in enumerate(values) if u == v], device=dev))
                  for v in dict.fromkeys(values)]
        sliced = tuple(t[lo:hi].index_select(1, cols) if ax else t.index_select(0, cols) for t, ax in zip(per, axes))
        seen[:] = [*seen[-1:], (rows, ((cols, *sliced), rows // P - lo, pos, groups, slice(lo, hi)))]
        return seen[-1][1]

    def to_grid(v: torch.Tensor, rows: torch.Tensor, layer, pos, cols, nl: int) -> torch.Tensor:
        """``v [B, D]`` of problems ``rows`` as ``[nl, len(cols), D]`` (zeros where a layer's problem is not asked)."""
        if len(rows) == nl * len(cols):  # every layer of every column, in order
            return v.view(nl, len(cols), -1)
        return v.new_zeros(nl, len(cols), v.shape[1]).index_put_((layer, pos), v)

    def from_grid(grid: torch.Tensor, rows: torch.Tensor, layer, pos) -> torch.Tensor:
        """The rows of ``grid [nl, columns, ...]`` that ``to_grid`` placed: ``[B, ...]``."""
        if len(rows) == grid.shape[0] * grid.shape[1]:
            return grid.reshape(len(rows), *grid.shape[2:])
        return grid[layer, pos]

    def weights(theta: torch.Tensor, inv_sd=inv_sd, mu_k=mu_k) -> tuple[torch.Tensor, ...]:
        """``theta [nl, P', D]``: the weights on standardised features ``V`` (a view of theta) and
        in float32 ``V32``, on centred, unstandardised features ``W [nl, P', d, K]``, and the intercepts ``c``."""
        V = theta[..., :n_w].unflatten(-1, (d, K))
        V32 = V.to(dt)
        W = V32 * inv_sd
        c = theta[..., n_w:].to(dt) - torch.linalg.vecdot(mu_k, W, dim=2)  # [nl, P', K]
        return V, V32, W, c

    def fg(theta: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        nonlocal at_zero
        (cols, inv_sd_a, mu_a, lab_a, labw_a, w_a, reg_a), layer, pos, _, live = columns(rows)  # problems running
        nl, Pa = live.stop - live.start, len(cols)
        V, V32, W, c = weights(to_grid(theta, rows, layer, pos, cols, nl), inv_sd_a, mu_a)
        if at_zero:  # lbfgs_batched's first evaluation, at x0 = 0: every logit is 0, no product needed
            at_zero = False
            Z = W.new_zeros(nl, Pa, K, n)
        else:
            Z = (W.transpose(2, 3).reshape(nl, Pa * K, d) @ XcT[live]).view(nl, Pa, K, n).add_(c[..., None])
        if K == 1:
            U = Z.mul_(lab_a)
            loss_i = torch.nn.functional.softplus(U)
            R = torch.sigmoid(U)
            h = (torch.linalg.vecdot(torch.addcmul(R, R, R, value=-1.0), w_a).flatten(1) if preconditioned
                 else torch.full((nl, Pa), curv, dtype=dt, device=dev))  # mean p (1 - p), once M may read it
            R.mul_(labw_a)  # (sigmoid(z) - y) * w
        else:
            loss_i = softmax_loss(Z, lab_a)
            R = torch.softmax(Z, 2).mul_(w_a).sub_(labw_a)
            h = torch.full((nl, Pa), curv, dtype=dt, device=dev)  # (M keeps softmax problems at curv: see apply)
        Vf = V.flatten(2)
        f = (loss_i * w_a).sum((2, 3), dtype=torch.float64)  # [nl, Pa]
        f.addcmul_(torch.linalg.vecdot(Vf, Vf), reg_a.view(-1), value=0.5)
        rs = R.sum(3)  # [nl, Pa, K]
        G = (R.reshape(nl, Pa * K, n) @ Xc[live]).view(nl, Pa, K, d).transpose(2, 3)  # [nl, Pa, d, K]
        gV = torch.addcmul(G, mu_a, rs.unsqueeze(2), value=-1.0).mul_(inv_sd_a).addcmul_(V32, reg_a)
        g = torch.cat([gV.reshape(nl, Pa, n_w), rs], 2)  # in the activations' precision (see lbfgs_batched)
        h = from_grid(h, rows, layer, pos)
        if preconditioned:  # (a problem not yet preconditioned reports curv, its value at theta = 0)
            h = torch.where(chosen.index_select(0, rows), h, curv)
        return from_grid(f, rows, layer, pos), from_grid(g, rows, layer, pos), h

    at_zero = True  # (the start point below)
    curv = (n_classes - 1) / n_classes**2  # softmax curvature at theta = 0 (binary: 1/4)
    preconditioned = False  # fg computes the mean curvature h (a pass over [P, n]) once a problem is; before,
    # and for the problems not (yet) chosen, it reports curv, h's value at theta = 0. So a problem's path does not
    # depend on the batch: one switched after its first step fails starts from theta = 0, one switched after an
    # accepted first step starts from curv too (its point was evaluated before it was chosen).
    chosen = torch.zeros(L * P, dtype=torch.bool, device=dev)  # the problems preconditioned so far
    inverses: dict[float, torch.Tensor] = {}  # regularisation -> [L, d, d], made once each

    @functools.cache
    def corr() -> torch.Tensor:  # [L, d, d] feature correlation of each layer's rows
        cov = gram(Xc).div_(n)  # in place: a fresh [L, d, d] temporary costs its page faults (~0.3 ms)
        sd_all = cov.diagonal(dim1=1, dim2=2).sqrt()  # [L, d]
        inv_sd_all = torch.where(sd_all > floor[:, 0], sd_all, torch.ones_like(sd_all)).reciprocal_()
        return cov.mul_(inv_sd_all[:, :, None]).mul_(inv_sd_all[:, None, :])

    def inverse(value: float) -> torch.Tensor:
        """``(curv * corr + value * I)^-1 [L, d, d]``, in the activations' precision unless too
        ill-conditioned for it."""
        if value not in inverses:
            def shifted(dtype: torch.dtype) -> torch.Tensor:
                A = corr().to(dtype) * curv
                A.diagonal(dim1=1, dim2=2).add_(value)
                return A

            try:
                inverses[value] = spd_inverse(shifted(dt))
            except torch.linalg.LinAlgError:  # positive definite (value > 0), but not in float32
                inverses[value] = spd_inverse(shifted(torch.float64)).to(dt)
        return inverses[value]

    def apply(q: torch.Tensor, rows: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """``M q`` with ``M`` the inverse Hessian at each problem's iterate, modelled as ``(c * corr +
        reg * I)^-1`` (intercept: ``1 / c``): ``c = curv`` for softmax problems, and for binary ones
        their training rows' mean curvature ``h`` there.

        Why: rows that a problem fits well stop curving its loss; a near-separable control task ends
        at ``c`` ~ 0.55 ``curv`` and takes two iterations fewer when ``M`` follows it. With ``r = c /
        curv`` and ``B`` the inverse at ``curv``, ``M ~ alpha B + beta reg B^2`` (``rescaled_inverse``:
        within 3% at ``r = 0.6``, 22% at ``MIN_CURVATURE``), so any ``c`` costs a second product with
        ``B`` instead of a factor. Softmax problems saved 5-16% of their iterations this way (world
        language, profession, city_country stores) but took longer: their second product has ``K``
        rows per problem, and their curvature a pass over ``[P, K, n]``. The weights go through ``B``
        as rows @ ``B`` (the fast layout); a search direction, so float32 is enough.
        """
        (cols, *_), layer, pos, groups, live = columns(rows)
        nl = live.stop - live.start
        V = to_grid(q[:, :n_w], rows, layer, pos, cols, nl).view(nl, -1, d, K).transpose(2, 3)  # [nl, Pc, K, d]
        r = (h / curv).clamp_(MIN_CURVATURE, 1.0)  # (q and h in the activations' precision)
        ab = None  # alpha, beta per problem [nl, Pc, 2] (binary)
        if K == 1:
            ab = to_grid(torch.stack(rescaled_inverse(r), 1), rows, layer, pos, cols, nl)

        def through(V: torch.Tensor, value: float, ab: torch.Tensor | None) -> torch.Tensor:
            B = inverse(value)[live]
            Y = V.reshape(nl, -1, d) @ B
            # alpha Y + beta reg Y B
            return Y if ab is None else torch.baddbmm(Y * ab[..., :1], Y * ab[..., 1:], B, alpha=value)

        if len(groups) == 1:  # one training-set size (the folds share one factor)
            out = through(V, groups[0][0], ab).view(V.shape)
        else:
            out = torch.empty_like(V)
            for value, sel in groups:
                out.index_copy_(1, sel, through(V.index_select(1, sel), value,
                                                None if ab is None else ab.index_select(1, sel)).view(nl, -1, K, d))
        out = from_grid(out.transpose(2, 3).reshape(nl, len(cols), n_w), rows, layer, pos)
        return torch.cat([out, q[:, n_w:] / (r * curv)[:, None]], 1)

    stride = max(1, n // SAMPLE_ROWS)  # the rows of the look before the first step: every stride-th
    sample_T = XcT[..., ::stride]  # [L, d, m] view (BLAS reads it with a leading dimension, no copy)
    in_sample = M[::stride]  # [m, P]
    w_sample = (in_sample / in_sample.sum(0).clamp_min(1)).T[:, None]  # [P, 1, m]
    lab_sample = lab[..., ::stride]

    def fails_first(s: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For the unit step from theta = 0 along ``s [B, D]`` of the problems ``rows``: whether it fails
        the line search on the sampled rows, and the loss's curvature along it at theta = 0 there (the
        second derivative of each row's loss at 0 is curv for a sigmoid, the logits' variance over the
        classes for a softmax)."""
        (cols, inv_sd_a, mu_a, *_, reg_a), layer, pos, _, live = columns(rows)
        nl, Pa = live.stop - live.start, len(cols)
        norm = s.norm(dim=1)
        V, V32, W, c = weights(to_grid(s / norm.clamp_min(1e-30)[:, None], rows, layer, pos, cols, nl), inv_sd_a,
                               mu_a)
        Z = (W.transpose(2, 3).reshape(nl, Pa * K, d) @ sample_T[live]).view(nl, Pa, K, -1).add_(c[..., None])
        lab_s, w_s = lab_sample.index_select(0, cols), w_sample.index_select(0, cols)
        if K == 1:
            loss_i, bend = torch.nn.functional.softplus(Z * lab_s), Z.square().mul_(curv)
        else:
            loss_i = softmax_loss(Z, lab_s)
            bend = Z.square().mean(2, keepdim=True) - Z.mean(2, keepdim=True).square()
        Vf = V32.flatten(2)
        ridge = torch.linalg.vecdot(Vf, Vf) * reg_a.view(-1)  # reg |v|^2 [nl, Pa]
        f1 = from_grid((loss_i * w_s).sum((2, 3)) + 0.5 * ridge, rows, layer, pos)
        along = from_grid((bend * w_s).sum((2, 3)) + ridge, rows, layer, pos)
        return f1 > math.log(n_classes) - ARMIJO * norm, along  # (every loss is log K at theta = 0)

    def preconditioner(s: torch.Tensor, y: torch.Tensor | None, rows: torch.Tensor):
        # Ill-conditioned problems show themselves in one step: the loss curves along it much more
        # than its average, curv * mean(eig(corr)) + reg = curv + reg (1.0x on isotropic activations,
        # 25-170x on the world model's, whose gradients lie in a few high-variance directions). Before
        # the first step (y None), a problem whose unit step fails on a sample of the rows is judged by
        # the curvature at theta = 0 along it (an upper bound of the step's): it then skips the trial on
        # every row, whose only use would be to show it.
        # M (apply): the inverse Hessian at theta = 0, curv * corr + reg (intercept: curv), rescaled to
        # a binary problem's current mean curvature; each problem's training standardisation
        # approximated by its layer's: one factor per layer and regularisation (the folds share one),
        # built from the layer's rows alone.
        nonlocal preconditioned
        if y is None:
            fails, along = fails_first(s, rows)
        else:
            fails, along = True, (s * y).sum(1) / (s * s).sum(1).clamp_min(1e-300)
        new = (along > ANISOTROPY * (curv + reg_of[rows % P])) & fails
        if not bool(new.any()):
            return None
        preconditioned = True
        chosen.index_fill_(0, rows[new], True)
        return apply, new

    with solver_threads(logistic_macs(X.numel(), P, n_classes), dev):
        theta, n_iter, converged = lbfgs_batched(fg, torch.zeros(L * P, n_w + K, dtype=torch.float64, device=dev),
                                                 tol=tol, ftol=2 * torch.finfo(dt).eps, max_iter=max_iter,
                                                 preconditioner=preconditioner, progress=progress)
    if not converged:
        warnings.warn(f"Logistic probe did not converge in {max_iter} iterations; raise max_iter or lower C.",
                      ConvergenceWarning, stacklevel=3)
    *_, W, c = weights(theta.view(L, P, -1))
    coef = W.permute(0, 1, 3, 2)  # [L, P, K, d]
    intercept = c - (coef * mean0[:, None]).sum(-1)
    return coef, intercept, n_iter.view(L, P)


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
    ``coef_ [K', d]`` and ``intercept_ [K']`` are in the original activation coordinates;
    ``n_iter_ [1]`` counts the L-BFGS iterations, as scikit-learn's.
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
        coef, intercept, n_iter = fit_logistic(Xt, torch.from_numpy(idx)[:, None],
                                               torch.ones(n, 1, dtype=torch.bool), len(classes), C=float(self.C),
                                               tol=float(self.tol), max_iter=int(self.max_iter), return_n_iter=True)
        self.classes_ = classes
        self.coef_ = coef[0].cpu().numpy()
        self.intercept_ = intercept[0].cpu().numpy()
        self.n_iter_ = n_iter.cpu().numpy().astype(np.int32)  # [1], as scikit-learn
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
            self.classes_, self.coef_, self.intercept_, self.n_iter_, self.d_ = (
                fitted.classes_, fitted.coef_, fitted.intercept_, fitted.n_iter_, fitted.d_)
        return scores

    def cross_validate_stack(self, Xs: torch.Tensor, targets: Mapping[str, np.ndarray], folds: Folds, *,
                             refit=None, progress: Callable[[int], None] | None = None,
                             ) -> list[tuple[dict[str, np.ndarray], "LogisticProbe"]]:
        """``cross_validate`` for every feature set of ``Xs [L, n, d]`` in one batch of
        ``L x (folds x targets + 1)`` problems (one matrix product per L-BFGS evaluation);
        ``progress`` is told of each problem as it converges (see ``Probe.cross_validate_stack``)."""
        n = Xs.shape[1]
        names = list(targets)
        classes = np.unique(np.concatenate([np.asarray(targets[t]) for t in names]))
        if len(classes) < 2:
            raise DataError("The labels have a single class; a classifier needs at least two.")
        F, T = len(folds), len(names)
        indices = {t: np.searchsorted(classes, np.asarray(targets[t])) for t in names}
        columns = [indices[t] for t in names for _ in range(F)]  # one label column per fold and target
        train = np.zeros((n, T * F + 1), dtype=bool)  # numpy: torch's parallel fills stall on shared cores
        test = np.zeros((F, n))
        for k, (tr, te) in enumerate(folds):
            train[tr, k:T * F:F] = True  # column j * F + k: target j on fold k
            test[k, te] = 1.0
        refit_classes = None
        if refit is not None:
            refit_classes, refit_idx = encode_labels(refit, n, "refit labels")
            if len(refit_classes) == len(classes):  # same number of logits: batch it
                columns.append(refit_idx)
                train[:, -1] = True
        train = torch.from_numpy(np.ascontiguousarray(train[:, : len(columns)]))
        labels = torch.from_numpy(np.stack(columns, 1))
        self._check_params()
        with solver_threads(logistic_macs(Xs.numel(), labels.shape[1], len(classes)), Xs.device):
            coef, intercept, n_iter = fit_logistic(Xs, labels, train, len(classes), C=float(self.C),
                                                   tol=float(self.tol), max_iter=int(self.max_iter),
                                                   return_n_iter=True, progress=progress)
            correct = (_predict_index(logistic_logits(Xs, coef, intercept)).cpu() == labels).double()  # [L, n, P]
            # correct test rows per fold and problem, counted exactly in torch on the solver's threads (numpy's
            # BLAS would run this on all cores, and its idle worker then spins ~0.1 s)
            hits = (torch.from_numpy(test) @ correct).numpy()  # [L, fold, P]
        accuracy = hits / test.sum(1)[:, None]
        ks = np.arange(F)
        out = []
        for layer, X in enumerate(Xs):
            probe = self.clone()
            if len(columns) > T * F:
                probe.classes_, probe.d_ = refit_classes, X.shape[1]
                probe.coef_, probe.intercept_ = coef[layer, -1].cpu().numpy(), intercept[layer, -1].cpu().numpy()
                probe.n_iter_ = n_iter[layer, -1:].cpu().numpy().astype(np.int32)
            elif refit is not None:
                probe.fit(X, refit)
                if progress is not None:
                    progress(1)
            # fold k's problem on fold k's rows
            scores = {t: accuracy[layer, ks, j * F + ks] for j, t in enumerate(names)}
            out.append((scores, probe))
        return out

    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        n_iter = getattr(self, "n_iter_", None)  # (absent on probes loaded from files that predate it)
        return ({"coef": self.coef_, "intercept": self.intercept_},
                {"classes": self.classes_.tolist(), "n_iter": None if n_iter is None else n_iter.tolist()})

    def _restore(self, tensors, fitted) -> None:
        self.coef_ = tensors["coef"]
        self.intercept_ = tensors["intercept"]
        self.classes_ = np.asarray(fitted["classes"])
        if fitted.get("n_iter") is not None:  # (probes saved before n_iter_ existed lack it)
            self.n_iter_ = np.asarray(fitted["n_iter"], dtype=np.int32)
