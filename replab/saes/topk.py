"""TopK SAE (Gao et al. 2024): keep the k largest pre-activations; AuxK revives dead latents."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from replab.saes.base import EncoderSAE, TrainContext, TrainOutput
from replab.saes.config import TopKConfig
from replab.saes.registry import register
from replab.saes.sparse import Selection, gather_preacts, sparse_decode


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

    def select(self, pre: torch.Tensor) -> Selection:
        """Training-time choice of the kept latents from detached ``[batch, d_sae]`` pre-activations."""
        return Selection.per_row(pre.topk(int(self.cfg.k), dim=-1, sorted=False).indices, self.d_sae)

    def training_loss(self, x: torch.Tensor, ctx: TrainContext) -> TrainOutput:
        """MSE plus AuxK, differentiating only the kept latents (``replab.saes.sparse``).

        Equal to the dense ``decode(activation(pre))`` loss and its gradients; one dense
        product (the encoder's) instead of six.
        """
        sae_in = self.sae_in(x)
        with torch.no_grad():
            pre = torch.addmm(self.b_enc, sae_in, self.W_enc)
        sel = self.select(pre)
        values = gather_preacts(sae_in, self.W_enc, self.b_enc, pre, sel).relu()
        x_hat = sparse_decode(values, self.W_dec, sel) + self.b_dec
        terms = {"mse": (x_hat - x).pow(2).sum(-1).mean()}
        dead = ctx.dead_mask
        n_dead = int(dead.sum()) if dead is not None else 0
        # always logged, 0 while no latent is dead, so the training log keeps one schema
        terms["auxk"] = self._auxk(sae_in, pre, dead, n_dead, (x - x_hat).detach()) if n_dead else x_hat.new_zeros(())
        return TrainOutput.from_terms(terms, x_hat, (values.detach() > 0).sum() / x.shape[0],
                                      sel.fired(values.detach()))

    def _auxk(self, sae_in, pre, dead, n_dead: int, residual) -> torch.Tensor:
        """AuxK: the top ``aux_k`` dead latents of each row reconstruct the residual ``x - x_hat``."""
        aux_k = self.cfg.aux_k or max(1, self.d_in // 2)
        dead_idx = dead.nonzero().squeeze(1)
        top = pre.index_select(1, dead_idx).topk(min(aux_k, n_dead), dim=-1, sorted=False).indices
        sel = Selection.per_row(dead_idx[top], self.d_sae)
        values = gather_preacts(sae_in, self.W_enc, self.b_enc, pre, sel).relu()
        aux = (sparse_decode(values, self.W_dec, sel) - residual).pow(2).sum(-1).mean()
        return self.cfg.aux_coefficient * min(n_dead / aux_k, 1.0) * aux

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
