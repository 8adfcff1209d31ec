"""Matching-pursuit SAE (Costa et al. 2025, "From Flat to Hierarchical").

Encoding is greedy: repeatedly pick the unit-norm atom most aligned with the residual, add
the (ReLU'd) projection to its code (an atom may be picked again) and subtract it from the
residual. Training runs a fixed ``k`` steps; inference stops per sample once the residual
norm drops below ``residual_threshold`` or a step adds no new atom (adaptive sparsity), capped
at ``max_iterations``. Atom indices are chosen under ``no_grad`` and each value is recomputed
from the selected rows only, so backward never touches the whole dictionary (SAELens PR #601).
The dictionary is tied (``W_enc = W_dec.T``); files hold ``W_dec`` and ``b_dec`` only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from replab.errors import DataError
from replab.saes.base import SAE, SAEConfig
from replab.saes.registry import register


@dataclass(frozen=True)
class MatchingPursuitConfig(SAEConfig):
    """Matching-pursuit settings (SAELens names where SAELens has them).

    Attributes:
        k: pursuit steps during training (plain MSE loss, no sparsity penalty).
        residual_threshold: inference stops for a sample once ``||residual|| <`` this (raw
            activation units; 0 disables the test).
        max_iterations: inference step cap (``None``: ``k``). Written explicitly to ``cfg.json``
            because SAELens would otherwise default to ``d_in``.
        stop_on_duplicate_support: inference stops for a sample when a step adds no new atom.
    """

    k: int = 32
    residual_threshold: float = 0.0
    max_iterations: int | None = None
    stop_on_duplicate_support: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.k < 1:
            raise DataError(f"k (pursuit steps) must be >= 1, got {self.k}.")
        if self.max_iterations is not None and self.max_iterations < 1:
            raise DataError(f"max_iterations must be >= 1, got {self.max_iterations}.")
        if self.residual_threshold < 0:
            raise DataError(f"residual_threshold must be >= 0, got {self.residual_threshold}.")


@register
class MatchingPursuitSAE(SAE):
    """Greedy residual pursuit over the unit-norm rows of ``W_dec``."""

    architecture = "matching_pursuit"
    config_class = MatchingPursuitConfig
    cfg: MatchingPursuitConfig

    @property
    def W_enc(self) -> torch.Tensor:
        """``[d_in, d_sae]``: the tied encoder (the decoder's transpose)."""
        return self.W_dec.T

    def encode(
        self, x: torch.Tensor, *, residual_threshold: float | None = None, max_iterations: int | None = None
    ) -> torch.Tensor:
        """Adaptive-sparsity encoding ``[..., d_in] -> [..., d_sae]``.

        Args:
            x: activations.
            residual_threshold: per-sample stop when the residual norm falls below it
                (default: the config's).
            max_iterations: step cap (default: ``cfg.max_iterations`` or ``k``).
        """
        threshold = self.cfg.residual_threshold if residual_threshold is None else residual_threshold
        steps = max_iterations or self.cfg.max_iterations or self.cfg.k
        return self._pursue(self.sae_in(x), steps, threshold, self.cfg.stop_on_duplicate_support)

    def train_encode(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        """Exactly ``k`` pursuit steps for every sample (no early stopping)."""
        return self._pursue(self.sae_in(x), self.cfg.k, 0.0, False), None

    def decode(self, acts: torch.Tensor) -> torch.Tensor:
        """``acts @ W_dec`` (+ ``b_dec`` when it was subtracted at the input, as in SAELens)."""
        out = acts @ self.W_dec
        return out + self.b_dec if self.cfg.apply_b_dec_to_input else out

    def _pursue(self, residual: torch.Tensor, steps: int, threshold: float, stop_on_repeat: bool) -> torch.Tensor:
        shape = residual.shape
        residual = residual.reshape(-1, self.d_in)
        W = self.W_dec
        acts = residual.new_zeros(residual.shape[0], self.d_sae)
        done = torch.zeros(residual.shape[0], dtype=torch.bool, device=residual.device)
        adaptive = stop_on_repeat or threshold > 0
        for _ in range(steps):
            with torch.no_grad():
                idx = (residual @ W.T).relu().argmax(dim=-1, keepdim=True)  # [n, 1]
                already = acts.detach().gather(1, idx).squeeze(1) > 0
            atoms = W[idx.squeeze(1)]  # [n, d_in]: only the chosen rows enter the graph
            values = (residual * atoms).sum(-1).relu()
            if adaptive:
                values = values * (~done).to(values.dtype)
            acts = acts.scatter_add(1, idx, values[:, None])
            residual = residual - values[:, None] * atoms
            if adaptive:
                with torch.no_grad():
                    if stop_on_repeat:
                        done |= already | (values == 0)
                    if threshold > 0:
                        done |= residual.norm(dim=-1) < threshold
                    if bool(done.all()):
                        break
        return acts.reshape(*shape[:-1], self.d_sae)

    def saelens_config(self) -> tuple[str, dict[str, Any]]:
        arch, cfg = super().saelens_config()
        cfg["max_iterations"] = self.cfg.max_iterations or self.cfg.k
        return arch, cfg
