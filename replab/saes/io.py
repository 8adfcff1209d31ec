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
    if not isinstance(cfg, dict) or "architecture" not in cfg:
        raise DataError(f"{cfg_path} has no 'architecture' field, so it is not an SAELens/replab SAE config.")
    if cfg.get("reshape_activations", "none") != "none":
        raise DataError(
            f"{cfg_path}: reshape_activations={cfg['reshape_activations']!r} (hook_z SAEs) is not supported; "
            "replab SAEs read flat [..., d_in] activations."
        )
    cls = registry.get(cfg["architecture"])
    if "metadata" not in cfg:  # SAELens <= 5 kept these under "meta" or at the top level
        legacy = cfg.get("meta") or {k: cfg[k] for k in ("model_name", "hook_name", "hook_layer") if k in cfg}
        cfg = {**cfg, "metadata": dict(legacy)}
    tensors = read_tensors(weights_path, "SAE file", fix=fix)
    try:
        sae = cls.from_saelens(cfg, tensors, str(weights_path))
    except TypeError as exc:
        raise DataError(f"{cfg_path} has a field of the wrong type for a {cfg['architecture']} SAE: {exc}.") from None
    return sae.to(device or "cpu").eval()
