"""Standard (ReLU) SAE: L1 penalty on activations weighted by decoder row norms, with L1 warm-up."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from replab.errors import DataError
from replab.saes.base import EncoderSAE, SAEConfig, TrainContext
from replab.saes.registry import register


@dataclass(frozen=True)
class StandardConfig(SAEConfig):
    """Standard SAE settings.

    Attributes:
        l1_coefficient: weight of ``sum_i f_i ||W_dec[i]||`` (per token, batch mean).
        l1_warm_up_steps: steps over which the L1 weight ramps from 0 (``None``: 5% of the run).
    """

    l1_coefficient: float = 5.0
    l1_warm_up_steps: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.l1_coefficient < 0:
            raise DataError(f"l1_coefficient must be >= 0, got {self.l1_coefficient}.")


@register
class StandardSAE(EncoderSAE):
    """``f = ReLU((x - b_dec) W_enc + b_enc)``; decoder norms are free and enter the penalty."""

    architecture = "standard"
    config_class = StandardConfig
    unit_norm_decoder = False
    decoder_init_norm = 0.1  # Anthropic's April 2024 update, SAELens default
    cfg: StandardConfig

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        return torch.relu(pre)

    def aux_losses(self, x, x_hat, acts, pre, ctx: TrainContext) -> dict[str, torch.Tensor]:
        l1 = (acts * self.W_dec.norm(dim=-1)).sum(-1).mean()
        return {"l1": self.cfg.l1_coefficient * ctx.warm_up(self.cfg.l1_warm_up_steps) * l1}
