"""The SAE interface every architecture implements, plus the shared linear-encoder class.

Parameter names and shapes follow SAELens (``W_enc`` [d_in, d_sae], ``b_enc`` [d_sae],
``W_dec`` [d_sae, d_in], ``b_dec`` [d_in]) so a state dict *is* a ``sae_weights.safetensors``.
Training hooks (``training_loss``, and the ``train_encode`` / ``aux_losses`` it calls by
default, ``constrain_*``) live on the SAE so the trainer stays architecture-agnostic.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from replab import dtypes
from replab.errors import DataError
from replab.saes.config import SAEConfig


def parse_dtype(name: str | torch.dtype) -> torch.dtype:
    """An SAE parameter dtype (``"float32"``, ``"torch.bfloat16"``, ``torch.float16``...)."""
    return dtypes.parse_dtype(name, what="SAE dtype")


@dataclass(frozen=True)
class TrainContext:
    """What a training loss needs to know about the run.

    Attributes:
        step: 0-based optimiser step.
        total_steps: planned number of steps.
        dead_mask: ``[d_sae]`` bool, latents that have not fired for the dead window (or None).
    """

    step: int
    total_steps: int
    dead_mask: torch.Tensor | None = None

    def warm_up(self, steps: int | None, default_fraction: float = 0.05) -> float:
        """Linear 0 -> 1 ramp over ``steps`` (``None``: ``default_fraction`` of the run)."""
        n = round(default_fraction * self.total_steps) if steps is None else steps
        return 1.0 if n <= 0 else min(1.0, (self.step + 1) / n)


@dataclass
class TrainOutput:
    """One training forward pass: the loss to minimise and what the trainer logs.

    Attributes:
        loss: scalar to backpropagate (sum of ``terms``).
        x_hat: ``[batch, d_in]`` reconstruction.
        terms: named loss parts (detached), e.g. ``{"mse": ..., "l1": ...}``.
        l0: mean number of active latents per row (scalar tensor).
        fired: ``[d_sae]`` bool, latents active in some row of the batch (dead-latent tracking).
    """

    loss: torch.Tensor
    x_hat: torch.Tensor
    terms: dict[str, torch.Tensor]
    l0: torch.Tensor
    fired: torch.Tensor

    @classmethod
    def from_terms(cls, terms: dict[str, torch.Tensor], x_hat: torch.Tensor, l0: torch.Tensor,
                   fired: torch.Tensor) -> "TrainOutput":
        """The loss is the sum of ``terms``; the terms are kept detached for logging."""
        return cls(loss=torch.stack(list(terms.values())).sum(), x_hat=x_hat,
                   terms={k: v.detach() for k, v in terms.items()}, l0=l0, fired=fired)


class SAE(nn.Module, metaclass=abc.ABCMeta):
    """Base class: ``encode`` ``[..., d_in] -> [..., d_sae]``, ``decode`` back, ``forward`` both.

    Subclasses set ``architecture``, ``config_class`` and implement ``encode``; training
    behaviour is changed through ``train_encode`` / ``aux_losses``, or by overriding
    ``training_loss`` as a whole (TopK/BatchTopK: the sparse step; matching pursuit: the
    residual form), which then owns every loss term.
    """

    architecture: ClassVar[str]
    config_class: ClassVar[type[SAEConfig]] = SAEConfig
    unit_norm_decoder: ClassVar[bool] = True  # renormalise decoder rows and project their gradients
    decoder_init_norm: ClassVar[float] = 1.0

    def __init__(self, cfg: SAEConfig) -> None:
        super().__init__()
        if not isinstance(cfg, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, got {type(cfg).__name__}.")
        self.cfg = cfg
        dtype = parse_dtype(cfg.dtype)
        self.W_dec = nn.Parameter(torch.zeros(cfg.d_sae, cfg.d_in, dtype=dtype))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in, dtype=dtype))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(d_in={self.d_in}, d_sae={self.d_sae})"

    @property
    def d_in(self) -> int:
        return self.cfg.d_in

    @property
    def d_sae(self) -> int:
        return self.cfg.d_sae

    @torch.no_grad()
    def init_weights(self, generator: torch.Generator) -> None:
        """Random decoder rows of norm ``decoder_init_norm``, zero biases."""
        w = torch.randn(self.d_sae, self.d_in, generator=generator)
        self.W_dec.copy_(w / w.norm(dim=-1, keepdim=True) * self.decoder_init_norm)
        self.b_dec.zero_()

    # ---- inference ----------------------------------------------------------------------
    def check_input(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` as a tensor in the SAE's dtype/device, after checking its last dimension."""
        x = torch.as_tensor(x)
        if x.ndim == 0 or x.shape[-1] != self.d_in:
            raise DataError(
                f"SAE input has shape {tuple(x.shape)} but the SAE expects [..., {self.d_in}]; "
                "pass activations from the hook the SAE was trained on."
            )
        return x.to(device=self.W_dec.device, dtype=self.W_dec.dtype)

    def sae_in(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's input: ``x - b_dec`` when ``apply_b_dec_to_input``."""
        x = self.check_input(x)
        return x - self.b_dec if self.cfg.apply_b_dec_to_input else x

    @abc.abstractmethod
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., d_in]`` activations -> ``[..., d_sae]`` non-negative latent activations."""

    def decode(self, acts: torch.Tensor) -> torch.Tensor:
        """``[..., d_sae]`` -> ``[..., d_in]``: ``acts @ W_dec + b_dec``."""
        return acts @ self.W_dec + self.b_dec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction ``decode(encode(x))``, ``[..., d_in]``."""
        return self.decode(self.encode(x))

    # ---- training -----------------------------------------------------------------------
    def train_encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Training-time encoding: ``(acts, pre_activations or None)``."""
        return self.encode(x), None

    def aux_losses(
        self, x: torch.Tensor, x_hat: torch.Tensor, acts: torch.Tensor, pre: torch.Tensor | None, ctx: TrainContext
    ) -> dict[str, torch.Tensor]:
        """Architecture-specific loss terms added to the reconstruction MSE (weighted)."""
        return {}

    def training_loss(self, x: torch.Tensor, ctx: TrainContext) -> TrainOutput:
        """``sum ||x - x_hat||^2`` per row, averaged over the batch, plus ``aux_losses``."""
        acts, pre = self.train_encode(x)
        x_hat = self.decode(acts)
        terms = {"mse": (x_hat - x).pow(2).sum(-1).mean()}
        terms.update(self.aux_losses(x, x_hat, acts, pre, ctx))
        active = acts.detach() > 0
        return TrainOutput.from_terms(terms, x_hat, active.sum(-1).float().mean(), active.any(0))

    @torch.no_grad()
    def constrain_gradients(self) -> None:
        """Before the optimiser step: drop the gradient component parallel to each decoder row."""
        g = self.W_dec.grad
        if self.unit_norm_decoder and g is not None:
            w = self.W_dec
            g -= (g * w).sum(-1, keepdim=True) * w / w.pow(2).sum(-1, keepdim=True).clamp_min(1e-12)

    @torch.no_grad()
    def constrain_weights(self) -> None:
        """After the optimiser step: renormalise decoder rows to unit norm (where required)."""
        if self.unit_norm_decoder:
            self.W_dec /= self.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    @torch.no_grad()
    def fold_input_scale(self, scale: float) -> None:
        """Turn an SAE trained on ``scale * x`` into one that takes raw ``x`` (same reconstruction / scale).

        Biases and thresholds are divided by ``scale``; decoder directions are untouched, so
        latent activations come out in raw-activation units.
        """
        self.b_dec /= scale

    # ---- SAELens format -----------------------------------------------------------------
    def saelens_config(self) -> tuple[str, dict[str, Any]]:
        """``(architecture string, cfg fields)`` written to ``cfg.json``."""
        return self.architecture, self.cfg.to_dict()

    def saelens_tensors(self) -> dict[str, torch.Tensor]:
        """Tensors written to ``sae_weights.safetensors``."""
        return {k: v.detach().contiguous() for k, v in self.state_dict().items()}

    @classmethod
    def from_saelens(cls, cfg: Mapping[str, Any], tensors: Mapping[str, torch.Tensor], source: str = "") -> "SAE":
        """Build from a ``cfg.json`` dict and its tensors (unknown cfg keys are ignored)."""
        sae = cls(cls.config_class.from_dict(cfg))
        sae.load_tensors(tensors, source)
        return sae

    @torch.no_grad()
    def load_tensors(self, tensors: Mapping[str, torch.Tensor], source: str = "") -> None:
        """Copy named tensors into the state dict, checking names and shapes exactly.

        Raises:
            DataError: a tensor is missing, unexpected, or has the wrong shape.
        """
        where = f" in {source}" if source else ""
        state = self.state_dict()
        missing = sorted(set(state) - set(tensors))
        extra = sorted(set(tensors) - set(state))
        if missing or extra:
            raise DataError(
                f"{self.architecture} SAE weights{where} do not match: missing {missing or 'none'}, "
                f"unexpected {extra or 'none'}. Expected exactly {sorted(state)}."
            )
        for name, target in state.items():
            value = torch.as_tensor(tensors[name])
            if tuple(value.shape) != tuple(target.shape):
                raise DataError(
                    f"Tensor {name!r}{where} has shape {tuple(value.shape)}, expected {tuple(target.shape)} "
                    f"for d_in={self.d_in}, d_sae={self.d_sae}; cfg.json and the weights disagree."
                )
            target.copy_(value.to(target.dtype))

    def save(self, path: str | Path) -> Path:
        """Write ``cfg.json`` + ``sae_weights.safetensors`` (SAELens format) to directory ``path``."""
        from replab.saes.io import save

        return save(self, path)


class EncoderSAE(SAE):
    """An SAE with a linear encoder: ``encode(x) = activation((x - b_dec) @ W_enc + b_enc)``."""

    def __init__(self, cfg: SAEConfig) -> None:
        super().__init__(cfg)
        dtype = parse_dtype(cfg.dtype)
        self.W_enc = nn.Parameter(torch.zeros(cfg.d_in, cfg.d_sae, dtype=dtype))
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae, dtype=dtype))

    @torch.no_grad()
    def init_weights(self, generator: torch.Generator) -> None:
        """Decoder as in ``SAE``; encoder initialised to the decoder's transpose, ``b_enc`` zero."""
        super().init_weights(generator)
        self.W_enc.copy_(self.W_dec.T)
        self.b_enc.zero_()

    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., d_sae]`` pre-activations."""
        return self.sae_in(x) @ self.W_enc + self.b_enc

    @abc.abstractmethod
    def activation(self, pre: torch.Tensor) -> torch.Tensor:
        """Inference-time activation function applied to the pre-activations."""

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.pre_acts(x))

    def train_encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pre = self.pre_acts(x)
        return self.activation(pre), pre

    @torch.no_grad()
    def fold_input_scale(self, scale: float) -> None:
        super().fold_input_scale(scale)
        self.b_enc /= scale
