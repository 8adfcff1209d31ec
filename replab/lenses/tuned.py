"""The tuned lens (Belrose et al. 2023; AlignmentResearch/tuned-lens): a learned affine translator per layer.

``transform(h, l) = h + A_l h + b_l`` with ``A_l``, ``b_l`` initialised to zero, so an untrained
tuned lens is the logit lens and weight decay pulls it back toward it. Trained (``replab.lenses.train``)
to minimise KL(final-layer distribution || lens distribution) at every position.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from replab.lenses.base import Lens


@dataclass(frozen=True)
class TunedLensConfig:
    """``bias``: whether translators have ``b_l`` (tuned-lens default True)."""

    bias: bool = True


class TunedLens(Lens):
    """One ``d_model x d_model`` affine translator for each layer ``0..n_layers-1``."""

    kind = "tuned"
    Config = TunedLensConfig

    def __init__(self, model, config: TunedLensConfig | None = None):
        super().__init__(model, config or TunedLensConfig())
        d = int(model.cfg.d_model)
        p = next(model.parameters())
        self.translators = torch.nn.ModuleList(
            torch.nn.Linear(d, d, bias=self.config.bias, device=p.device, dtype=torch.float32)
            for _ in range(self.n_layers))
        for t in self.translators:
            torch.nn.init.zeros_(t.weight)
            if t.bias is not None:
                torch.nn.init.zeros_(t.bias)

    def transform(self, h: torch.Tensor, layer: int) -> torch.Tensor:
        """``[..., d_model]`` -> ``h + A_l h + b_l`` (the last hidden state passes unchanged)."""
        self.check_layer(layer)
        if layer == self.n_layers:
            return h
        h = h.float()
        return h + self.translators[layer](h)
