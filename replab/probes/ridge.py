"""Ridge regression probes for numeric targets (Gurnee & Tegmark's space and time probes).

Gurnee & Tegmark fit ``Ridge(alpha=d_model)`` on raw activations against targets standardised
with the training rows' mean and std (wesg52/world-models ``probe_experiment.py``). For ridge
that standardisation only rescales the solution, so ``coef_`` is reported in target units and
equals ``sklearn.linear_model.Ridge(alpha).fit(X, y).coef_``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin

from replab.errors import DataError
from replab.probes.base import Folds, Probe, as_features, as_values
from replab.probes.folds import center, fold_grams


def ridge_solve(gram: torch.Tensor, sums: torch.Tensor, n: int, xty: torch.Tensor, ysum: torch.Tensor,
                alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Ridge weights from sufficient statistics of the training rows.

    Args:
        gram: ``[d, d]`` ``X^T X``; sums: ``[d]`` column sums of X; n: rows.
        xty: ``[d, T]`` ``X^T Y`` for T targets; ysum: ``[T]`` target sums.
        alpha: L2 strength (intercept unpenalised).

    Returns:
        ``coef [d, T]`` and ``intercept [T]``.
    """
    mx, my = sums / n, ysum / n
    gc = gram - n * torch.outer(mx, mx)
    xy = xty - n * torch.outer(mx, my)
    gc.diagonal().add_(alpha)
    coef = torch.linalg.solve(gc, xy)
    return coef, my - mx @ coef


def r2(y: np.ndarray, pred: np.ndarray) -> float:
    """Coefficient of determination (``sklearn.metrics.r2_score``)."""
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - float(np.sum((y - pred) ** 2)) / ss_tot if ss_tot > 0 else float("nan")


class RidgeProbe(Probe, RegressorMixin, BaseEstimator):
    """Linear regression with an L2 penalty, scored by R^2 (a scikit-learn regressor).

    Args:
        alpha: L2 strength (>= 0); ``None`` uses ``d_model`` (the activation width), as Gurnee & Tegmark.
    """

    kind = "ridge"
    task = "regression"
    metric = "r2"

    def __init__(self, alpha: float | None = None) -> None:
        self.alpha = alpha

    def _alpha(self, d: int) -> float:
        if self.alpha is None:
            return float(d)
        if not (np.isscalar(self.alpha) and float(self.alpha) >= 0):
            raise DataError(f"alpha must be a non-negative number or None, got {self.alpha!r}.")
        return float(self.alpha)

    def fit(self, X, y, *, hook: str | None = None, position: str | None = None,
            model: str | None = None) -> "RidgeProbe":
        """Fit on ``X [n, d]`` and numeric targets ``y [n]``."""
        Xt = as_features(X)
        n, d = Xt.shape
        alpha = self._alpha(d)
        yv = as_values(y, n)
        Xc, x_mean = center(Xt)
        y_mean, y_std = yv.mean(), yv.std()
        ys = torch.from_numpy((yv - y_mean) / y_std).to(Xc.device)[:, None]
        coef, _ = ridge_solve(Xc.T @ Xc, Xc.sum(0), n, Xc.T @ ys, ys.sum(0), alpha)
        self.coef_ = (coef[:, 0] * y_std).cpu().numpy()
        self.intercept_ = float(y_mean - x_mean.cpu().numpy() @ self.coef_)
        self.alpha_ = alpha
        self.d_ = d
        self._provenance(hook, position, model)
        return self

    def predict(self, X) -> np.ndarray:
        Xt = self._features(X).to(torch.float64)
        return (Xt @ torch.from_numpy(self.coef_).to(Xt.device)).cpu().numpy() + self.intercept_

    def cross_validate(self, X: torch.Tensor, targets: Mapping[str, np.ndarray], folds: Folds, *,
                       refit=None) -> dict[str, np.ndarray]:
        """Test R^2 per fold for each target (one Gram for all folds and targets); ``refit`` fits ``self``."""
        names = list(targets)
        Xc, _ = center(X)
        Y = torch.from_numpy(np.stack([np.asarray(targets[t], dtype=np.float64) for t in names], 1)).to(Xc.device)
        xty_full, ysum_full = Xc.T @ Y, Y.sum(0)
        alpha = self._alpha(X.shape[1])
        scores = np.zeros((len(names), len(folds)))
        for k, ((_, te), (gram, sums, n_tr)) in enumerate(zip(folds, fold_grams(Xc, folds))):
            te_t = torch.as_tensor(te, device=Xc.device)
            Xte, Yte = Xc[te_t], Y[te_t]
            coef, intercept = ridge_solve(gram, sums, n_tr, xty_full - Xte.T @ Yte, ysum_full - Yte.sum(0), alpha)
            pred = (Xte @ coef + intercept).cpu().numpy()
            Yn = Yte.cpu().numpy()
            scores[:, k] = [r2(Yn[:, j], pred[:, j]) for j in range(len(names))]
        if refit is not None:
            self.fit(X, refit)
        return {t: scores[j] for j, t in enumerate(names)}

    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return {"coef": self.coef_}, {"intercept": self.intercept_, "alpha": self.alpha_}

    def _restore(self, tensors, fitted) -> None:
        self.coef_ = tensors["coef"].astype(np.float64)
        self.intercept_ = float(fitted["intercept"])
        self.alpha_ = float(fitted["alpha"])
