"""L2-regularised logistic regression probes, many problems per pass over the data.

``fit_logistic`` solves P independent problems (folds x tasks, or MDL blocks) that share the
rows ``X`` but differ in labels and in which rows train them. Each problem is scikit-learn's
``StandardScaler`` + ``LogisticRegression(lbfgs)`` objective -- features standardised with
its own training rows' mean and std, mean log-loss + ``||w||^2 / (2 C n_train)``, intercept
unpenalised, binary = one sigmoid, multiclass = multinomial softmax -- but standardisation is
folded into the weights instead of copying ``X``, and the P problems are stacked into one
L-BFGS run so every iteration is one ``[n, d] @ [d, P]`` matrix product instead of P
matrix-vector products. The objective is separable, so the joint minimum is each problem's
minimum, and stopping when the largest gradient entry is below ``tol`` is scikit-learn's
criterion applied to every problem at once. On a CUDA tensor the products run on the GPU.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from replab.errors import DataError
from replab.probes.base import Folds, Probe, as_features, encode_labels, unit


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
        X: ``[n, d]`` float32 activations (CPU or CUDA).
        labels: ``[n, P]`` class index (``0..n_classes-1``) of each row for each problem.
        train: ``[n, P]`` bool, the rows each problem trains on (at least one per problem).
        n_classes: K; K = 2 fits one sigmoid per problem, K > 2 a softmax over K.
        C: inverse regularisation strength (scikit-learn's ``C``).
        tol: stop when every gradient entry is below ``tol`` (scikit-learn's ``tol``).
        max_iter: L-BFGS iterations.

    Returns:
        ``coef [P, K', d]`` and ``intercept [P, K']`` (K' = 1 for binary) in the original,
        unstandardised coordinates: ``logits = X @ coef[p].T + intercept[p]``.
    """
    from scipy.optimize import minimize

    n, d = X.shape
    P = labels.shape[1]
    K = 1 if n_classes == 2 else n_classes
    dev = X.device
    dt = X.dtype
    mean0 = X.to(torch.float64).mean(0).to(dt)
    Xc = X - mean0  # centring first keeps the folded standardisation exact in float32
    M = train.to(dev, dt)
    cnt = M.sum(0)
    if bool((cnt == 0).any()):
        raise DataError("A logistic problem has no training rows; every fold needs training data.")
    mu = (M.T @ Xc) / cnt[:, None]  # [P, d]
    var = ((M.T @ Xc.square()) / cnt[:, None] - mu.square()).clamp_min(0)
    sd = var.sqrt()
    sd = torch.where(sd > 1e-6 * sd.max().clamp_min(1e-30), sd, torch.ones_like(sd))  # constant columns: scale 1
    labels = labels.to(dev)
    Y = (labels == 1).to(dt)[..., None] if K == 1 else torch.nn.functional.one_hot(labels, K).to(dt)
    inv_sd = (1.0 / sd).T[:, :, None]  # [d, P, 1]
    mu_k = mu[:, :, None]  # [P, d, 1]
    w_row = (M / cnt)[..., None]  # [n, P, 1]
    reg = (1.0 / (C * cnt))[None, :, None]  # [1, P, 1]
    n_w = d * P * K

    def unpack(theta: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        th = torch.from_numpy(theta).to(dev, dt)
        V = th[:n_w].view(d, P, K)
        b = th[n_w:].view(P, K)
        W = V * inv_sd  # weights on centred, unstandardised features
        c = b - (mu_k * W.permute(1, 0, 2)).sum(1)  # [P, K]
        return V, b, W, c

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        V, _, W, c = unpack(theta)
        Z = (Xc @ W.reshape(d, P * K)).view(n, P, K) + c
        if K == 1:
            loss_i = torch.nn.functional.softplus(Z) - Y * Z
            R = torch.sigmoid(Z) - Y
        else:
            loss_i = (torch.logsumexp(Z, -1, keepdim=True) - (Z * Y).sum(-1, keepdim=True))
            R = torch.softmax(Z, -1) - Y
        R = R * w_row
        loss = (loss_i * w_row).sum(dtype=torch.float64) + 0.5 * (V.square() * reg).sum(dtype=torch.float64)
        rs = R.sum(0)  # [P, K]
        G = (Xc.T @ R.reshape(n, P * K)).view(d, P, K)
        gV = (G - mu.T[:, :, None] * rs[None]) * inv_sd + V * reg
        grad = torch.cat([gV.reshape(-1), rs.reshape(-1)]).to(torch.float64).cpu().numpy()
        return float(loss), grad

    res = minimize(objective, np.zeros(n_w + P * K), jac=True, method="L-BFGS-B",
                   options={"maxiter": max_iter, "gtol": tol, "ftol": 64 * np.finfo(float).eps})
    if res.status == 1:
        warnings.warn(f"Logistic probe did not converge in {max_iter} iterations; raise max_iter or lower C.",
                      stacklevel=2)
    _, _, W, c = unpack(res.x)
    coef = W.permute(1, 2, 0)  # [P, K, d]
    intercept = c - (coef * mean0).sum(-1)
    return coef, intercept


def logistic_logits(X: torch.Tensor, coef: torch.Tensor, intercept: torch.Tensor) -> torch.Tensor:
    """``[n, P, K']`` logits of every problem on every row."""
    P, K, d = coef.shape
    return (X @ coef.reshape(P * K, d).T).view(X.shape[0], P, K) + intercept


def _predict_index(Z: torch.Tensor) -> torch.Tensor:
    return (Z[..., 0] > 0).long() if Z.shape[-1] == 1 else Z.argmax(-1)


class LogisticProbe(Probe):
    """Binary or multinomial logistic regression on standardised features (L2, L-BFGS).

    Matches ``make_pipeline(StandardScaler(), LogisticRegression(C=C))``; the fitted
    ``coef_ [K', d]`` and ``intercept_ [K']`` are in the original activation coordinates.

    Args:
        C: inverse L2 strength on the standardised weights.
        tol: gradient tolerance (as scikit-learn).
        max_iter: L-BFGS iterations.
        hook, position, model: provenance recorded in saved files.
    """

    kind = "logistic"
    task = "classification"
    metric = "accuracy"

    def __init__(self, C: float = 1.0, *, tol: float = 1e-4, max_iter: int = 1000, **provenance: Any) -> None:
        super().__init__(**provenance)
        if C <= 0:
            raise DataError(f"C must be positive, got {C}.")
        self.C, self.tol, self.max_iter = float(C), float(tol), int(max_iter)

    def params(self) -> dict[str, Any]:
        return {"C": self.C, "tol": self.tol, "max_iter": self.max_iter}

    def fit(self, X, y, *, hook: str | None = None, position: str | None = None, model: str | None = None) -> "LogisticProbe":
        """Fit on ``X [n, d]`` and class labels ``y [n]``."""
        Xt = as_features(X)
        classes, idx = encode_labels(y, Xt.shape[0])
        n = Xt.shape[0]
        coef, intercept = fit_logistic(Xt, torch.from_numpy(idx)[:, None], torch.ones(n, 1, dtype=torch.bool),
                                       len(classes), C=self.C, tol=self.tol, max_iter=self.max_iter)
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

    def score(self, X, y) -> float:
        """Accuracy."""
        pred = self.predict(X)
        truth = np.asarray(y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else y)
        if truth.shape != pred.shape:
            raise DataError(f"y has {truth.shape[0] if truth.ndim else 0} entries for {pred.shape[0]} rows of X.")
        return float(np.mean(pred == truth))

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

    def cross_validate(self, X: torch.Tensor, targets: Mapping[str, np.ndarray], folds: Folds) -> dict[str, np.ndarray]:
        """Test accuracy per fold for each target, all folds x targets in one joint fit."""
        n = X.shape[0]
        names = list(targets)
        classes = np.unique(np.concatenate([np.asarray(targets[t]) for t in names]))
        if len(classes) < 2:
            raise DataError("The labels have a single class; a classifier needs at least two.")
        idx = {t: np.searchsorted(classes, np.asarray(targets[t])) for t in names}
        F = len(folds)
        labels = torch.from_numpy(np.stack([idx[t] for t in names for _ in range(F)], 1))
        train = torch.zeros(n, len(names) * F, dtype=torch.bool)
        for j in range(len(names)):
            for k, (tr, _) in enumerate(folds):
                train[torch.as_tensor(tr), j * F + k] = True
        coef, intercept = fit_logistic(X, labels, train, len(classes), C=self.C, tol=self.tol, max_iter=self.max_iter)
        correct = (_predict_index(logistic_logits(X, coef, intercept)).cpu() == labels).numpy()
        return {t: np.array([correct[te, j * F + k].mean() for k, (_, te) in enumerate(folds)])
                for j, t in enumerate(names)}

    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return {"coef": self.coef_, "intercept": self.intercept_}, {"classes": self.classes_.tolist()}

    def _restore(self, tensors, fitted) -> None:
        self.coef_ = tensors["coef"]
        self.intercept_ = tensors["intercept"]
        self.classes_ = np.asarray(fitted["classes"])
