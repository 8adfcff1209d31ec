"""Linear shortcut ("Jump to Conclusions", Din et al.): least squares from layer l to the last hidden state.

Per layer a matrix ``A_l`` minimising ``||H_l A_l - H_final||`` over sampled tokens (no intercept, as
the anchor's ``LinearRegression(fit_intercept=False)``); the lens decodes ``h A_l`` with the final norm
and unembedding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from replab.errors import DataError
from replab.lenses.base import Lens


@dataclass(frozen=True)
class LinearShortcutConfig:
    """The least-squares shortcut has no settings (the fit is closed form)."""


class LinearShortcut(Lens):
    """``transform(h, l) = h @ A_l`` with ``A_l [d_model, d_model]`` (identity before fitting)."""

    kind = "shortcut"
    Config = LinearShortcutConfig

    def __init__(self, model, config: LinearShortcutConfig | None = None):
        super().__init__(model, config)
        d = int(model.cfg.d_model)
        device = next(model.parameters()).device
        self.maps = torch.nn.Parameter(torch.eye(d, device=device).repeat(self.n_layers, 1, 1), requires_grad=False)

    def transform(self, h: torch.Tensor, layer: int) -> torch.Tensor:
        self.check_layer(layer)
        return h if layer == self.n_layers else h.float() @ self.maps[layer]

    @torch.no_grad()
    def fit_layer(self, layer: int, h: torch.Tensor, final: torch.Tensor) -> None:
        """Solve ``A_l = argmin ||h A - final||`` in float64; ``h``, ``final``: ``[n, d_model]``."""
        self.check_layer(layer)
        if h.shape != final.shape or h.shape[0] < h.shape[1]:
            raise DataError(f"The least-squares fit needs matching [n, d] states with n >= d; got {tuple(h.shape)} "
                            f"and {tuple(final.shape)}. Use more tokens.")
        sol = torch.linalg.lstsq(h.double().cpu(), final.double().cpu(), driver="gelsd").solution
        self.maps[layer] = sol.to(self.maps)

    def n_params(self) -> int:
        return self.maps.numel()
