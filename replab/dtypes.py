"""Dtype names as replab's configs, stores and CLIs spell them, resolved to torch dtypes in one place."""

from __future__ import annotations

import torch

from replab.errors import DataError, ReplabError

DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16}
# What an activation store can hold: floats rounded from float32, or symmetric per-row int8 codes with one
# float32 scale per row (``replab.kernels.fused_capture.quantise_int8``). Not model or SAE compute dtypes.
STORE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "int8": torch.int8}


def parse_dtype(name: str | torch.dtype, *, allowed: tuple[str, ...] = tuple(DTYPES), what: str = "dtype",
                error: type[ReplabError] = DataError) -> torch.dtype:
    """``"float32"`` / ``"torch.float32"`` / ``torch.float32`` -> ``torch.float32``.

    Raises:
        error: the name is not one of ``allowed`` (the message lists them).
    """
    key = str(name).replace("torch.", "")
    if key not in allowed:
        raise error(f"Unsupported {what} {name!r}; use one of {', '.join(allowed)}.")
    return DTYPES[key]
