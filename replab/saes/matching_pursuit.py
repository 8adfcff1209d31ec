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

from typing import Any

import torch

from replab.saes.base import SAE, TrainContext, TrainOutput
from replab.saes.config import MatchingPursuitConfig
from replab.saes.registry import register


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
        sae_in = self.sae_in(x)
        idx, values, _ = self._pursue(sae_in.reshape(-1, self.d_in), steps, threshold,
                                      self.cfg.stop_on_duplicate_support)
        return self._codes(idx, values).reshape(*sae_in.shape[:-1], self.d_sae)

    def training_loss(self, x: torch.Tensor, ctx: TrainContext) -> TrainOutput:
        """Exactly ``k`` pursuit steps for every sample (no early stopping), plain MSE.

        The reconstruction ``decode(codes)`` equals ``x`` minus the final pursuit residual, so
        the loss is the residual's squared norm: no dense ``[batch, d_sae]`` code matrix enters
        the graph, and gradients reach only the chosen atoms.
        """
        x = self.check_input(x)
        idx, values, residual = self._pursue(self.sae_in(x), self.cfg.k, 0.0, False)
        with torch.no_grad():
            active = self._codes(idx, values) > 0
        return TrainOutput.from_terms({"mse": residual.pow(2).sum(-1).mean()}, x - residual,
                                      active.sum(-1).float().mean(), active.any(0))

    def decode(self, acts: torch.Tensor) -> torch.Tensor:
        """``acts @ W_dec`` (+ ``b_dec`` when it was subtracted at the input, as in SAELens)."""
        out = acts @ self.W_dec
        return out + self.b_dec if self.cfg.apply_b_dec_to_input else out

    def _codes(self, idx: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """``[n, d_sae]`` codes from the pursuit's ``[n, steps]`` atom indices and values."""
        return values.new_zeros(idx.shape[0], self.d_sae).scatter_add_(1, idx, values)

    def _pursue(
        self, residual: torch.Tensor, steps: int, threshold: float, stop_on_repeat: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Greedy pursuit on ``[n, d_in]`` rows: ``(atom indices [n, t], values [n, t], residual [n, d_in])``
        after ``t <= steps`` steps; a sample that stopped early gets zero values afterwards."""
        W = self.W_dec
        idxs: list[torch.Tensor] = []
        vals: list[torch.Tensor] = []
        done = torch.zeros(residual.shape[0], dtype=torch.bool, device=residual.device)
        adaptive = stop_on_repeat or threshold > 0
        for _ in range(steps):
            with torch.no_grad():
                idx = (residual @ W.T).relu().argmax(dim=-1)  # [n]
            atoms = W[idx]  # [n, d_in]: only the chosen rows enter the graph
            values = (residual * atoms).sum(-1).relu()
            if adaptive:
                values = values * (~done).to(values.dtype)
                with torch.no_grad():
                    already = ((torch.stack(idxs, 1) == idx[:, None]) & (torch.stack(vals, 1) > 0)).any(1) \
                        if idxs else torch.zeros_like(done)
            idxs.append(idx)
            vals.append(values)
            residual = residual - values[:, None] * atoms
            if adaptive:
                with torch.no_grad():
                    if stop_on_repeat:
                        done |= already | (values == 0)
                    if threshold > 0:
                        done |= residual.norm(dim=-1) < threshold
                    if bool(done.all()):
                        break
        return torch.stack(idxs, 1), torch.stack(vals, 1), residual

    def saelens_config(self) -> tuple[str, dict[str, Any]]:
        arch, cfg = super().saelens_config()
        cfg["max_iterations"] = self.cfg.max_iterations or self.cfg.k
        return arch, cfg
