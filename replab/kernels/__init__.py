"""Fused kernels with torch references: chunked lens losses, fused capture (gather, cast, statistics).

Importing this package never imports triton: each public function lives in its own module and is
loaded on first use, and a module imports triton only when it dispatches to a kernel
(CUDA tensors, triton importable, ``REPLAB_DISABLE_TRITON`` not ``1``; see ``dispatch.py``).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "kl_from_hidden": "replab.kernels.lens_loss",
    "ce_from_hidden": "replab.kernels.lens_loss",
    "use_triton": "replab.kernels.dispatch",
    "gather_cast": "replab.kernels.fused_capture",
    "CaptureStats": "replab.kernels.fused_capture",
    "quantise_int8": "replab.kernels.fused_capture",
    "dequantise_int8": "replab.kernels.fused_capture",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'replab.kernels' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
