"""Tokens as HTML spans whose background intensity shows an activation (feature contexts)."""

from __future__ import annotations

import html
from collections.abc import Sequence

COLOUR = (255, 140, 0)


def token_spans(tokens: Sequence[str], activations: Sequence[float], scale: float, center: int | None = None) -> str:
    """One line of HTML: each token a ``<span>`` shaded by ``activation / scale`` (0 -> clear, 1 -> full).

    Args:
        tokens: token strings ``[n]`` (leading spaces kept).
        activations: one value per token ``[n]``.
        scale: the activation drawn at full intensity (e.g. the latent's max activation).
        center: index of the token the context was picked for; it is underlined.

    Returns:
        A ``<div>`` safe to embed: token text is HTML-escaped, the exact value is in each
        span's ``title`` (hover).
    """
    if len(tokens) != len(activations):
        raise ValueError(f"{len(tokens)} tokens but {len(activations)} activations.")
    r, g, b = COLOUR
    spans = []
    for i, (tok, act) in enumerate(zip(tokens, activations)):
        alpha = 0.0 if scale <= 0 else max(0.0, min(1.0, act / scale))
        style = f"background-color: rgba({r},{g},{b},{alpha:.3f});"
        if i == center:
            style += " text-decoration: underline; font-weight: 600;"
        spans.append(f'<span class="tok" style="{style}" title="{act:.4g}">{html.escape(tok)}</span>')
    return ('<div style="font-family: monospace; white-space: pre-wrap; line-height: 1.9;">'
            + "".join(spans) + "</div>")
