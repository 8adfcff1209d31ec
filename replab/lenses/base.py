"""What every lens shares: tuned-lens layer indexing, decoding with the model's own head, save/load.

Layer ``0`` is the embedding output (``blocks.0.hook_resid_pre``), layer ``i >= 1`` the output of
block ``i - 1`` (``blocks.{i-1}.hook_resid_post``); layer ``n_layers`` is the model's last hidden
state, which needs no lens. A lens is a ``torch.nn.Module`` whose parameters are only its own: the
model (final norm + unembedding, frozen) is referenced, never copied or saved.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar

import torch

from replab.errors import DataError, RunDirError
from replab.fileio import read_json, read_tensors, require, write_json, write_tensors

CONFIG_FILE = "lens.json"
WEIGHTS_FILE = "lens.safetensors"
REGISTRY: dict[str, type["Lens"]] = {}


def registry() -> dict[str, type["Lens"]]:
    """Lens kinds by name, with replab's own lenses imported (they register themselves), so a lens
    saved in one process loads in a fresh one."""
    from replab.lenses import attention, logit, shortcut, tuned  # noqa: F401

    return REGISTRY


def n_layers(model) -> int:
    """Number of blocks of ``model``."""
    return int(model.cfg.n_layers)


def resid_hook(model, layer: int) -> str:
    """The residual-stream hook of tuned-lens layer ``layer`` (0 = embeddings, i = after block i-1)."""
    if not 0 <= layer <= n_layers(model):
        raise DataError(f"Lens layer {layer} is out of range: this model has layers 0..{n_layers(model)} "
                        "(0 = embeddings, i = output of block i-1).")
    return "blocks.0.hook_resid_pre" if layer == 0 else f"blocks.{layer - 1}.hook_resid_post"


def final_hook(model) -> str:
    """The hook holding the model's last hidden state (before the final norm)."""
    return resid_hook(model, n_layers(model))


def unembedding(model) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The model's unembedding ``W_U [d_model, d_vocab]`` and bias ``b_U [d_vocab]`` (or None), detached."""
    b = getattr(model, "b_U", None)
    return model.W_U.detach(), None if b is None else b.detach()


class Lens(torch.nn.Module):
    """Base of every lens: ``lens(h, layer) -> logits`` through the model's final norm and unembedding.

    Subclasses set ``kind`` and ``Config`` (a frozen dataclass), build their parameters from
    ``(model, config)`` and override ``transform``.
    """

    kind: ClassVar[str] = ""
    Config: ClassVar[type]

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if cls.kind:
            REGISTRY[cls.kind] = cls

    def __init__(self, model, config=None):
        super().__init__()
        self.config = config if config is not None else self.Config()
        self._model = (model,)  # a tuple, so the model's parameters are not the lens's
        self.n_layers = n_layers(model)

    @property
    def model(self):
        return self._model[0]

    def check_layer(self, layer: int) -> None:
        resid_hook(self.model, layer)

    def transform(self, h: torch.Tensor, layer: int) -> torch.Tensor:
        """``[..., d_model]`` -> the hidden state the final norm and unembedding read (identity here)."""
        self.check_layer(layer)
        return h

    def normed(self, h: torch.Tensor, layer: int) -> torch.Tensor:
        """``[..., d_model]``: ``ln_final(transform(h, layer))``, what the unembedding multiplies."""
        return self.model.ln_final(self.transform(h, layer))

    def decoder_inputs(self, x: torch.Tensor, layer: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``(h [n, k], W [k, d_vocab], b)`` with logits ``h @ W + b``; ``x``: ``[n, ...]`` rows of ``input_hook``.

        The chunked losses (``replab.kernels.kl_from_hidden``) take exactly these, so no lens
        materialises ``[n, d_vocab]`` while training.
        """
        W, b = unembedding(self.model)
        return self.normed(x, layer), W, b

    def forward(self, x: torch.Tensor, layer: int) -> torch.Tensor:
        """``[..., d_model]`` residual of ``layer`` -> ``[..., d_vocab]`` logits."""
        lead = x.shape[:-1]
        h, W, b = self.decoder_inputs(x.reshape(-1, x.shape[-1]), layer)
        z = h.float() @ W.float()
        z = z if b is None else z + b.float()
        return z.reshape(*lead, z.shape[-1])

    def layers(self) -> list[int]:
        """Layers this lens decodes: ``0..n_layers-1`` (the last hidden state needs no lens)."""
        return list(range(self.n_layers))

    def input_hook(self, layer: int) -> str:
        """The hook whose activation ``lens(x, layer)`` reads."""
        return resid_hook(self.model, layer)

    def n_params(self) -> int:
        """Trainable parameters of the lens (the model's are not counted)."""
        return sum(p.numel() for p in self.parameters())

    # ---- files ---------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write ``lens.json`` (kind, config, model id) and ``lens.safetensors`` into directory ``path``."""
        from replab.identity import model_id, weights_hash

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        info = {"kind": self.kind, "config": asdict(self.config), "model": model_id(self.model),
                "model_hash": weights_hash(self.model), "n_layers": self.n_layers,
                "d_model": int(self.model.cfg.d_model)}
        write_tensors(path / WEIGHTS_FILE, self.state_dict())
        write_json(path / CONFIG_FILE, info, indent=2)
        return path

    @classmethod
    def from_files(cls, model, info: dict[str, Any], tensors: dict[str, torch.Tensor]) -> "Lens":
        lens = cls(model, cls.Config(**info["config"]))
        lens.load_state_dict(tensors)
        return lens


def load(path: str | os.PathLike, model) -> Lens:
    """A lens saved by ``Lens.save`` (or by tuned-lens 0.2: ``config.json`` + ``params.pt``) for ``model``.

    Raises:
        RunDirError: no lens files in ``path``. DataError: the lens was made for a differently shaped model.
    """
    path = Path(path)
    if not (path / CONFIG_FILE).exists():
        if (path / "params.pt").exists():
            from replab.lenses.tuned import TunedLens
            return TunedLens.load_tuned_lens(path, model)
        raise RunDirError(f"{path} holds no lens ({CONFIG_FILE} + {WEIGHTS_FILE}, or tuned-lens's config.json + "
                          "params.pt); save one with lens.save(dir) or `replab lens train`.")
    fix = "save the lens again with lens.save(dir) or `replab lens train`"
    info = read_json(path / CONFIG_FILE, "Lens file", fix=fix)
    for key in ("kind", "config", "n_layers", "d_model"):
        require(info, key, path / CONFIG_FILE, fix=fix)
    kinds = registry()
    if info["kind"] not in kinds:
        raise DataError(f"{path / CONFIG_FILE} names lens kind {info.get('kind')!r}; known: {sorted(kinds)}.")
    if (info["n_layers"], info["d_model"]) != (n_layers(model), int(model.cfg.d_model)):
        raise DataError(f"The lens in {path} was made for {info['n_layers']} layers x d_model {info['d_model']} "
                        f"({info.get('model')}); this model has {n_layers(model)} x {model.cfg.d_model}. "
                        "Load it with the model it was trained on.")
    from replab.identity import weights_hash

    if info.get("model_hash") and info["model_hash"] != weights_hash(model):  # a fine-tuned variant may be meant
        warnings.warn(f"The lens in {path} was trained on {info.get('model')!r} (weights {info['model_hash']}); this "
                      f"model's weights are {weights_hash(model)}, so its decoding may not be what the lens learnt.",
                      UserWarning, stacklevel=2)
    device = next(model.parameters()).device
    tensors = read_tensors(path / WEIGHTS_FILE, "Lens file", device=str(device), fix=fix)
    return kinds[info["kind"]].from_files(model, info, tensors)
