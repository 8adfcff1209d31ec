"""Training checkpoints in a run directory: module and optimizer state in safetensors, the rest in JSON.

``<run>/checkpoints/step_00000040/`` holds ``model.safetensors`` (a ``state_dict``),
``optimizer.safetensors`` (every optimizer state tensor, keyed ``{param_id}.{name}``), optionally
``extra.safetensors`` (a trainer's own tensors, e.g. an SAE's tokens-since-fired counts) and
``state.json`` (the trainer's state plus the optimizer's ``param_groups``), written last so a
directory without it is ignored. No pickle anywhere; resuming needs the same parameters in the
same order. Used by every trainer (SAEs, lenses).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from replab.errors import RunDirError
from replab.fileio import read_json, read_tensors, write_json, write_tensors

STATE_FILE = "state.json"
_FIX = "delete it to resume from the previous one, or start over in another run directory"


def checkpoint_dirs(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of ``run_dir``, oldest first."""
    root = Path(run_dir) / "checkpoints"
    return sorted(p for p in root.glob("step_*") if (p / STATE_FILE).is_file()) if root.is_dir() else []


def latest_state(run_dir: str | Path) -> tuple[dict[str, Any], Path] | None:
    """``(state.json, directory)`` of the newest checkpoint, without loading tensors (None when there is none).

    Lets a trainer refuse an incompatible checkpoint before it writes anything into the run directory.
    """
    found = checkpoint_dirs(run_dir)
    return (read_json(found[-1] / STATE_FILE, "Checkpoint state", fix=_FIX), found[-1]) if found else None


def save_checkpoint(run_dir: str | Path, step: int, module: torch.nn.Module, opt: torch.optim.Optimizer,
                    state: dict[str, Any], *, extra: Mapping[str, torch.Tensor] | None = None, keep: int = 2) -> Path:
    """Write checkpoint ``step`` (``extra``: more tensors to keep) and delete all but the ``keep`` newest."""
    ck = Path(run_dir) / "checkpoints" / f"step_{step:08d}"
    opt_state = opt.state_dict()
    tensors = {f"{pid}.{name}": torch.as_tensor(v) for pid, entry in opt_state["state"].items()
               for name, v in entry.items()}
    write_tensors(ck / "model.safetensors", module.state_dict())
    write_tensors(ck / "optimizer.safetensors", tensors)
    if extra:
        write_tensors(ck / "extra.safetensors", extra)
    write_json(ck / STATE_FILE, {**state, "step": step, "param_groups": opt_state["param_groups"]})  # last
    for old in checkpoint_dirs(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return ck


def load_checkpoint(run_dir: str | Path, module: torch.nn.Module, opt: torch.optim.Optimizer, *,
                    check: Callable[[dict[str, Any], Path], None] | None = None,
                    load: Callable[[dict[str, torch.Tensor], Path], None] | None = None) -> dict[str, Any] | None:
    """Restore ``module`` and ``opt`` from the latest checkpoint; its ``state.json`` (None when there is none).

    Args:
        check: ``(state, checkpoint dir)`` -> raises when the checkpoint is for another setup (run first).
        load: loads the module tensors instead of ``module.load_state_dict`` (e.g. an SAE's own loader).

    Returns:
        The saved state, with ``"extra"``: the ``extra`` tensors saved with it (empty when none), on the
        module's device.

    Raises:
        RunDirError: the checkpoint is corrupt or was written for other parameters.
    """
    found = checkpoint_dirs(run_dir)
    if not found:
        return None
    ck = found[-1]
    state = read_json(ck / STATE_FILE, "Checkpoint state", fix=_FIX)
    if check is not None:
        check(state, ck)
    device = next(module.parameters()).device
    weights = read_tensors(ck / "model.safetensors", "Checkpoint file", device=str(device), fix=_FIX)
    try:
        (load or (lambda t, _: module.load_state_dict(t)))(weights, ck)
    except RuntimeError as exc:
        raise RunDirError(f"Checkpoint {ck} cannot be read into this model ({str(exc).splitlines()[0]}); "
                          f"{_FIX}.") from None
    entries: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in read_tensors(ck / "optimizer.safetensors", "Checkpoint file", fix=_FIX).items():
        pid, name = key.split(".", 1)
        entries.setdefault(int(pid), {})[name] = value if name == "step" else value.to(device)
    opt.load_state_dict({"state": entries, "param_groups": state["param_groups"]})
    extra = ck / "extra.safetensors"
    state["extra"] = read_tensors(extra, "Checkpoint file", device=str(device), fix=_FIX) if extra.exists() else {}
    return state
