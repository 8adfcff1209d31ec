"""The logit lens: decode a residual stream with the model's own final norm and unembedding.

``replab.load_model`` applies no weight processing (no ``fold_ln``, no centering), so the lens of
the last hidden state is exactly the model's output distribution.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from replab.lenses.base import Lens
from replab.protocols import HookedModel


@dataclass(frozen=True)
class LogitLensConfig:
    """The logit lens has no settings."""


class LogitLens(Lens):
    """``lens(h, layer) = unembed(ln_final(h))`` for every layer (no parameters)."""

    kind = "logit"
    Config = LogitLensConfig


def logit_lens(model: HookedModel, text: str) -> pd.DataFrame:
    """Decode every block's output at every position of ``text`` (logit lens).

    ``blocks.{l}.hook_resid_post`` ``[seq, d_model]`` goes through ``model.ln_final`` and the
    unembedding to a next-token distribution ``[seq, d_vocab]``: ``prompt_table`` of the
    ``LogitLens``, indexed by block.

    Returns:
        A tidy table, one row per (layer, position): ``layer`` (block index), ``hook``, ``position``,
        ``token`` (the input token there), ``top_token``, ``top_token_id``, ``top_prob``,
        ``next_token`` (the token that follows in the text, ``None`` at the end) and
        ``next_token_prob`` (its probability under the lens, NaN at the end).

    Raises:
        DataError: an empty prompt, or one longer than the model's context.
    """
    from replab.lenses.evaluate import prompt_table

    df = prompt_table(LogitLens(model), model, text)
    df = df[df["layer"] >= 1].assign(layer=lambda d: d["layer"] - 1).reset_index(drop=True)
    df.insert(1, "hook", [f"blocks.{b}.hook_resid_post" for b in df["layer"]])
    return df
