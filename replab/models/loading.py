"""``load_model``: one entry point for the world model, TransformerLens names and local checkpoints."""

from __future__ import annotations

import os

import torch

from replab import plugins
from replab.dtypes import parse_dtype
from replab.errors import ModelLoadError
from replab.models.catalogue import checkpoint_dir


def load_model(name_or_path: str | os.PathLike, *, device: str | None = None, dtype: str | torch.dtype | None = None):
    """Load a hooked ``TransformerBridge`` in eval mode.

    Args:
        name_or_path: ``"world"`` for the shipped world model, a local Hugging Face checkpoint
            directory (works offline), or any TransformerLens-supported name such as ``"gpt2"``
            (downloaded when online, read from the Hugging Face cache when offline).
        device: torch device; defaults to CPU.
        dtype: weight dtype (``float32`` default).

    Returns:
        A ``transformer_lens.model_bridge.TransformerBridge``. ``model.replab_name`` records what
        was asked for (a local directory as an absolute path), so run directories can name the model.

    Raises:
        ModelLoadError: the model could not be found or loaded; the message says what was tried.
    """
    from transformer_lens.model_bridge import TransformerBridge

    name = str(name_or_path)
    source = checkpoint_dir(name)
    registered = plugins.checkpoint(name) is not None
    is_local = registered or source.is_dir()
    if registered and not source.is_dir():
        raise ModelLoadError(
            f"The {name!r} model checkpoint {source} is missing from this installation. Reinstall replab "
            "(pip install -e .)" + (" or retrain it: replab world train --out runs/world-train." if name == "world" else ".")
        )
    if is_local and not (source / "config.json").is_file():
        raise ModelLoadError(
            f"{source} is a directory but holds no config.json, so it is not a Hugging Face checkpoint. "
            "Save one with model.save_pretrained(dir) and tokenizer.save_pretrained(dir)."
        )
    target = str(source) if is_local else name
    torch_dtype = parse_dtype(dtype or "float32", what="model dtype", error=ModelLoadError)
    try:
        model = TransformerBridge.boot_transformers(target, device=device or "cpu", dtype=torch_dtype)
    except Exception as exc:  # transformers/hub raise many types; summarise them in one message
        offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("TRANSFORMERS_OFFLINE") == "1"
        if is_local:
            raise ModelLoadError(
                f"Could not load the local checkpoint {target}: {type(exc).__name__}: {str(exc).splitlines()[0]}. "
                "It needs config.json, model weights (model.safetensors) and tokenizer files "
                "(tokenizer.json + tokenizer_config.json)."
            ) from None
        raise ModelLoadError(
            f"Could not load model {name!r}. Tried: a local directory named {name!r} (none exists), then "
            f"the Hugging Face hub/cache via TransformerLens ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}). "
            + (
                "You are offline (HF_HUB_OFFLINE=1) and the model is not in the cache. "
                if offline
                else "Check the name (a TransformerLens-supported name such as 'gpt2' or 'EleutherAI/pythia-70m') "
                "and your network. "
            )
            + "Fix: run once with network access to cache it, pass a local checkpoint directory, or use 'world' "
            "for the shipped model."
        ) from None
    model.eval()
    # a local directory by its absolute path, so stores and runs made from it find it from any directory
    model.replab_name = str(source.absolute()) if is_local and not registered else name
    return model
