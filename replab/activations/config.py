"""``CaptureConfig``: the settings of a capture, the one source of ``capture``'s defaults and of the CLI flags."""

from __future__ import annotations

from dataclasses import dataclass, field

from replab.dtypes import STORE_DTYPE_NAMES
from replab.errors import DataError

POSITION_MODES = ("all", "last", "subject_last")


@dataclass(frozen=True)
class CaptureConfig:
    """How ``replab.capture`` reads and stores activations (everything but the model, source, hooks and ``out``).

    Attributes:
        positions: which token positions to store: all (padding never stored), last, or subject_last.
        dtype: store dtype; int8 stores per-row symmetric codes plus float32 scales, dequantised on read.
        batch_size: prompts or contexts per forward pass.
        max_tokens: corpus only: stop after this many tokens.
        context: corpus only: tokens per context (default min(128, n_ctx)).
        shard_mb: shard size in MiB for the widest hook.
        resume: continue a matching partial store at the output (--no-resume overwrites it).
    """

    positions: str = field(default="all", metadata={"choices": POSITION_MODES})
    dtype: str = field(default="float32", metadata={"choices": STORE_DTYPE_NAMES})
    batch_size: int = 32
    max_tokens: int | None = None
    context: int | None = None
    shard_mb: float = 64
    resume: bool = True

    def __post_init__(self) -> None:
        if self.dtype not in STORE_DTYPE_NAMES:
            raise DataError(f"Unsupported store dtype {self.dtype!r}; use one of {', '.join(STORE_DTYPE_NAMES)}.")
        for name in ("batch_size", "shard_mb", "max_tokens", "context"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise DataError(f"--{name.replace('_', '-')} must be positive, got {value}; pass a value above 0.")
