"""What a model does on one prompt: next-token top-k and attention patterns (the logit lens is ``replab.lenses``).

These run the model live (the app's Model & prompt page), so they refuse models and prompts
above ``MAX_PARAMS`` / ``MAX_TOKENS`` with a message instead of stalling a page.

The logit lens table (``replab.lenses.logit_lens``) is computed by the lenses package.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from replab.errors import ReplabError

MAX_PARAMS = 200_000_000
MAX_TOKENS = 128


class LiveLimitError(ReplabError):
    """A model or prompt is too large to analyse live."""


def n_params(model) -> int:
    """Parameters of ``model``, tied weights counted once."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def _tokens(model, text: str) -> torch.Tensor:
    """``[1, seq]`` token ids of ``text`` after checking the live limits.

    Raises:
        LiveLimitError: the model has more than ``MAX_PARAMS`` parameters, or the prompt is
            empty or longer than ``MAX_TOKENS`` tokens or the model's context.
    """
    size = n_params(model)
    if size > MAX_PARAMS:
        raise LiveLimitError(
            f"This model has {size / 1e6:.0f}M parameters; live analysis is limited to {MAX_PARAMS / 1e6:.0f}M "
            "so a page never stalls. Capture activations with `replab capture` and study the store instead."
        )
    if not text:
        raise LiveLimitError("The prompt is empty; type some text.")
    tokens = model.to_tokens(text, truncate=False)  # to_tokens cuts at n_ctx silently by default
    limit = min(MAX_TOKENS, getattr(model.cfg, "n_ctx", None) or MAX_TOKENS)
    if tokens.shape[1] > limit:
        why = "live analysis is limited to" if limit == MAX_TOKENS else "the model's context is"
        raise LiveLimitError(f"The prompt is {tokens.shape[1]} tokens long; {why} {limit} tokens. Shorten it.")
    return tokens


def _decode(model, ids) -> list[str]:
    return [model.tokenizer.decode([int(i)]) for i in ids]


@torch.no_grad()
def next_token_topk(model, text: str, k: int = 10) -> pd.DataFrame:
    """The ``k`` most likely next tokens after ``text``.

    Returns:
        One row per rank: ``rank`` (1-based), ``token``, ``token_id``, ``prob``, ``logit``.
    """
    logits = model(_tokens(model, text))[0, -1].float()
    probs = torch.softmax(logits, -1)
    top = probs.topk(min(k, probs.shape[0]))
    ids = top.indices.tolist()
    return pd.DataFrame({"rank": range(1, len(ids) + 1), "token": _decode(model, ids), "token_id": ids,
                         "prob": top.values.tolist(), "logit": logits[ids].tolist()})


@dataclass(frozen=True)
class AttentionPatterns:
    """Attention of every head on one prompt.

    Attributes:
        tokens: the prompt's tokens as strings, ``[seq]``.
        patterns: ``[n_layers, n_heads, seq (query), seq (key)]`` attention probabilities.
    """

    tokens: tuple[str, ...]
    patterns: np.ndarray


@torch.no_grad()
def attention_patterns(model, text: str) -> AttentionPatterns:
    """Every head's attention pattern (``blocks.{l}.attn.hook_pattern``) on ``text``."""
    tokens = _tokens(model, text)
    hooks = [f"blocks.{layer}.attn.hook_pattern" for layer in range(model.cfg.n_layers)]
    _, cache = model.run_with_cache(tokens, names_filter=lambda name: name in hooks)
    missing = [h for h in hooks if h not in cache]
    if missing:
        raise ReplabError(f"This model exposes no attention patterns ({missing[0]} did not fire).")
    patterns = torch.stack([cache[h][0].float() for h in hooks]).numpy()
    return AttentionPatterns(tokens=tuple(_decode(model, tokens[0].tolist())), patterns=patterns)
