"""Dtype names as replab's configs, stores and CLIs spell them, resolved to torch dtypes in one place.

The name tuples import nothing heavy (CLI choices come from them before torch is imported); the
``DTYPES`` / ``STORE_DTYPES`` name -> ``torch.dtype`` tables are built on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from replab.errors import DataError, ReplabError

if TYPE_CHECKING:
    import torch

DTYPE_NAMES = ("float32", "float64", "float16", "bfloat16")
# What an activation store can hold: floats rounded from float32, or symmetric per-row int8 codes with one
# float32 scale per row (``replab.kernels.fused_capture.quantise_int8``). Not model or SAE compute dtypes.
STORE_DTYPE_NAMES = ("float32", "float16", "bfloat16", "int8")


def __getattr__(name: str) -> Any:
    if name in ("DTYPES", "STORE_DTYPES"):
        import torch

        names = DTYPE_NAMES if name == "DTYPES" else STORE_DTYPE_NAMES
        table = {n: getattr(torch, n) for n in names}
        globals()[name] = table
        return table
    raise AttributeError(f"module 'replab.dtypes' has no attribute {name!r}")


def dtype_name(name: "str | torch.dtype", *, allowed: tuple[str, ...] = DTYPE_NAMES, what: str = "dtype",
               error: type[ReplabError] = DataError) -> str:
    """``"float32"`` / ``"torch.float32"`` / ``torch.float32`` -> ``"float32"``, without importing torch.

    Raises:
        error: the name is not one of ``allowed`` (the message lists them).
    """
    key = str(name).replace("torch.", "")
    if key not in allowed:
        raise error(f"Unsupported {what} {name!r}; use one of {', '.join(allowed)}.")
    return key


def parse_dtype(name: "str | torch.dtype", *, allowed: tuple[str, ...] = DTYPE_NAMES, what: str = "dtype",
                error: type[ReplabError] = DataError) -> "torch.dtype":
    """``"float32"`` / ``"torch.float32"`` / ``torch.float32`` -> ``torch.float32``.

    Raises:
        error: the name is not one of ``allowed`` (the message lists them).
    """
    import torch

    return getattr(torch, dtype_name(name, allowed=allowed, what=what, error=error))
