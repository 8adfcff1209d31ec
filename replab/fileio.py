"""The one file layer: JSON and safetensors written atomically and read with errors that name the file.

Every replab file (run directories, store manifests and statistics, probe / SAE / lens / LRE files,
checkpoints) goes through these functions, so a reader never sees half a file (temporary file +
``fsync`` + rename) and a missing, corrupt or incomplete file is a ``replab.errors`` exception that
names the file, the key when one is missing, and what to do, never a parser traceback. No pickle:
tensors are safetensors, everything else JSON.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from replab.errors import ReplabError, RunDirError

_REMAKE = "re-run the command that wrote it"


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file and rename, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def jsonable(obj: Any) -> Any:
    """``obj`` with numpy values, paths and tuples made JSON types; NaN / inf become ``None``."""
    import numpy as np

    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 1, sort_keys: bool = False) -> Path:
    """Atomically write ``obj`` as JSON (numpy values converted, NaN written as ``null``)."""
    text = json.dumps(jsonable(obj), indent=indent, allow_nan=False, sort_keys=sort_keys)
    return atomic_write_bytes(path, text.encode())


def read_json(path: str | os.PathLike, what: str = "file", *, fix: str = _REMAKE,
              error: type[ReplabError] = RunDirError) -> Any:
    """Read a JSON file.

    Args:
        path: the file.
        what: how the message names it ("Probe file", "run.json of", ...).
        fix: what the user should do when it is missing or corrupt.
        error: the ``ReplabError`` subclass raised.

    Raises:
        error: the file is missing or is not valid JSON; the message names the file and ``fix``.
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} {path} is missing; {fix}.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{what} {path} is corrupt ({exc}); {fix}.") from None


def require(doc: Any, key: str, path: str | os.PathLike, *, fix: str = _REMAKE,
            error: type[ReplabError] = RunDirError) -> Any:
    """``doc[key]`` from the JSON object read from ``path``, or an error naming the file and the key."""
    if not isinstance(doc, Mapping):
        raise error(f"{path} does not hold a JSON object (found {type(doc).__name__}); {fix}.")
    if key not in doc:
        raise error(f"{path} has no {key!r} field; {fix}.")
    return doc[key]


def write_tensors(path: str | os.PathLike, tensors: Mapping[str, Any],
                  metadata: Mapping[str, str] | None = None) -> Path:
    """Atomically write torch tensors or numpy arrays as one safetensors file (made contiguous, on CPU)."""
    import torch
    from safetensors.torch import save

    data = {k: torch.as_tensor(v).detach().cpu().contiguous() for k, v in tensors.items()}
    return atomic_write_bytes(path, save(data, metadata=dict(metadata) if metadata else None))


def read_tensors(path: str | os.PathLike, what: str = "file", *, numpy: bool = False, device: str = "cpu",
                 keys: tuple[str, ...] = (), fix: str = _REMAKE,
                 error: type[ReplabError] = RunDirError) -> dict[str, Any]:
    """Read a safetensors file as torch tensors (on ``device``) or, with ``numpy=True``, numpy arrays.

    Args:
        keys: tensors that must be present; a missing one is an error naming the file and the key.

    Raises:
        error: the file is missing, truncated or corrupt, or lacks one of ``keys``.
    """
    from safetensors import SafetensorError

    path = Path(path)
    if not path.is_file():
        raise error(f"{what} {path} is missing; {fix}.")
    try:
        if numpy:
            from safetensors.numpy import load_file

            out = load_file(str(path))
        else:
            from safetensors.torch import load_file

            out = load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError) as exc:
        raise error(f"{what} {path} is corrupt ({exc}); {fix}.") from None
    missing = [k for k in keys if k not in out]
    if missing:
        raise error(f"{what} {path} lacks tensor(s) {', '.join(map(repr, missing))}; {fix}.")
    return out


def read_tensor_metadata(path: str | os.PathLike, what: str = "file", *, fix: str = _REMAKE,
                         error: type[ReplabError] = RunDirError) -> dict[str, str]:
    """The string metadata stored in a safetensors file's header."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise error(f"{what} {path} is missing; {fix}.")
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise error(f"{what} {path} is corrupt ({exc}); {fix}.") from None
