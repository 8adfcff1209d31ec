"""``lbfgs_batched``: many independent L-BFGS minimisations in lockstep.

Used by the logistic probes (``fit_logistic``): P problems that share their data, so one
evaluation of all of them is one matrix product. Each problem keeps its own curvature pairs,
step length and stopping test, so it needs the iterations it would need alone; the state is
kept for the unfinished problems only, so a problem that has converged costs nothing more.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Objective = Callable[[torch.Tensor, torch.Tensor], "tuple[torch.Tensor, torch.Tensor, torch.Tensor]"]
"""``(x [B, D], rows [B] long) -> (f [B], g [B, D], h [B])``: value and gradient of the problems
``rows`` (indices into ``x0``, ascending) at ``x``, and a value ``h`` that the preconditioner reads
(e.g. the loss's curvature there; any ``[B]`` tensor if there is no preconditioner). ``f`` in
float64 (the line search compares values); ``g`` in the precision of the search directions and
curvature pairs (float32 halves their memory traffic when the gradient is only float32-accurate
anyway)."""

Preconditioner = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""``(q [B, D], rows [B] long, h [B]) -> M q``, ``M`` a positive-definite approximation of each
problem's inverse Hessian at its current iterate, where the objective reported ``h``."""

PreconditionerFactory = Callable[[torch.Tensor, "torch.Tensor | None", torch.Tensor],
                                 "tuple[Preconditioner, torch.Tensor] | None"]
"""``(s [B, D], y [B, D] or None, rows [B]) -> (M, chosen [B] bool)`` or ``None``: given a step of the
problems ``rows`` and the gradient change along it, which of them to precondition, and an ``M``
valid for every problem chosen so far (it may be called up to three times). ``y is None``: before
the first step, ``s`` the first search direction (``-g`` at ``x0``); the factory chooses the
problems whose unit first step it can already tell would fail (from a cheap look at the objective
along ``s``), which then skip that trial."""


ARMIJO = 1e-4
"""Sufficient decrease of the backtracking line search: a step ``t`` is accepted when ``f`` falls by at
least ``ARMIJO * t * |slope|`` (Nocedal & Wright's usual value)."""

_dot = torch.linalg.vecdot  # per-row dot products of [B, D] tensors


def _largest(g: torch.Tensor) -> torch.Tensor:
    """Largest absolute entry of each row of ``g [B, D]`` (scipy's ``gtol`` test; 4x faster on the CPU
    than ``vector_norm(g, inf, 1)``, ~11 vs ~45 us at 40 x 257)."""
    return g.abs().amax(1)


def lbfgs_batched(fg: Objective, x0: torch.Tensor, *, tol: float = 1e-4, ftol: float = 0.0,
                  max_iter: int = 1000, history: int = 10,
                  preconditioner: PreconditionerFactory | None = None,
                  progress: Callable[[int], None] | None = None) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Minimise P independent smooth functions at once, one L-BFGS per row of ``x0``.

    Every problem keeps its own curvature pairs, step length and stopping test (largest
    gradient entry <= ``tol``, as scipy's ``gtol``); ``fg`` evaluates the unfinished ones at
    once (one matrix product for all), and a finished problem leaves the state.

    With ``preconditioner``, each problem's first step decides whether it switches to a
    preconditioned L-BFGS (initial inverse Hessian ``M`` instead of ``gamma * I``). The factory is
    first shown the first search directions, and a problem it chooses starts with the step ``-M g``
    (it foresaw that the unit step would fail); any other problem whose unit-length first step
    fails the line search is shown that trial step and its gradient change at once (and, if chosen,
    retries with the step ``-M g``); one whose first step is accepted is shown it after the
    iteration (its history then restarts). Why: building ``M`` costs several evaluations, which an
    easy or well-conditioned problem never repays, while an ill-conditioned one (anisotropic
    activations, near-separable control or shuffled labels) takes ~20x fewer iterations with it,
    and one step shows which is which. Each problem's choice depends on its own step only, so its
    path does not depend on the rest of the batch; the optimum and the stopping test are unchanged.

    Args:
        fg: see ``Objective``.
        x0: ``[P, D]`` float64 starting points (the iterates accumulate in float64).
        tol: per-problem gradient tolerance.
        ftol: also stop a problem whose accepted step lowers ``f`` by at most ``ftol * max(|f|, 1)``
            (scipy's ``ftol``): with ``f`` summed from float32 terms, steps below its round-off
            would otherwise be accepted on noise forever.
        max_iter: iterations.
        history: curvature pairs kept.
        preconditioner: see ``PreconditionerFactory``.
        progress: called with the number of problems that just finished, whenever some do (the
            calls add up to ``len(x0)``; for a progress bar).

    Returns:
        ``(x [P, D], n_iter [P], converged)``: the iterations each problem ran (scipy's ``nit``);
        a problem whose backtracking line search cannot decrease ``f`` (float32 round-off near the
        optimum) counts as converged, like scipy.
    """
    out = x0.clone()
    rows = torch.arange(len(x0), device=x0.device)
    n_iter = torch.zeros_like(rows)
    x = x0.clone()
    f, g, h = fg(x, rows)
    live = _largest(g) > tol
    # curvature pairs of the live problems: slots of S, Y [history, B, D] and RHO [history, B],
    # `order` lists the filled slots oldest first (a pair with rho = 0 is skipped by the recursion)
    S = g.new_zeros(history, *x.shape)
    Y, RHO = torch.zeros_like(S), g.new_zeros(history, len(x))
    order: list[int] = []
    M: Preconditioner | None = None
    pre = torch.zeros_like(live)  # on the preconditioned L-BFGS
    pre_any = pre_all = False  # (pre.any(), pre.all(): kept in Python, each test is a device sync)
    shown = torch.zeros_like(live)  # chosen before their first step, or shown its failed trial

    def precondition(v: torch.Tensor, which: torch.Tensor | None = None) -> torch.Tensor:
        """``M v`` on the preconditioned problems (or on ``which`` of them), ``v`` elsewhere."""
        if which is None and not pre_any:
            return v
        if which is None and pre_all:
            return M(v, rows, h)
        idx = (pre if which is None else which).nonzero().flatten()
        return v.index_copy(0, idx, M(v.index_select(0, idx), rows.index_select(0, idx), h.index_select(0, idx)))

    def choose(s: torch.Tensor, y: torch.Tensor | None, candidates: torch.Tensor) -> torch.Tensor:
        """Show the candidates' step to the factory; the newly preconditioned problems [B] bool."""
        nonlocal M
        idx = candidates.nonzero().flatten()
        new = torch.zeros_like(candidates)
        if len(idx):
            chosen = preconditioner(s.index_select(0, idx), None if y is None else y.index_select(0, idx),
                                    rows.index_select(0, idx))
            if chosen is not None:
                M = chosen[0]
                new[idx] = chosen[1]
        return new

    it = 0
    while it < max_iter:
        if not bool(live.all()):  # drop the finished problems
            done = (~live).nonzero().flatten()
            if progress is not None:
                progress(len(done))
            out.index_copy_(0, rows.index_select(0, done), x.index_select(0, done))
            n_iter.index_fill_(0, rows.index_select(0, done), it)
            keep = live.nonzero().flatten()
            x, f, g, h, rows, pre, shown = (t.index_select(0, keep) for t in (x, f, g, h, rows, pre, shown))
            S, Y, RHO = S.index_select(1, keep), Y.index_select(1, keep), RHO.index_select(1, keep)
            if pre_any:
                pre_any, pre_all = bool(pre.any()), bool(pre.all())
        if not len(rows):
            break
        it += 1
        if preconditioner is not None and it == 1:  # those the factory can tell need M before a step
            pre = shown = choose(-g, None, torch.ones_like(shown))
            pre_any = bool(pre.any())
            pre_all = pre_any and bool(pre.all())
        if preconditioner is not None and it == 2:  # problems whose first step was accepted
            new = choose(S[order[-1]], Y[order[-1]], ~shown)
            if bool(new.any()):
                pre = pre | new
                pre_any, pre_all = True, bool(pre.all())
                RHO.masked_fill_(new, 0.0)  # their history restarts
        q, alphas = g.clone(), []
        Ss, Ys, Rs = S.unbind(), Y.unbind(), RHO.unbind()  # views: indexing per pair is an op each
        for i in reversed(order):
            a = _dot(Ss[i], q).mul_(Rs[i])
            q.addcmul_(a.unsqueeze(1), Ys[i], value=-1.0)
            alphas.append(a)
        # initial matrix: gamma * I with scipy's scaling (first step: unit length, as L-BFGS-B),
        # or M itself, already to scale
        if pre_all:
            gamma = None  # (made if a direction turns uphill)
        elif order:
            last = order[-1]
            gamma = torch.where(RHO[last] > 0, 1.0 / (RHO[last] * _dot(Y[last], Y[last])).clamp_min(1e-300),
                                1.0 / g.norm(dim=1).clamp_min(1e-300)).masked_fill_(pre, 1.0)
        else:
            gamma = (1.0 / g.norm(dim=1).clamp_min(1e-300)).masked_fill_(pre, 1.0)
        r = precondition(q)
        if not pre_all:
            r.mul_(gamma[:, None])
        for i, a in zip(order, reversed(alphas)):  # r += s_i (a_i - rho_i y_i^T r)
            r.addcmul_(Ss[i], torch.addcmul(a, Rs[i], _dot(Ys[i], r), value=-1.0).unsqueeze(1))
        step = r.neg_()
        slope = _dot(g, step)
        uphill = slope >= 0
        if bool(uphill.any()):  # keep descent: (preconditioned) steepest descent where the direction is not
            gamma = g.new_ones(len(g)) if gamma is None else gamma
            step = torch.where(uphill[:, None], -gamma[:, None] * precondition(g), step)
            slope = _dot(g, step)
        t, pending = None, None  # t: step lengths once any differs from 1
        for k in range(40):  # backtracking (Armijo) per problem, to the minimum of a quadratic fit
            if t is None:  # every problem, unit steps
                fn, gn, hn = fg(x + step, rows)
                ok = fn <= torch.add(f, slope, alpha=ARMIJO)
            else:  # only the problems whose step is not yet accepted
                idx = pending.nonzero().flatten()
                fe, ge, he = fg(torch.addcmul(x, t[:, None], step).index_select(0, idx), rows.index_select(0, idx))
                fn, gn, hn = fn.index_copy(0, idx, fe), gn.index_copy(0, idx, ge), hn.index_copy(0, idx, he)
                ok = fn <= f + ARMIJO * t * slope
            all_ok = bool(ok.all())
            if all_ok:
                break
            if t is None:
                t = torch.ones_like(slope)
            fit = -slope * t * t / (2 * (fn - f - slope * t)).clamp_min(1e-300)
            t = torch.where(ok, t, torch.minimum(torch.maximum(fit.to(t.dtype), 0.1 * t), 0.5 * t))
            if preconditioner is not None and it == 1 and k == 0:  # unit first steps that failed
                failed = ~ok & ~shown
                shown = shown | failed
                new = choose(step, gn - g, failed)
                if bool(new.any()):
                    pre = pre | new
                    pre_any, pre_all = True, bool(pre.all())
                    step = torch.where(new[:, None], -precondition(g, new), step)  # retry with M's own step
                    slope = _dot(g, step)
                    t = t.masked_fill(new, 1.0)
            pending = ~ok
        slot = order.pop(0) if len(order) == history else len(order)
        order.append(slot)
        s_new = S[slot].copy_(step) if t is None else torch.mul(step, t[:, None], out=S[slot])
        y_new = torch.sub(gn, g, out=Y[slot])
        if not all_ok:  # a problem whose line search failed keeps its point and finishes
            s_new.mul_(ok[:, None])
            y_new.mul_(ok[:, None])
            fn, gn, hn = torch.where(ok, fn, f), torch.where(ok[:, None], gn, g), torch.where(ok, hn, h)
        sy = _dot(s_new, y_new)
        torch.reciprocal(torch.where(sy > 1e-12, sy, torch.inf), out=RHO[slot])  # 0: a pair without curvature, skipped
        x.add_(s_new)
        f_old, f, g, h = f, fn, gn, hn
        # (a failed line search kept f, so its problem stops here)
        live = (_largest(g) > tol) & (f_old - f > ftol * f_old.abs().clamp_min(1.0))
    out.index_copy_(0, rows, x)
    n_iter.index_fill_(0, rows, it)
    if progress is not None and len(rows):  # still held at max_iter (unconverged, or finished on the last step)
        progress(len(rows))
    return out, n_iter, not bool(live.any())
