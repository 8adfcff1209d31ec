"""What replab's public functions need from a model and from a store, as structural types.

A ``TransformerBridge`` (TransformerLens 4) is a ``HookedModel``; an ``ActivationStore`` is an
``ActivationSource``. Anything else with the same attributes works too (a test double, a wrapped
model, a store in memory), and type checkers see the contract. Nothing here imports torch or
transformer_lens at run time.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import pandas as pd
    import torch


@runtime_checkable
class HookedModel(Protocol):
    """A hooked transformer: config, tokenizer, named hook points and a forward that returns logits.

    Attributes:
        cfg: ``n_layers``, ``d_model``, ``n_ctx``, ``d_vocab``, ``n_heads``, ``d_head`` (TransformerLens's config).
        tokenizer: a Hugging Face tokenizer (``decode``, ``encode``, ``pad_token_id``).
        hook_dict: hook name -> hook point (a ``torch.nn.Module`` that forward hooks attach to).
    """

    cfg: Any
    tokenizer: Any
    hook_dict: Mapping[str, Any]

    def __call__(self, input: Any, *args: Any, **kwargs: Any) -> "torch.Tensor":
        """Logits ``[batch, seq, d_vocab]`` for text or token ids ``[batch, seq]``."""

    def to_tokens(self, input: Any, *args: Any, **kwargs: Any) -> "torch.Tensor":
        """Token ids ``[batch, seq]`` for text."""

    def parameters(self) -> Iterator["torch.nn.Parameter"]:
        """The weights (their device is where ``run_batches`` puts the tokens)."""


@runtime_checkable
class ActivationSource(Protocol):
    """Captured activations: one ``[n_rows, d]`` array per hook, with one metadata row per activation row."""

    manifest: Mapping[str, Any]

    def __len__(self) -> int:
        """Number of rows (the same for every hook)."""

    def __getitem__(self, hook: str) -> Any:
        """``[n_rows, d]`` array-like (memory-mapped for a store on disk)."""

    @property
    def hooks(self) -> list[str]:
        """The captured hook names."""

    @property
    def metadata(self) -> "pd.DataFrame":
        """Per-row columns (item, position, label, target, ...)."""

    def d(self, hook: str) -> int:
        """Width of ``hook``'s rows."""

    def iter_batches(self, hook: str, batch_size: int, shuffle: bool = True, seed: int = 0) -> Iterator["torch.Tensor"]:
        """Float32 ``[batch_size, d]`` batches of ``hook``'s rows."""
