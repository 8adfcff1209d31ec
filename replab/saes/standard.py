"""Standard (ReLU) SAE: L1 penalty on activations weighted by decoder row norms, with L1 warm-up."""

from __future__ import annotations


import torch

from replab.saes.base import EncoderSAE, TrainContext
from replab.saes.config import StandardConfig
from replab.saes.registry import register


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
