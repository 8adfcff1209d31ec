"""When a kernel runs in Triton: CUDA tensors, triton importable, ``REPLAB_DISABLE_TRITON`` not ``1``."""

from __future__ import annotations

import importlib.util
import os
from functools import lru_cache

import torch


@lru_cache(maxsize=1)
def _triton_available() -> bool:
    """Whether triton can be found, without importing it (a finder that refuses it counts as absent)."""
    try:
        return importlib.util.find_spec("triton") is not None
    except (ImportError, ValueError):
        return False


def use_triton(*tensors: torch.Tensor) -> bool:
    """True when every tensor is on CUDA, triton is installed and the kill switch is off.

    CPU tensors always take the torch reference (tests call the Triton entry points directly under
    ``TRITON_INTERPRET=1``).
    """
    if os.environ.get("REPLAB_DISABLE_TRITON") == "1" or not tensors:
        return False
    return all(t.is_cuda for t in tensors) and _triton_available()
