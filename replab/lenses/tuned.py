"""The tuned lens (Belrose et al. 2023; AlignmentResearch/tuned-lens): a learned affine translator per layer.

``transform(h, l) = h + A_l h + b_l`` with ``A_l``, ``b_l`` initialised to zero, so an untrained
tuned lens is the logit lens and weight decay pulls it back toward it. Trained (``replab.lenses.train``)
to minimise KL(final-layer distribution || lens distribution) at every position.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from replab.errors import DataError
from replab.fileio import read_json, write_json
from replab.lenses.base import Lens, n_layers, unembedding

TUNED_LENS_FORMAT = "tuned-lens"


@dataclass(frozen=True)
class TunedLensConfig:
    """``bias``: whether translators have ``b_l`` (tuned-lens default True)."""

    bias: bool = True


def unembed_hash(model) -> str:
    """tuned-lens's ``Unembed.unembedding_hash``: sha256 of ``numpy.array_str(W_U^T, precision=1)``.

    tuned-lens warns when a loaded lens's hash differs from its model's, so replab writes the same one.
    """
    W_U, _ = unembedding(model)
    return hashlib.sha256(np.array_str(W_U.T.float().cpu().numpy(), precision=1).encode()).hexdigest()


class TunedLens(Lens):
    """One ``d_model x d_model`` affine translator for each layer ``0..n_layers-1``."""

    kind = "tuned"
    Config = TunedLensConfig

    def __init__(self, model, config: TunedLensConfig | None = None):
        super().__init__(model, config)
        d = int(model.cfg.d_model)
        p = next(model.parameters())
        self.translators = torch.nn.ModuleList(
            torch.nn.Linear(d, d, bias=self.config.bias, device=p.device, dtype=torch.float32)
            for _ in range(self.n_layers))
        for t in self.translators:
            torch.nn.init.zeros_(t.weight)
            if t.bias is not None:
                torch.nn.init.zeros_(t.bias)

    def transform(self, h: torch.Tensor, layer: int) -> torch.Tensor:
        """``[..., d_model]`` -> ``h + A_l h + b_l`` (the last hidden state passes unchanged)."""
        self.check_layer(layer)
        if layer == self.n_layers:
            return h
        h = h.float()
        return h + self.translators[layer](h)

    def save(self, path: str | os.PathLike, format: str = "replab") -> Path:
        """Write the lens; ``format="tuned-lens"`` writes tuned-lens 0.2's ``config.json`` + ``params.pt``.

        ``params.pt`` is ``layer_translators.state_dict()`` (keys ``{i}.weight``, ``{i}.bias``), saved with
        ``torch.save`` of plain tensors only, so ``torch.load(weights_only=True)`` reads it.
        """
        if format != TUNED_LENS_FORMAT:
            if format != "replab":
                raise DataError(f"Unknown lens format {format!r}; use 'replab' or '{TUNED_LENS_FORMAT}'.")
            return super().save(path)
        from replab.identity import model_id

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        torch.save({k: v.detach().cpu().contiguous() for k, v in self.translators.state_dict().items()},
                   path / "params.pt")
        config = {"base_model_name_or_path": model_id(self.model), "d_model": int(self.model.cfg.d_model),
                  "num_hidden_layers": self.n_layers, "bias": self.config.bias, "base_model_revision": None,
                  "unembed_hash": unembed_hash(self.model), "lens_type": "linear_tuned_lens"}
        write_json(path / "config.json", config, indent=None)
        return path

    @classmethod
    def load_tuned_lens(cls, path: str | os.PathLike, model) -> "TunedLens":
        """Read a lens saved by tuned-lens 0.2 (``config.json`` + ``params.pt``, ``weights_only=True``)."""
        path = Path(path)
        config = read_json(path / "config.json", "tuned-lens config", fix="save the lens again", error=DataError)
        if config.get("lens_type", "linear_tuned_lens") != "linear_tuned_lens":
            raise DataError(f"{path} holds a tuned-lens {config['lens_type']!r}; only linear_tuned_lens is supported.")
        if (config["num_hidden_layers"], config["d_model"]) != (n_layers(model), int(model.cfg.d_model)):
            raise DataError(f"The tuned lens in {path} is for {config['num_hidden_layers']} layers x d_model "
                            f"{config['d_model']} ({config.get('base_model_name_or_path')}); this model has "
                            f"{n_layers(model)} x {model.cfg.d_model}. Load it with the model it was trained on.")
        lens = cls(model, TunedLensConfig(bias=bool(config.get("bias", True))))
        device = next(model.parameters()).device
        state = torch.load(path / "params.pt", map_location=device, weights_only=True)
        lens.translators.load_state_dict({k: v.float() for k, v in state.items()})
        return lens
