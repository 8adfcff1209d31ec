"""Synthetic activations with planted features, to check that an SAE recovers them.

``flat``: random unit directions, each active independently (a few per sample).
``hierarchical``: parents with mutually exclusive children, as in the MP-SAE paper's concept
tree (Costa et al. 2025, repo mpsae/MP-SAE ``toy_model.py`` / ``tree.json``): an active parent
activates at most one of its children (one, uniformly chosen, with probability ``p_child``; 0.6
in ``tree.json``, where a fourth, unread child takes the remaining 0.4); a child's direction is ``cos * parent + sqrt(1 - cos^2) * u`` with the
``u`` orthonormal and orthogonal to every parent, so children are orthogonal once their
parent's component is removed ("conditionally orthogonal"). Magnitudes are
``1.5 + 0.25 * N(0, 1)`` as in that repo.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from replab.errors import DataError


@dataclass(frozen=True)
class Planted:
    """Samples and their ground truth.

    Attributes:
        x: ``[n, d]`` samples (``codes @ features``).
        features: ``[n_features, d]`` unit-norm true directions.
        codes: ``[n, n_features]`` true non-negative activations.
        parents: ``[n_features]`` parent feature index of each child, -1 for parents and flat features.
    """

    x: torch.Tensor
    features: torch.Tensor
    codes: torch.Tensor
    parents: torch.Tensor

    @property
    def l0(self) -> float:
        """Mean number of active true features per sample."""
        return float((self.codes > 0).sum(-1).float().mean())


def _magnitudes(shape, g: torch.Generator) -> torch.Tensor:
    return (1.5 + 0.25 * torch.randn(shape, generator=g)).clamp_min(0.1)


def flat(n: int, d: int = 32, n_features: int = 64, n_active: float = 3.0, *, seed: int = 0) -> Planted:
    """``n`` samples, each feature active with probability ``n_active / n_features``."""
    if not 0 < n_active <= n_features:
        raise DataError(f"n_active must be in (0, n_features={n_features}], got {n_active}.")
    g = torch.Generator().manual_seed(seed)
    features = F.normalize(torch.randn(n_features, d, generator=g), dim=-1)
    active = torch.rand(n, n_features, generator=g) < n_active / n_features
    codes = active * _magnitudes((n, n_features), g)
    return Planted(codes @ features, features, codes, torch.full((n_features,), -1))


def hierarchical(
    n: int, d: int = 64, n_parents: int = 8, n_children: int = 4, p_parent: float = 0.25, p_child: float = 0.6,
    child_cos: float = 0.5, *, seed: int = 0,
) -> Planted:
    """Two-level tree: parents fire independently (``p_parent``); an active parent fires one of
    its children with probability ``p_child`` (never two).

    Needs ``d >= n_parents * (1 + n_children)`` so all parent and offset directions are orthonormal.
    """
    if d < n_parents * (1 + n_children):
        raise DataError(f"hierarchical needs d >= n_parents * (1 + n_children) = {n_parents * (1 + n_children)}, got d={d}.")
    g = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(torch.randn(d, d, generator=g))
    basis = basis.T  # rows orthonormal
    parents = basis[:n_parents]
    offsets = basis[n_parents : n_parents * (1 + n_children)].reshape(n_parents, n_children, d)
    children = child_cos * parents[:, None, :] + math.sqrt(1 - child_cos**2) * offsets
    features = torch.cat([parents, children.reshape(-1, d)])
    parent_of = torch.cat([torch.full((n_parents,), -1), torch.arange(n_parents).repeat_interleave(n_children)])

    parent_on = torch.rand(n, n_parents, generator=g) < p_parent
    child = torch.randint(n_children, (n, n_parents), generator=g)
    with_child = parent_on & (torch.rand(n, n_parents, generator=g) < p_child)
    child_on = F.one_hot(child, n_children).bool() & with_child[..., None]
    active = torch.cat([parent_on, child_on.reshape(n, -1)], dim=1)
    codes = active * _magnitudes(active.shape, g)
    return Planted(codes @ features, F.normalize(features, dim=-1), codes, parent_of)


def mean_max_cosine(true: torch.Tensor, learned: torch.Tensor) -> float:
    """Mean over true features of the best cosine similarity with any learned direction.

    Args:
        true: ``[m, d]`` ground-truth directions.
        learned: ``[k, d]`` learned directions (e.g. ``sae.W_dec``).
    """
    cos = F.normalize(true.float(), dim=-1) @ F.normalize(learned.detach().float(), dim=-1).T
    return float(cos.max(dim=1).values.mean())
