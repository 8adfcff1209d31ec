"""JumpReLU SAE (Rajamanoharan et al. 2024): per-latent thresholds trained with straight-through estimators.

The forward pass is exact (``x * (x > threshold)``); the threshold gets a pseudo-gradient from a
rectangle kernel of width ``bandwidth`` around it, as in SAELens ``jumprelu_sae.py``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from replab.saes.base import EncoderSAE, TrainContext, parse_dtype
from replab.saes.config import JumpReLUConfig
from replab.saes.registry import register


def _rectangle(u: torch.Tensor) -> torch.Tensor:
    return ((u > -0.5) & (u < 0.5)).to(u.dtype)


class _JumpReLU(torch.autograd.Function):
    """``x * (x > t)``; d/dx passes where active, d/dt = -(t/eps) K((x-t)/eps)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, threshold: torch.Tensor, bandwidth: float) -> torch.Tensor:
        ctx.save_for_backward(x, threshold)
        ctx.bandwidth = bandwidth
        return x * (x > threshold).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):
        x, threshold = ctx.saved_tensors
        eps = ctx.bandwidth
        x_grad = (x > threshold).to(x.dtype) * grad
        t_grad = (-(threshold / eps) * _rectangle((x - threshold) / eps) * grad).sum(0)
        return x_grad, t_grad, None


class _Step(torch.autograd.Function):
    """``1[x > t]``; d/dt = -(1/eps) K((x-t)/eps), no gradient to x."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, threshold: torch.Tensor, bandwidth: float) -> torch.Tensor:
        ctx.save_for_backward(x, threshold)
        ctx.bandwidth = bandwidth
        return (x > threshold).to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):
        x, threshold = ctx.saved_tensors
        eps = ctx.bandwidth
        return None, (-(1.0 / eps) * _rectangle((x - threshold) / eps) * grad).sum(0), None


class ThresholdActivation:
    """Inference ``ReLU(pre) * (pre > threshold)`` and its input-scale folding (JumpReLU, BatchTopK)."""

    threshold: torch.Tensor

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        return pre.relu() * (pre > self.threshold.to(pre.dtype))

    @torch.no_grad()
    def fold_input_scale(self, scale: float) -> None:
        super().fold_input_scale(scale)
        self.threshold /= scale


@register
class JumpReLUSAE(ThresholdActivation, EncoderSAE):
    """``f = ReLU(pre) * (pre > threshold)`` with a learned ``threshold`` [d_sae]."""

    architecture = "jumprelu"
    config_class = JumpReLUConfig
    cfg: JumpReLUConfig

    def __init__(self, cfg: JumpReLUConfig) -> None:
        super().__init__(cfg)
        self.threshold = nn.Parameter(torch.zeros(cfg.d_sae, dtype=parse_dtype(cfg.dtype)))

    @torch.no_grad()
    def init_weights(self, generator: torch.Generator) -> None:
        super().init_weights(generator)
        self.threshold.fill_(self.cfg.init_threshold)

    def train_encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pre = self.pre_acts(x)
        return _JumpReLU.apply(pre, self.threshold, self.cfg.bandwidth), pre

    def aux_losses(self, x, x_hat, acts, pre, ctx: TrainContext) -> dict[str, torch.Tensor]:
        if self.cfg.sparsity_loss == "step":
            l0 = _Step.apply(pre, self.threshold, self.cfg.bandwidth).sum(-1).mean()
        else:
            l0 = torch.tanh(self.cfg.tanh_scale * acts * self.W_dec.norm(dim=-1)).sum(-1).mean()
        return {"l0": self.cfg.l0_coefficient * ctx.warm_up(self.cfg.l0_warm_up_steps) * l0}

    @torch.no_grad()
    def constrain_weights(self) -> None:
        super().constrain_weights()
        self.threshold.clamp_(min=0.0)

    @classmethod
    def from_saelens(cls, cfg, tensors, source: str = ""):
        """Also reads SAELens training checkpoints, which store ``log_threshold``."""
        tensors = dict(tensors)
        if "log_threshold" in tensors and "threshold" not in tensors:
            tensors["threshold"] = torch.exp(tensors.pop("log_threshold"))
        return super().from_saelens(cfg, tensors, source)
