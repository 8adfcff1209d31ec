"""The logit lens: decode a residual stream with the model's own final norm and unembedding.

``replab.load_model`` applies no weight processing (no ``fold_ln``, no centering), so the lens of
the last hidden state is exactly the model's output distribution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from replab.errors import DataError
from replab.lenses.base import Lens
from replab.protocols import HookedModel


@dataclass(frozen=True)
class LogitLensConfig:
    """The logit lens has no settings."""


class LogitLens(Lens):
    """``lens(h, layer) = unembed(ln_final(h))`` for every layer (no parameters)."""

    kind = "logit"
    Config = LogitLensConfig


def _decode(model, ids) -> list[str]:
    return [model.tokenizer.decode([int(i)]) for i in ids]


@torch.no_grad()
def logit_lens(model: HookedModel, text: str) -> pd.DataFrame:
    """Decode every block's output at every position of ``text`` (logit lens).

    ``blocks.{l}.hook_resid_post`` ``[seq, d_model]`` goes through ``model.ln_final`` and the
    unembedding to a next-token distribution ``[seq, d_vocab]`` (read through ``run_batches``).

    Returns:
        A tidy table, one row per (layer, position): ``layer`` (block index), ``hook``, ``position``,
        ``token`` (the input token there), ``top_token``, ``top_token_id``, ``top_prob``,
        ``next_token`` (the token that follows in the text, ``None`` at the end) and
        ``next_token_prob`` (its probability under the lens, NaN at the end).

    Raises:
        DataError: an empty prompt, or one longer than the model's context.
    """
    from replab.models import run_batches

    if not text:
        raise DataError("The prompt is empty; type some text.")
    tokens = model.to_tokens(text, truncate=False)  # to_tokens cuts at n_ctx silently by default
    n_ctx = getattr(model.cfg, "n_ctx", None)
    if n_ctx and tokens.shape[1] > n_ctx:
        raise DataError(f"The prompt is {tokens.shape[1]} tokens long; the model's context is {n_ctx} tokens. "
                        "Shorten it.")
    lens = LogitLens(model)
    hooks = [f"blocks.{layer}.hook_resid_post" for layer in range(model.cfg.n_layers)]
    (fb,) = run_batches(model, tokens.cpu(), hooks, batch_size=1)
    ids = tokens[0].tolist()
    words = _decode(model, ids)
    seq = len(ids)
    following = torch.tensor(ids[1:] + [0])
    frames = []
    for block, hook in enumerate(hooks):
        probs = torch.softmax(lens(fb.acts[hook], block + 1).float(), -1).cpu()  # [seq, d_vocab]
        top = probs.max(-1)
        nxt = probs[torch.arange(seq), following].numpy().copy()
        nxt[-1] = np.nan
        frames.append(pd.DataFrame({
            "layer": block, "hook": hook, "position": range(seq), "token": words,
            "top_token": _decode(model, top.indices.tolist()), "top_token_id": top.indices.numpy(),
            "top_prob": top.values.numpy(), "next_token": words[1:] + [None], "next_token_prob": nxt,
        }))
    return pd.concat(frames, ignore_index=True)
