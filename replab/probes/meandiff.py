"""Mass-mean probes (Marks & Tegmark, geometry-of-truth ``probes.py::MMProbe``).

``theta = mu_pos - mu_neg``; the iid variant uses ``pinv(Sigma) @ theta`` with ``Sigma`` the
pooled within-class covariance (both classes centred on their own means, divided by the
number of rows). Deviations, documented in docs/probes.md: the pseudo-inverse cut-off is
relative (``rcond`` times the largest eigenvalue, numpy's convention) rather than the
reference's absolute ``atol=1e-3``, so it does not depend on the activations' scale; and the
decision threshold is the midpoint of the class means (equal-prior LDA) rather than 0 on
data the reference centres beforehand.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin

from replab.errors import DataError
from replab.probes.base import Folds, Probe, as_features, encode_labels
from replab.probes.folds import center, fold_grams


def mass_mean(sum_pos: torch.Tensor, n_pos: int, sum_neg: torch.Tensor, n_neg: int, *,
              gram: torch.Tensor | None = None, rcond: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """Mass-mean weights and threshold from class sums (float64).

    Args:
        sum_pos, sum_neg: ``[d]`` sums of each class's rows; n_pos, n_neg: their counts.
        gram: ``[d, d]`` ``X^T X`` over both classes' rows for the iid variant, else ``None``.
        rcond: relative eigenvalue cut-off of the pseudo-inverse.

    Returns:
        ``w [d]`` (``theta``, or ``pinv(Sigma) theta``) and the threshold ``w . (mu_pos + mu_neg) / 2``.
    """
    mu_p, mu_n = sum_pos / n_pos, sum_neg / n_neg
    w = mu_p - mu_n
    if gram is not None:
        n = n_pos + n_neg
        cov = (gram - n_pos * torch.outer(mu_p, mu_p) - n_neg * torch.outer(mu_n, mu_n)) / n
        w = torch.linalg.pinv(cov, rtol=rcond, hermitian=True) @ w
    return w, w @ (mu_p + mu_n) / 2


class MeanDiffProbe(Probe, ClassifierMixin, BaseEstimator):
    """Binary classifier along the difference of class means.

    ``decision(x) = w . x - threshold``; positive means ``classes_[1]``. ``direction`` is ``w``
    normalised (``theta``, or ``pinv(Sigma) theta`` when iid); ``mean_diff_`` keeps ``theta`` itself
    (Marks & Tegmark intervene with ``theta``, also for the iid probe).

    Args:
        iid: use ``pinv(Sigma) @ theta`` (Sigma: pooled within-class covariance).
        rcond: relative cut-off for the pseudo-inverse (iid only).
    """

    kind = "meandiff"
    task = "classification"
    metric = "accuracy"
    variants = {"meandiff": {}, "meandiff-iid": {"iid": True}}

    def __init__(self, iid: bool = False, *, rcond: float = 1e-6) -> None:
        self.iid = iid
        self.rcond = rcond

    @property
    def name(self) -> str:
        return "meandiff-iid" if self.iid else "meandiff"

    def _check_params(self) -> None:
        if not (np.isscalar(self.rcond) and 0 <= float(self.rcond) < 1):
            raise DataError(f"rcond must be a number in [0, 1), got {self.rcond!r}.")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False  # binary by construction (two class means)
        return tags

    def fit(self, X, y, *, hook: str | None = None, position: str | None = None,
            model: str | None = None) -> "MeanDiffProbe":
        """Fit on ``X [n, d]`` and binary labels ``y [n]``."""
        self._check_params()
        Xt = as_features(X)
        classes, idx = encode_labels(y, Xt.shape[0])
        if len(classes) != 2:
            raise DataError(
                f"Only binary classification is supported. MeanDiffProbe needs exactly two classes, got "
                f"{len(classes)} ({', '.join(map(str, classes[:5]))}); use LogisticProbe for multiclass labels."
            )
        Xc, x_mean = center(Xt)
        pos = torch.from_numpy(idx == 1).to(Xc.device)
        (s_pos, n_pos), (s_neg, n_neg) = ((Xc[m].sum(0), int(m.sum())) for m in (pos, ~pos))
        w, thr = mass_mean(s_pos, n_pos, s_neg, n_neg, gram=Xc.T @ Xc if self.iid else None, rcond=float(self.rcond))
        self.classes_ = classes
        self.coef_ = w.cpu().numpy()
        self.threshold_ = float(thr + w @ x_mean)  # back to uncentred coordinates
        self.mean_diff_ = (s_pos / n_pos - s_neg / n_neg).cpu().numpy()
        self.d_ = Xt.shape[1]
        self._provenance(hook, position, model)
        return self

    def decision_function(self, X) -> np.ndarray:
        """``w . x - threshold`` ``[n]``."""
        Xt = self._features(X).to(torch.float64)
        return (Xt @ torch.from_numpy(self.coef_).to(Xt.device)).cpu().numpy() - self.threshold_

    def predict_proba(self, X) -> np.ndarray:
        """``sigmoid(decision)`` as ``[n, 2]`` (the reference's score; not calibrated)."""
        p = 1.0 / (1.0 + np.exp(-self.decision_function(X)))
        return np.stack([1 - p, p], 1)

    def predict(self, X) -> np.ndarray:
        positive = self.decision_function(X) > 0
        return self.classes_[positive.astype(int)]

    def cross_validate(self, X: torch.Tensor, targets: Mapping[str, np.ndarray], folds: Folds, *,
                       refit=None) -> dict[str, np.ndarray]:
        """Test accuracy per fold for each target (class sums by one matrix product, Grams shared);
        ``refit`` fits ``self`` on all rows."""
        self._check_params()
        names = list(targets)
        classes = np.unique(np.concatenate([np.asarray(targets[t]) for t in names]))
        if len(classes) != 2:
            raise DataError(f"MeanDiffProbe needs exactly two classes, got {len(classes)}; use the logistic probe.")
        Xc, _ = center(X)
        dev = Xc.device
        pos = torch.from_numpy(np.stack([np.asarray(targets[t]) == classes[1] for t in names], 1)).to(dev)  # [n, T]
        grams = fold_grams(Xc, folds) if self.iid else itertools.repeat(None)
        scores = np.zeros((len(names), len(folds)))
        for k, ((tr, te), stats) in enumerate(zip(folds, grams)):
            in_tr = torch.zeros(Xc.shape[0], 1, dtype=torch.bool, device=dev)
            in_tr[torch.as_tensor(tr, device=dev)] = True
            masks = torch.cat([in_tr & pos, in_tr & ~pos], 1).to(torch.float64)  # [n, 2T]
            sums, counts = Xc.T @ masks, masks.sum(0).long().tolist()
            Xte, truth = Xc[torch.as_tensor(te, device=dev)], pos[torch.as_tensor(te, device=dev)]
            T = len(names)
            for j in range(T):
                n_p, n_n = counts[j], counts[T + j]
                if n_p == 0 or n_n == 0:  # a baseline fold with one class: predict that class
                    pred = torch.full((len(te),), n_p > 0, device=dev)
                else:
                    w, thr = mass_mean(sums[:, j], n_p, sums[:, T + j], n_n,
                                       gram=None if stats is None else stats[0], rcond=float(self.rcond))
                    pred = Xte @ w > thr
                scores[j, k] = float((pred == truth[:, j]).double().mean())
        if refit is not None:
            self.fit(X, refit)
        return {t: scores[j] for j, t in enumerate(names)}

    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return ({"coef": self.coef_, "mean_diff": self.mean_diff_},
                {"classes": self.classes_.tolist(), "threshold": self.threshold_})

    def _restore(self, tensors, fitted) -> None:
        self.coef_ = tensors["coef"].astype(np.float64)
        self.mean_diff_ = tensors["mean_diff"].astype(np.float64)
        self.classes_ = np.asarray(fitted["classes"])
        self.threshold_ = float(fitted["threshold"])
