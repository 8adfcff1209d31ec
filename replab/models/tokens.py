"""Tokenisation the way the bridge does it for a plain string, batched with right padding.

Right padding keeps every real token's position (and, under causal attention, its
activations) identical to the unbatched run, so padding never changes what is captured.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from replab.errors import DataError


@dataclass(frozen=True)
class TokenBatch:
    """Right-padded token ids.

    Attributes:
        tokens: ``[batch, seq]`` long tensor (BOS included where the model prepends one).
        lengths: ``[batch]`` number of real tokens per row.
    """

    tokens: torch.Tensor
    lengths: torch.Tensor

    @property
    def attention_mask(self) -> torch.Tensor:
        """``[batch, seq]`` 1 for real tokens, 0 for padding."""
        seq = self.tokens.shape[1]
        return (torch.arange(seq)[None, :] < self.lengths[:, None]).long()


def encode(model, text: str) -> list[int]:
    """Token ids of ``text`` exactly as ``model(text)`` sees them (BOS included), kept on the CPU."""
    return model.to_tokens(text, truncate=False, move_to_device=False)[0].tolist()


def tokenize(model, texts: Sequence[str]) -> TokenBatch:
    """Tokenise each text exactly as ``model(text)`` would, then right-pad into one batch.

    Raises:
        DataError: a text is longer than the model's context.
    """
    ids = [encode(model, t) for t in texts]
    n_ctx = getattr(model.cfg, "n_ctx", None)
    for i, row in enumerate(ids):
        if n_ctx and len(row) > n_ctx:
            raise DataError(
                f"Prompt {i} is {len(row)} tokens long, more than the model's context of {n_ctx}: "
                f"{texts[i][:80]!r}... Shorten it or split it."
            )
    return pad_token_ids(model, ids)


def pad_token_ids(model, ids: Sequence[Sequence[int]]) -> TokenBatch:
    """Right-pad already tokenised rows (e.g. contexts read back from a store) into one batch."""
    pad = model.tokenizer.pad_token_id
    pad = pad if pad is not None else (model.tokenizer.eos_token_id or 0)
    width = max(len(r) for r in ids)
    tokens = torch.full((len(ids), width), pad, dtype=torch.long)
    for i, row in enumerate(ids):
        tokens[i, : len(row)] = torch.as_tensor(list(row), dtype=torch.long)
    return TokenBatch(tokens=tokens, lengths=torch.tensor([len(r) for r in ids], dtype=torch.long))


def subject_last_index(model, text: str, subject: str) -> int:
    """Index (in ``model.to_tokens(text)``) of the last token of the first occurrence of ``subject``.

    Raises:
        DataError: the subject does not occur in the text.
    """
    start = text.find(subject)
    if start < 0 or not subject:
        raise DataError(f"Subject {subject!r} does not occur in prompt {text!r}; fix the subject column.")
    return len(encode(model, text[: start + len(subject)])) - 1
