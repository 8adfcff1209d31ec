"""The settings of every SAE architecture, torch-free: ``replab train-sae --help`` and its argument
errors read them without importing torch. Field names are SAELens's ``cfg.json`` keys.

Each architecture module (``topk.py`` ...) builds its SAE from its config here; ``ARCH_CONFIGS``
maps SAELens ``architecture`` names to these classes, the default (``topk``) first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from replab import dtypes
from replab.errors import DataError

# SAELens values of ``normalize_activations`` that apply no run-time transform inside the SAE.
NO_RUNTIME_NORMALIZATION = ("none", "expected_average_only_in")

C = TypeVar("C", bound="SAEConfig")


@dataclass(frozen=True)
class SAEConfig:
    """Settings every architecture shares; field names are SAELens's ``cfg.json`` keys.

    Attributes:
        d_in: input (activation) dimension.
        d_sae: number of latents.
        dtype: parameter dtype name.
        device: device the parameters were on when saved (informational, as in SAELens).
        apply_b_dec_to_input: subtract ``b_dec`` from the input before encoding.
        normalize_activations: ``"none"``, or SAELens's ``"expected_average_only_in"`` (the
            scale is applied outside the SAE, so encode/decode do not change either way).
        metadata: free-form facts written to ``cfg.json["metadata"]`` (``model_name``,
            ``hook_name``, ``hook_layer``, ...).
    """

    d_in: int
    d_sae: int
    dtype: str = "float32"
    device: str = "cpu"
    apply_b_dec_to_input: bool = True
    normalize_activations: str = "none"
    metadata: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        for name in ("d_in", "d_sae"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise DataError(f"SAE {name} must be a positive integer, got {value!r}.")
        object.__setattr__(self, "dtype", dtypes.dtype_name(self.dtype, what="SAE dtype"))
        if self.normalize_activations not in NO_RUNTIME_NORMALIZATION:
            raise DataError(
                f"normalize_activations={self.normalize_activations!r} is not supported: replab SAEs take raw "
                f"activations (allowed: {', '.join(NO_RUNTIME_NORMALIZATION)}). Fold the normalisation into the "
                "weights with SAELens before exporting."
            )
        object.__setattr__(self, "metadata", dict(self.metadata or {}))

    def to_dict(self) -> dict[str, Any]:
        """All fields as a JSON-able dict (``metadata`` copied)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["metadata"] = dict(self.metadata)
        return out

    @classmethod
    def from_dict(cls: type[C], values: Mapping[str, Any]) -> C:
        """Build from a ``cfg.json`` dict, ignoring keys this config does not define."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


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


@dataclass(frozen=True)
class BatchTopKConfig(TopKConfig):
    """BatchTopK settings (``k``: mean latents per token over a batch).

    Attributes:
        threshold_ema: update rate of the inference threshold (SAELens ``topk_threshold_lr``).
    """

    threshold_ema: float = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.threshold_ema <= 1:
            raise DataError(f"threshold_ema must be in (0, 1], got {self.threshold_ema}.")


@dataclass(frozen=True)
class JumpReLUConfig(SAEConfig):
    """JumpReLU settings.

    Attributes:
        bandwidth: STE kernel width (SAELens 0.05; dictionary_learning 0.001).
        init_threshold: initial threshold of every latent.
        sparsity_loss: ``"step"`` (L0 through the step STE) or ``"tanh"`` (``tanh(c f ||W_dec||)``).
        l0_coefficient: weight of the sparsity loss.
        l0_warm_up_steps: ramp of that weight (``None``: 5% of the run).
        tanh_scale: ``c`` of the tanh loss.
    """

    bandwidth: float = 0.05
    init_threshold: float = 0.001
    sparsity_loss: str = "step"
    l0_coefficient: float = 1.0
    l0_warm_up_steps: int | None = None
    tanh_scale: float = 4.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.sparsity_loss not in ("step", "tanh"):
            raise DataError(f"sparsity_loss must be 'step' or 'tanh', got {self.sparsity_loss!r}.")
        if self.bandwidth <= 0:
            raise DataError(f"bandwidth must be > 0, got {self.bandwidth}.")


@dataclass(frozen=True)
class MatchingPursuitConfig(SAEConfig):
    """Matching-pursuit settings (SAELens names where SAELens has them).

    Attributes:
        k: pursuit steps during training (plain MSE loss, no sparsity penalty).
        residual_threshold: inference stops for a sample once ``||residual|| <`` this (raw
            activation units; 0 disables the test).
        max_iterations: inference step cap (``None``: ``k``). Written explicitly to ``cfg.json``
            because SAELens would otherwise default to ``d_in``.
        stop_on_duplicate_support: inference stops for a sample when a step adds no new atom.
    """

    k: int = 32
    residual_threshold: float = 0.0
    max_iterations: int | None = None
    stop_on_duplicate_support: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.k < 1:
            raise DataError(f"k (pursuit steps) must be >= 1, got {self.k}.")
        if self.max_iterations is not None and self.max_iterations < 1:
            raise DataError(f"max_iterations must be >= 1, got {self.max_iterations}.")
        if self.residual_threshold < 0:
            raise DataError(f"residual_threshold must be >= 0, got {self.residual_threshold}.")


ARCH_CONFIGS: dict[str, type[SAEConfig]] = {
    "topk": TopKConfig,
    "batchtopk": BatchTopKConfig,
    "jumprelu": JumpReLUConfig,
    "matching_pursuit": MatchingPursuitConfig,
    "standard": StandardConfig,
}
"""SAELens architecture name -> config class (what ``replab train-sae --arch`` accepts)."""
