"""Training checkpoints in a run directory: module and optimizer state in safetensors, the rest in JSON.

``<run>/checkpoints/step_00000040/`` holds ``model.safetensors`` (a ``state_dict``),
``optimizer.safetensors`` (every optimizer state tensor, keyed ``{param_id}.{name}``) and
``state.json`` (the trainer's own state plus the optimizer's ``param_groups``), written last so a
directory without it is ignored. No pickle anywhere; resuming needs the same parameters in the
same order.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from replab.errors import RunDirError
from replab.runs import atomic_write_bytes, atomic_write_json, read_json

STATE_FILE = "state.json"


def checkpoint_dirs(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of ``run_dir``, oldest first."""
    root = Path(run_dir) / "checkpoints"
    return sorted(p for p in root.glob("step_*") if (p / STATE_FILE).is_file()) if root.is_dir() else []


def save_checkpoint(run_dir: str | Path, step: int, module: torch.nn.Module, opt: torch.optim.Optimizer,
                    state: dict[str, Any], *, keep: int = 2) -> Path:
    """Write checkpoint ``step`` and delete all but the ``keep`` most recent ones."""
    from safetensors.torch import save

    ck = Path(run_dir) / "checkpoints" / f"step_{step:08d}"
    opt_state = opt.state_dict()
    tensors = {f"{pid}.{name}": torch.as_tensor(v).detach().cpu().contiguous()
               for pid, entry in opt_state["state"].items() for name, v in entry.items()}
    atomic_write_bytes(ck / "model.safetensors",
                       save({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}))
    atomic_write_bytes(ck / "optimizer.safetensors", save(tensors))
    atomic_write_json(ck / STATE_FILE, {**state, "step": step, "param_groups": opt_state["param_groups"]})
    for old in checkpoint_dirs(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return ck


def load_checkpoint(run_dir: str | Path, module: torch.nn.Module, opt: torch.optim.Optimizer) -> dict[str, Any] | None:
    """Restore ``module`` and ``opt`` from the latest checkpoint; its ``state.json`` (None when there is none).

    Raises:
        RunDirError: the checkpoint is corrupt or was written for other parameters.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    found = checkpoint_dirs(run_dir)
    if not found:
        return None
    ck = found[-1]
    state = read_json(ck / STATE_FILE, "Checkpoint state")
    device = next(module.parameters()).device
    try:
        module.load_state_dict(load_file(str(ck / "model.safetensors"), device=str(device)))
        tensors = load_file(str(ck / "optimizer.safetensors"))
    except (SafetensorError, OSError, RuntimeError) as exc:
        raise RunDirError(f"Checkpoint {ck} cannot be read into this model ({str(exc).splitlines()[0]}); delete it "
                          "to resume from the previous one, or start over in another run directory.") from None
    entries: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        pid, name = key.split(".", 1)
        entries.setdefault(int(pid), {})[name] = value if name == "step" else value.to(device)
    opt.load_state_dict({"state": entries, "param_groups": state["param_groups"]})
    return state
