"""BatchTopK SAE (Bussmann et al. 2024): top ``k * batch`` activations over the whole batch.

At inference a single threshold replaces the batch-level selection: an exponential moving
average of the smallest kept activation during training. Saved files are JumpReLU SAEs with
that threshold on every latent, as SAELens writes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from replab import distributed
from replab.saes.base import SAEConfig
from replab.saes.jumprelu import ThresholdActivation
from replab.saes.config import BatchTopKConfig
from replab.saes.registry import register
from replab.saes.sparse import Selection
from replab.saes.topk import TopKSAE


@register
class BatchTopKSAE(ThresholdActivation, TopKSAE):
    """Training: batch-level TopK. Inference: ``ReLU(pre) * (pre > threshold)``."""

    architecture = "batchtopk"
    config_class = BatchTopKConfig
    cfg: BatchTopKConfig

    def __init__(self, cfg: BatchTopKConfig) -> None:
        super().__init__(cfg)
        # float64 as in SAELens: the EMA of small values loses precision in float32
        self.register_buffer("threshold", torch.zeros((), dtype=torch.float64))

    def select(self, pre: torch.Tensor) -> Selection:
        """The ``k * batch`` largest ReLU'd pre-activations of the batch; updates the threshold EMA.

        Ties at the cut go to the earliest entries in row-major order, so the choice is determined
        (``topk`` alone picks tied entries arbitrarily; identical rows, e.g. every context's first
        token, tie). Under DDP the batch is the global one: each rank sends its ``k * global batch``
        largest values (the most it can contribute), the ``k * global batch``-th largest of them all is
        the cut, and ties are handed out in rank order (rank slices are consecutive rows), so the ranks
        together keep exactly what one process keeps. Zeros are never kept: they add nothing.
        """
        flat = pre.relu().flatten()
        want = round(self.cfg.k * int(distributed.all_reduce_sum(torch.tensor(pre.shape[0], device=pre.device))))
        candidates = distributed.all_gather_cat(flat.topk(min(flat.numel(), want), sorted=False).values)
        kept = candidates.topk(min(candidates.numel(), want), sorted=False).values
        self._update_threshold(kept)
        cut = kept.min() if kept.numel() else flat.new_tensor(float("inf"))  # k * batch rounds to 0: keep none
        if cut <= 0:
            return Selection.from_flat((flat > 0).nonzero().squeeze(1), tuple(pre.shape))
        above = (flat > cut).nonzero().squeeze(1)
        ties = (flat == cut).nonzero().squeeze(1)
        need = want - int(distributed.all_reduce_sum(torch.tensor(above.numel(), device=pre.device)))
        tie_counts = distributed.all_gather_cat(torch.tensor([ties.numel()], device=pre.device))
        take = need - int(tie_counts[: distributed.rank()].sum())  # the ties of earlier ranks come first
        return Selection.from_flat(torch.cat([above, ties[: max(0, take)]]), tuple(pre.shape))

    @torch.no_grad()
    def _update_threshold(self, kept: torch.Tensor) -> None:
        positive = kept[kept > 0]
        if positive.numel():
            rate = self.cfg.threshold_ema
            self.threshold.mul_(1 - rate).add_(rate * positive.min().double())

    def saelens_config(self) -> tuple[str, dict[str, Any]]:
        """Written as ``jumprelu`` with the base fields; ``k`` kept in metadata for the record."""
        fields = SAEConfig.to_dict(self.cfg)
        base = {k: fields[k] for k in SAEConfig.__dataclass_fields__}
        base["metadata"] = {**base["metadata"], "replab_trained_as": "batchtopk", "batchtopk_k": self.cfg.k}
        return "jumprelu", base

    def saelens_tensors(self) -> dict[str, torch.Tensor]:
        tensors = super().saelens_tensors()
        tensors["threshold"] = torch.full((self.d_sae,), float(tensors["threshold"]), dtype=self.W_dec.dtype)
        return tensors

    @classmethod
    def from_saelens(cls, cfg: Mapping[str, Any], tensors: Mapping[str, torch.Tensor], source: str = ""):
        """Reads SAELens *training* checkpoints, which store the scalar as ``topk_threshold``."""
        tensors = dict(tensors)
        if "topk_threshold" in tensors:
            tensors["threshold"] = tensors.pop("topk_threshold")
        tensors.setdefault("threshold", torch.zeros((), dtype=torch.float64))
        tensors["threshold"] = torch.as_tensor(tensors["threshold"]).reshape(())
        return super().from_saelens(cfg, tensors, source)
