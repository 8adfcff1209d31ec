"""One mechanism for every intervention: ablate, steer, patch, splice an SAE.

``intervene`` installs plain PyTorch forward hooks on the model's ``HookPoint`` modules and
removes exactly those handles on exit, so hooks a user installed themselves survive.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence

import torch

from replab.errors import DataError
from replab.models.hooks import resolve_hooks

Edit = Callable[[torch.Tensor], torch.Tensor]
Positions = int | Sequence[int] | torch.Tensor | None


def _apply_at(x: torch.Tensor, edit: Edit, positions: Positions) -> torch.Tensor:
    """Apply ``edit`` to ``x[batch, pos, ...]`` at the chosen positions only.

    ``positions``: ``None`` (all), an int or list of ints (same for every row), or a
    ``[batch]`` tensor with one position per row (e.g. each prompt's last real token).
    """
    if positions is None:
        return edit(x)
    out = x.clone()
    if isinstance(positions, torch.Tensor) and positions.ndim == 1 and positions.shape[0] == x.shape[0]:
        rows = torch.arange(x.shape[0], device=x.device)
        pos = positions.to(x.device).long()
        out[rows, pos] = edit(x[rows, pos])
        return out
    idx = [positions] if isinstance(positions, int) else list(positions)
    out[:, idx] = edit(x[:, idx])
    return out


@contextlib.contextmanager
def intervene(model, edits: Mapping[str, Edit], positions: Positions = None) -> Iterator[None]:
    """Run the model with ``edits[hook](activation) -> activation`` applied while inside the block.

    Args:
        model: a hooked model.
        edits: hook name (or glob) -> function of the activation tensor.
        positions: where to apply the edit (see ``_apply_at``); ``None`` means every position.
    """
    handles = []
    try:
        for pattern, edit in edits.items():
            for name in resolve_hooks(model, pattern):
                hp = model.hook_dict[name]

                def _hook(module, inputs, output, _edit=edit):
                    return _apply_at(output, _edit, positions)

                handles.append(hp.register_forward_hook(_hook))
        yield
    finally:
        for h in handles:
            h.remove()


def _unit(direction: torch.Tensor | Sequence[float]) -> torch.Tensor:
    d = torch.as_tensor(direction, dtype=torch.float32).flatten()
    norm = d.norm()
    if not torch.isfinite(norm) or norm == 0:
        raise DataError("Direction is zero or not finite; pass a non-zero vector of size d_model.")
    return d / norm


def _check_dim(x: torch.Tensor, d: torch.Tensor) -> None:
    if x.shape[-1] != d.shape[0]:
        raise DataError(
            f"Direction has size {d.shape[0]} but the hooked activation's last dimension is {x.shape[-1]}; "
            "use a direction fitted on this hook."
        )


def ablate_direction(model, direction, hooks: str | Sequence[str], positions: Positions = None):
    """Context manager projecting ``direction`` out: ``x <- x - (x . d) d`` with ``d`` unit-normed."""
    d = _unit(direction)

    def edit(x: torch.Tensor) -> torch.Tensor:
        _check_dim(x, d)
        u = d.to(x.device, x.dtype)
        return x - (x @ u)[..., None] * u

    return intervene(model, {h: edit for h in ([hooks] if isinstance(hooks, str) else hooks)}, positions)


def add_direction(model, direction, scale: float, hooks: str | Sequence[str], positions: Positions = None):
    """Context manager adding ``scale * direction`` (direction used as given) to the activations."""
    d = torch.as_tensor(direction, dtype=torch.float32).flatten()

    def edit(x: torch.Tensor) -> torch.Tensor:
        _check_dim(x, d)
        return x + scale * d.to(x.device, x.dtype)

    return intervene(model, {h: edit for h in ([hooks] if isinstance(hooks, str) else hooks)}, positions)


def patch_activations(model, values: Mapping[str, torch.Tensor], positions: Positions = None):
    """Context manager replacing each hook's activation with a stored tensor (activation patching)."""

    def make(v: torch.Tensor) -> Edit:
        def edit(x: torch.Tensor) -> torch.Tensor:
            if v.shape[-1] != x.shape[-1]:
                raise DataError(f"Patch value has shape {tuple(v.shape)}, activation has {tuple(x.shape)}.")
            return v.to(x.device, x.dtype).expand_as(x)

        return edit

    return intervene(model, {h: make(v) for h, v in values.items()}, positions)


def splice(model, hook: str, module: Callable[[torch.Tensor], torch.Tensor], positions: Positions = None):
    """Context manager replacing a hook's activation by ``module(x)``, e.g. an SAE's reconstruction."""
    return intervene(model, {hook: module}, positions)
