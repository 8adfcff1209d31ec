"""TopK SAE (Gao et al. 2024): keep the k largest pre-activations; AuxK revives dead latents."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from replab.errors import DataError
from replab.saes.base import EncoderSAE, SAEConfig, TrainContext
from replab.saes.registry import register


@dataclass(frozen=True)
class TopKConfig(SAEConfig):
    """TopK settings.

    Attributes:
        k: latents kept per token.
        aux_k: dead latents used by the AuxK loss (``None``: ``d_in // 2``, as SAELens/sparsify).
        aux_coefficient: AuxK weight (1/32, OpenAI and sparsify).
    """

    k: int = 32
    aux_k: int | None = None
    aux_coefficient: float = 1 / 32

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= int(self.k) <= self.d_sae:
            raise DataError(f"k must be between 1 and d_sae={self.d_sae}, got {self.k}.")
        if self.aux_k is not None and self.aux_k < 1:
            raise DataError(f"aux_k must be >= 1, got {self.aux_k}.")


def topk_relu(pre: torch.Tensor, k: int) -> torch.Tensor:
    """Zero all but the ``k`` largest entries of the last dimension, ReLU the kept ones."""
    values, indices = pre.topk(k, dim=-1, sorted=False)
    return torch.zeros_like(pre).scatter(-1, indices, values.relu())


@register
class TopKSAE(EncoderSAE):
    """``f = ReLU(TopK_k((x - b_dec) W_enc + b_enc))`` with unit-norm decoder rows."""

    architecture = "topk"
    config_class = TopKConfig
    cfg: TopKConfig

    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        return topk_relu(pre, int(self.cfg.k))

    def aux_losses(self, x, x_hat, acts, pre, ctx: TrainContext) -> dict[str, torch.Tensor]:
        """AuxK: the top ``aux_k`` dead latents reconstruct the residual ``x - x_hat``."""
        dead = ctx.dead_mask
        n_dead = int(dead.sum()) if dead is not None else 0
        if n_dead == 0:
            return {"auxk": x_hat.new_zeros(())}
        aux_k = self.cfg.aux_k or max(1, self.d_in // 2)
        scale = min(n_dead / aux_k, 1.0)
        masked = torch.where(dead[None, :], pre, torch.full_like(pre, -torch.inf))
        aux_acts = topk_relu(masked, min(aux_k, n_dead))
        residual = (x - x_hat).detach()
        aux = (aux_acts @ self.W_dec - residual).pow(2).sum(-1).mean()
        return {"auxk": self.cfg.aux_coefficient * scale * aux}

    @classmethod
    def from_saelens(cls, cfg: Mapping[str, Any], tensors: Mapping[str, torch.Tensor], source: str = ""):
        """SAELens TopK files with ``rescale_acts_by_decoder_norm`` get the norms folded in (same outputs)."""
        sae = super().from_saelens(cfg, tensors, source)
        if cfg.get("rescale_acts_by_decoder_norm"):
            with torch.no_grad():
                norms = sae.W_dec.norm(dim=-1)
                sae.W_enc *= norms
                sae.b_enc *= norms
                sae.W_dec /= norms[:, None]
        return sae
