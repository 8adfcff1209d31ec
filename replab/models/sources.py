"""What the forward primitive reads: prompt sets (one item per prompt), text corpora packed into
contexts, or already tokenised rows.

Each yields right-padded ``TokenBatch`` es of ``batch_size`` items in a fixed order, starting at
any item, so a resumed capture recomputes exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

import torch

from replab.datasets import PromptSet, TextCorpus
from replab.errors import DataError
from replab.models.tokens import TokenBatch, encode, pad_token_ids, tokenize

DEFAULT_CONTEXT = 128


@dataclass(frozen=True)
class Batch:
    """Items ``start .. start + len(tokens) - 1`` of a source, tokenised.

    Attributes:
        start: index of the first item (prompt index, or context index for a corpus).
        tokens: right-padded ``[batch, seq]`` ids with each row's real length.
    """

    start: int
    tokens: TokenBatch

    def __len__(self) -> int:
        return self.tokens.tokens.shape[0]


class PromptSource:
    """A ``PromptSet``: each prompt is one item, tokenised as ``model(text)`` would."""

    def __init__(self, prompts: PromptSet):
        self.prompts = prompts

    def describe(self) -> dict[str, Any]:
        """``PromptSet.describe()`` plus a hash of every row, so edited prompts count as another source."""
        digest = hashlib.sha256(json.dumps(self.prompts.records(), sort_keys=True, default=str).encode())
        return {**self.prompts.describe(), "sha256": digest.hexdigest()[:16]}

    def records(self) -> list[dict[str, Any]]:
        """Per-prompt columns (text, label, target, subject, answer) for the store's metadata."""
        return self.prompts.records()

    def expected_tokens(self, model) -> int | None:
        return None

    def batches(self, model, start: int, batch_size: int) -> Iterator[Batch]:
        """Batches of ``batch_size`` prompts from prompt ``start`` on."""
        texts = self.prompts.texts
        for lo in range(start, len(texts), batch_size):
            yield Batch(lo, tokenize(model, texts[lo: lo + batch_size]))


class CorpusSource:
    """A ``TextCorpus`` packed into contexts of ``context`` tokens for SAE-style training.

    Each document is tokenised with ``model.to_tokens`` and starts with BOS (prepended here for
    models that prepend none, e.g. Pythia), the documents are concatenated, so BOS separates them,
    and the stream is cut into contexts that each start with BOS (a document's own BOS is reused
    when a context starts there), as SAELens does. A trailing partial context is dropped. At most
    ``max_tokens // context`` contexts are made.
    """

    def __init__(self, corpus: TextCorpus, context: int, max_tokens: int | None):
        self.corpus = corpus
        self.context = context
        self.max_tokens = max_tokens

    def describe(self) -> dict[str, Any]:
        return {**self.corpus.describe(), "context": self.context, "max_tokens": self.max_tokens,
                "packing": "bos-per-context"}

    def records(self) -> None:
        return None

    def expected_tokens(self, model) -> int | None:
        return None if self.max_tokens is None else self.max_tokens // self.context * self.context

    def _contexts(self, model) -> Iterator[list[int]]:
        bos = model.tokenizer.bos_token_id
        if bos is None:
            raise DataError("The model's tokenizer has no BOS token, which corpus packing starts every context with.")
        body = self.context - 1
        limit = None if self.max_tokens is None else self.max_tokens // self.context
        made, pending, at = 0, [], 0
        for doc in self.corpus.documents:
            ids = encode(model, doc)
            pending = pending[at:] + (ids if ids[:1] == [bos] else [bos, *ids])
            at = 0
            while True:
                skip = 1 if at < len(pending) and pending[at] == bos else 0
                if len(pending) - at - skip < body:
                    break
                if limit is not None and made == limit:
                    return
                yield [bos, *pending[at + skip: at + skip + body]]
                made += 1
                at += skip + body
        if made == 0:
            raise DataError(
                f"Corpus {self.corpus.name!r} has fewer tokens than one context of {self.context}; "
                "pass a smaller context (--context) or a larger corpus."
            )

    def batches(self, model, start: int, batch_size: int) -> Iterator[Batch]:
        """Batches of ``batch_size`` contexts from context ``start`` on (earlier ones are tokenised, not run)."""
        contexts = islice(self._contexts(model), start, None)
        lo = start
        while chunk := list(islice(contexts, batch_size)):
            tokens = torch.tensor(chunk, dtype=torch.long)
            yield Batch(lo, TokenBatch(tokens, torch.full((len(chunk),), self.context, dtype=torch.long)))
            lo += len(chunk)


class TokenSource:
    """Already tokenised rows (a ``[n, seq]`` tensor, or lists of ids of any lengths): one item per row.

    Rows are used as given (no BOS is added); lists of different lengths are right-padded.
    """

    def __init__(self, rows: Sequence[Sequence[int]] | torch.Tensor, name: str = "tokens"):
        self.rows = [list(map(int, r)) for r in rows.tolist()] if isinstance(rows, torch.Tensor) else [list(r) for r in rows]
        if not self.rows or not all(self.rows):
            raise DataError(f"Token rows {name!r} are empty or hold an empty row; pass at least one token per row.")
        self.name = name

    def describe(self) -> dict[str, Any]:
        digest = hashlib.sha256(json.dumps(self.rows).encode()).hexdigest()[:16]
        return {"kind": "tokens", "name": self.name, "n": len(self.rows), "sha256": digest}

    def records(self) -> None:
        return None

    def expected_tokens(self, model) -> int:
        return sum(map(len, self.rows))

    def batches(self, model, start: int, batch_size: int) -> Iterator[Batch]:
        """Batches of ``batch_size`` rows from row ``start`` on.

        Raises:
            DataError: a row is longer than the model's context.
        """
        n_ctx = getattr(model.cfg, "n_ctx", None)
        longest = max(range(len(self.rows)), key=lambda i: len(self.rows[i]))
        if n_ctx and len(self.rows[longest]) > n_ctx:
            raise DataError(f"Token row {longest} of {self.name!r} has {len(self.rows[longest])} tokens, more than the "
                            f"model's context of {n_ctx}; cut it into rows of at most {n_ctx}.")
        for lo in range(start, len(self.rows), batch_size):
            yield Batch(lo, pad_token_ids(model, self.rows[lo: lo + batch_size]))


Source = PromptSource | CorpusSource | TokenSource
Data = PromptSet | TextCorpus | str | os.PathLike | Sequence[str] | Sequence[Sequence[int]] | torch.Tensor


def as_source(source: Data, model, *, context: int | None = None, max_tokens: int | None = None) -> Source:
    """Wrap what a forward pass reads as a source.

    Args:
        source: a ``PromptSet``; a ``TextCorpus`` (packed into contexts); a ``replab.datasets.load``
            spec or path; a list of texts (a prompt set without columns); token ids as a
            ``[n, seq]`` long tensor or a list of id lists.
        model: the hooked model (its tokenizer and context length).
        context, max_tokens: corpus packing (see ``CorpusSource``).

    Raises:
        DataError: ``context``/``max_tokens`` given for prompts, or a context the model cannot take.
    """
    if isinstance(source, (PromptSource, CorpusSource, TokenSource)):
        return source
    if isinstance(source, (str, os.PathLike)):
        from replab.datasets import load

        source = load(source)
    elif isinstance(source, torch.Tensor) or (isinstance(source, Sequence) and source
                                               and not isinstance(source[0], str)):
        return TokenSource(source)
    elif isinstance(source, Sequence) and not isinstance(source, (PromptSet, TextCorpus)):
        source = PromptSet(texts=tuple(source), name="texts")
    if isinstance(source, PromptSet):
        if context is not None or max_tokens is not None:
            raise DataError("context and max_tokens apply to text corpora; a prompt set is captured prompt by prompt. "
                            "Drop them, or pass a TextCorpus.")
        return PromptSource(source)
    if not isinstance(source, TextCorpus):
        raise DataError(f"Cannot read {type(source).__name__}: pass a PromptSet, a TextCorpus, a path, texts or token ids.")
    n_ctx = getattr(model.cfg, "n_ctx", None)
    context = context if context is not None else min(DEFAULT_CONTEXT, n_ctx or DEFAULT_CONTEXT)
    if context < 2 or (n_ctx and context > n_ctx):
        raise DataError(f"Context {context} is not usable: it must be between 2 and the model's n_ctx ({n_ctx}).")
    if max_tokens is not None and max_tokens < context:
        raise DataError(f"max_tokens {max_tokens} is less than one context of {context}; raise it or lower --context.")
    return CorpusSource(source, context, max_tokens)


def as_corpus(source: PromptSet | TextCorpus) -> TextCorpus:
    """Read a prompt file's ``text`` column as corpus documents (for ``--text file.jsonl``)."""
    return source if isinstance(source, TextCorpus) else TextCorpus(source.texts, name=source.name)
