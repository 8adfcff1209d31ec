"""Attention lens (Sakarvadia et al., msakarvadia/AttentionLens): per head, a map from its output to vocabulary.

A head's output is its contribution to the residual stream, ``r_h = z_h @ W_O[h]`` (``attn.hook_z``
through its slice of ``W_O``); the heads' outputs plus ``b_O`` are ``hook_attn_out``. Two forms:

- ``"full"`` (the anchor): per head ``W_h [d_model, d_vocab]`` and ``b_h`` initialised to the
  unembedding; the layer's lens logits are ``sum_h r_h W_h + b_h``. ``H * (d_model + 1) * d_vocab``
  parameters per layer (GPT-2 small: 463M per layer).
- ``"translator"`` (cheap): per head a ``d_model x d_model`` translator ``T_h`` (identity at init) in
  front of the frozen unembedding: ``(sum_h r_h T_h) W_U + b``; ``H * d_model^2 + d_vocab`` per layer.

Both are trained with KL(model logits || summed lens logits), at the last position as in the anchor.
``layer`` is a block index here (the lens reads ``blocks.{layer}.attn.hook_z``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from replab.errors import DataError
from replab.lenses.base import Lens, unembedding

FORMS = ("full", "translator")


@dataclass(frozen=True)
class AttentionLensConfig:
    """``form``: ``"full"`` or ``"translator"``; ``blocks``: block indices with a lens (default all)."""

    form: str = "full"
    blocks: tuple[int, ...] | None = None

    def __post_init__(self):
        if self.form not in FORMS:
            raise DataError(f"Attention lens form must be one of {FORMS}; got {self.form!r}.")
        if self.blocks is not None:
            object.__setattr__(self, "blocks", tuple(int(b) for b in self.blocks))


class AttentionLens(Lens):
    """Per-head lenses of the attention outputs of some blocks."""

    kind = "attention"
    Config = AttentionLensConfig

    def __init__(self, model, config: AttentionLensConfig | None = None):
        super().__init__(model, config)
        self.blocks = list(self.config.blocks) if self.config.blocks is not None else list(range(self.n_layers))
        bad = [b for b in self.blocks if not 0 <= b < self.n_layers]
        if bad:
            raise DataError(f"Attention lens blocks {bad} do not exist; the model has blocks 0..{self.n_layers - 1}.")
        H, d = int(model.cfg.n_heads), int(model.cfg.d_model)
        W_U, b_U = unembedding(model)
        W_U = W_U.float()
        b_U = torch.zeros(W_U.shape[1], device=W_U.device) if b_U is None else b_U.float()
        if self.config.form == "full":
            self.W = torch.nn.ParameterList(torch.nn.Parameter(W_U.repeat(H, 1, 1).clone()) for _ in self.blocks)
            self.b = torch.nn.ParameterList(torch.nn.Parameter(b_U.repeat(H, 1).clone()) for _ in self.blocks)
        else:
            eye = torch.eye(d, device=W_U.device)
            self.W = torch.nn.ParameterList(torch.nn.Parameter(eye.repeat(H, 1, 1).clone()) for _ in self.blocks)
            self.b = torch.nn.ParameterList(torch.nn.Parameter(b_U.clone()) for _ in self.blocks)

    def layers(self) -> list[int]:
        return list(self.blocks)

    def input_hook(self, layer: int) -> str:
        self.check_layer(layer)
        return f"blocks.{layer}.attn.hook_z"

    def check_layer(self, layer: int) -> None:
        if layer not in self.blocks:
            raise DataError(f"This attention lens covers blocks {self.blocks}, not {layer}.")

    def head_outputs(self, z: torch.Tensor, layer: int) -> torch.Tensor:
        """``z`` ``[..., n_heads * d_head]`` (``hook_z``, flattened as the bridge gives it) -> ``r`` ``[..., n_heads, d_model]``."""
        W_O = self.model.W_O[layer].detach().float()  # [H, d_head, d_model]
        H, d_head = W_O.shape[:2]
        return torch.einsum("...hk,hkd->...hd", z.float().reshape(*z.shape[:-1], H, d_head), W_O)

    def decoder_inputs(self, z, layer):
        self.check_layer(layer)
        i = self.blocks.index(layer)
        r = self.head_outputs(z, layer)  # [n, H, d]
        if self.config.form == "full":
            W = self.W[i]  # [H, d, V]
            return r.reshape(r.shape[0], -1), W.reshape(-1, W.shape[-1]), self.b[i].sum(0)
        W_U, _ = unembedding(self.model)
        return torch.einsum("nhd,hde->ne", r, self.W[i]), W_U.float(), self.b[i]

    def head_logits(self, z: torch.Tensor, layer: int) -> torch.Tensor:
        """``[..., n_heads * d_head]`` -> each head's lens logits ``[..., n_heads, d_vocab]``."""
        self.check_layer(layer)
        i = self.blocks.index(layer)
        r = self.head_outputs(z, layer)
        if self.config.form == "full":
            return torch.einsum("...hd,hdv->...hv", r, self.W[i]) + self.b[i]
        W_U, _ = unembedding(self.model)
        H = r.shape[-2]
        return torch.einsum("...hd,hde->...he", r, self.W[i]) @ W_U.float() + self.b[i] / H
