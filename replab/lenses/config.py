"""``LensTrainConfig``: lens training settings, the one source of ``lenses.train``'s defaults and of ``replab lens train``'s flags."""

from __future__ import annotations

from dataclasses import dataclass, field

from replab.errors import DataError


@dataclass(frozen=True)
class LensTrainConfig:
    """How ``replab.lenses.train`` optimises a lens (tuned-lens's defaults for the tuned lens).

    Attributes:
        steps: optimiser steps.
        batch_size: rows (tokens) per step, global over all ranks.
        lr: learning rate (default 1.0 x (1 - momentum) for the tuned lens, SGD Nesterov; 1e-3 Adam for the attention lens).
        weight_decay: SGD weight decay (tuned lens).
        momentum: SGD Nesterov momentum (tuned lens).
        warmup: linear warm-up steps (default 10% of the steps).
        form: attention lens form: full (per-head maps to the vocabulary) or translator (d x d per head).
        positions: live rows: all (default) or last (the attention lens's default, as the anchor).
        context: live corpus: tokens per context (default the model's).
        seed: seed of the batch order and initialisation.
        checkpoint_every: steps between checkpoints in the run directory.
        resume: continue from the latest checkpoint in the run directory (same settings).
        keep_checkpoints: newest checkpoints kept.
    """

    steps: int = 250
    batch_size: int = 1024
    lr: float | None = None
    weight_decay: float = 1e-3
    momentum: float = 0.9
    warmup: int | None = None
    form: str | None = field(default=None, metadata={"choices": ("full", "translator")})
    positions: str | None = field(default=None, metadata={"choices": ("all", "last")})
    context: int | None = None
    seed: int = 0
    checkpoint_every: int | None = None
    resume: bool = False
    keep_checkpoints: int = 2

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise DataError(f"steps and batch_size must be positive; got {self.steps}, {self.batch_size}.")
