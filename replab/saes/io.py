"""SAELens-format files: a directory with ``cfg.json`` and ``sae_weights.safetensors``.

``export`` gives the two payloads (so a run directory can register them as artifacts), ``save``
writes them atomically, ``load`` reads replab- and SAELens-written directories alike.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from replab.errors import DataError, RunDirError
from replab.fileio import read_json, read_tensors, write_json, write_tensors
from replab.saes import registry
from replab.saes.base import SAE

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae_weights.safetensors"


def export(sae: SAE) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(cfg.json dict, tensors)`` in SAELens's layout for ``sae``."""
    import replab

    architecture, fields = sae.saelens_config()
    cfg = {"architecture": architecture, **fields, "reshape_activations": "none"}
    cfg["metadata"] = {**fields.get("metadata", {}), "replab_version": replab.__version__}
    return cfg, sae.saelens_tensors()


def save(sae: SAE, path: str | os.PathLike) -> Path:
    """Write ``sae`` to directory ``path`` (created) as ``cfg.json`` + ``sae_weights.safetensors``."""
    path = Path(path)
    cfg, tensors = export(sae)
    write_tensors(path / WEIGHTS_FILE, tensors)
    write_json(path / CFG_FILE, cfg)
    return path


def save_to_run(run, sae: SAE) -> None:
    """Write ``sae``'s ``cfg.json`` + ``sae_weights.safetensors`` into run directory ``run`` (registered
    artifacts, so ``load(run.path)`` and SAELens read it)."""
    cfg, tensors = export(sae)
    run.write_tensors(WEIGHTS_FILE, tensors)
    run.write_json(CFG_FILE, cfg)


PRE6_RENAMES = {"hook_point": "hook_name", "hook_point_layer": "hook_layer",
                "hook_point_head_index": "hook_head_index", "activation_fn_str": "activation_fn"}
"""SAELens < 6 ``cfg.json`` keys and their 6.x names."""

PRE6_METADATA = ("model_name", "hook_name", "hook_layer", "hook_head_index", "prepend_bos", "context_size",
                 "dataset_path", "sae_lens_training_version")
"""Top-level keys of a SAELens < 6 ``cfg.json`` that 6.x keeps under ``metadata``."""


def upgrade_pre6(cfg: dict[str, Any], source: str = "cfg.json") -> dict[str, Any]:
    """A SAELens < 6 ``cfg.json`` (e.g. the ``gpt2-small-res-jb`` release) in the 6.x layout.

    As SAELens's own loader (``handle_pre_6_0_config``): ``hook_point*`` and ``activation_fn_str``
    are renamed, a missing ``architecture`` is ``"standard"``, a boolean ``normalize_activations``
    becomes ``"none"`` / ``"expected_average_only_in"``, ``apply_b_dec_to_input`` defaults to true,
    a ``hook_z`` hook means ``reshape_activations: "hook_z"`` (which ``load`` refuses), and the model/hook facts move under ``metadata`` (SAELens 5's ``meta`` is merged too). A
    ``"standard"`` file whose activation function is ``topk`` (SAELens < 5 wrote TopK SAEs that way)
    is read as ``topk`` with ``activation_fn_kwargs["k"]``.

    Raises:
        DataError: the activation function is neither ReLU nor TopK.
    """
    new = {PRE6_RENAMES.get(k, k): v for k, v in cfg.items()}
    new.setdefault("architecture", "standard")
    new.setdefault("apply_b_dec_to_input", True)
    new.setdefault("reshape_activations", "hook_z" if "hook_z" in str(new.get("hook_name", "")) else "none")
    norm = new.get("normalize_activations")
    if isinstance(norm, bool) or norm is None:
        new["normalize_activations"] = "expected_average_only_in" if norm else "none"
    fn = new.get("activation_fn", "relu")
    if fn == "topk" and new["architecture"] == "standard":
        new["architecture"] = "topk"
    if new["architecture"] == "topk" and "k" not in new and "k" in (new.get("activation_fn_kwargs") or {}):
        new["k"] = new["activation_fn_kwargs"]["k"]
    if fn not in ("relu", "topk"):
        raise DataError(f"{source}: activation_fn {fn!r} is not supported; replab's standard SAE is ReLU "
                        "(topk files are read as TopK SAEs).")
    meta = {k: new[k] for k in PRE6_METADATA if k in new}
    new["metadata"] = {**meta, **(new.get("meta") or {}), **(new.get("metadata") or {})}
    return new


def fold_scaling_factor(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Fold a SAELens < 6 ``scaling_factor [d_sae]`` (its "finetuning scaling factor", which
    multiplies the latents before decoding) into ``W_dec``'s rows: the same reconstruction and
    the same latents. All-ones factors (most files) are simply dropped, as SAELens does."""
    if "scaling_factor" not in tensors:
        return tensors
    tensors = dict(tensors)
    scale = tensors.pop("scaling_factor")
    if not bool((scale == 1).all()) and "W_dec" in tensors:
        tensors["W_dec"] = tensors["W_dec"] * scale.to(tensors["W_dec"].dtype)[:, None]
    return tensors


def load(path: str | os.PathLike, *, device: str | torch.device | None = None) -> SAE:
    """Load an SAE directory written by replab or SAELens.

    Args:
        path: directory holding ``cfg.json`` and ``sae_weights.safetensors`` (a replab SAE run
            directory qualifies).
        device: where to put the parameters (default CPU).

    Raises:
        RunDirError: the directory or one of its files is missing or unreadable.
        DataError: the architecture is unknown, or the cfg and tensors disagree.
    """
    path = Path(path)
    cfg_path, weights_path = path / CFG_FILE, path / WEIGHTS_FILE
    if not path.is_dir():
        raise RunDirError(f"SAE directory {path} does not exist. Train one with `replab train-sae` or save one with sae.save(dir).")
    fix = f"an SAE directory holds {CFG_FILE} and {WEIGHTS_FILE} (SAELens format); re-save the SAE"
    cfg = read_json(cfg_path, "SAE file", fix=fix)
    if not weights_path.is_file():
        raise RunDirError(f"SAE file {weights_path} is missing; {fix}.")
    if not isinstance(cfg, dict) or not {"d_in", "d_sae"} <= set(cfg):
        raise DataError(f"{cfg_path} has no 'd_in' and 'd_sae' fields, so it is not an SAELens/replab SAE config.")
    if "architecture" not in cfg or "metadata" not in cfg:
        cfg = upgrade_pre6(cfg, str(cfg_path))
    if cfg.get("reshape_activations", "none") != "none":
        raise DataError(
            f"{cfg_path}: reshape_activations={cfg['reshape_activations']!r} (hook_z SAEs) is not supported; "
            "replab SAEs read flat [..., d_in] activations."
        )
    cls = registry.get(cfg["architecture"])
    tensors = fold_scaling_factor(read_tensors(weights_path, "SAE file", fix=fix))
    try:
        sae = cls.from_saelens(cfg, tensors, str(weights_path))
    except TypeError as exc:
        raise DataError(f"{cfg_path} has a field of the wrong type for a {cfg['architecture']} SAE: {exc}.") from None
    return sae.to(device or "cpu").eval()
