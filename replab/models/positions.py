"""Which token positions of each item become store rows."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from replab.models.sources import Batch, PromptSource, Source
from replab.errors import DataError
from replab.models.tokens import subject_last_index

PositionFn = Callable[[int, list[int]], Sequence[int]]
KINDS = ("all", "last", "subject_last")


@dataclass(frozen=True)
class Positions:
    """A positions spec.

    Attributes:
        kind: ``"all"`` (every real token; padding never), ``"last"`` (last real token),
            ``"subject_last"`` (last token of the prompt's subject) or ``"callable"``.
        fn: for ``"callable"``: ``fn(item_index, token_ids) -> positions`` (BOS included in
            ``token_ids``; negative positions count from the end).
    """

    kind: str
    fn: PositionFn | None = None

    @classmethod
    def parse(cls, spec: str | PositionFn) -> "Positions":
        if callable(spec):
            return cls("callable", spec)
        if spec not in KINDS:
            raise DataError(f"Unknown positions {spec!r}; use one of {', '.join(KINDS)} or a callable.")
        return cls(spec)

    def describe(self) -> str:
        """A JSON-able name for manifests (a callable is named by module and qualified name)."""
        if self.fn is None:
            return self.kind
        return f"callable:{getattr(self.fn, '__module__', '?')}.{getattr(self.fn, '__qualname__', repr(self.fn))}"

    def check(self, source: Source) -> None:
        """Fail before any work when the source cannot supply what the spec needs."""
        if self.kind == "subject_last" and not (isinstance(source, PromptSource) and source.prompts.subjects):
            raise DataError(
                "positions='subject_last' needs a prompt set with a 'subject' column; "
                "use positions='last' or add subjects."
            )

    def select(self, model, source: Source, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows of a batch as ``(item, position)`` index tensors ``[rows]``, item-major, in order."""
        lengths = batch.tokens.lengths
        if self.kind == "all":
            seq = batch.tokens.tokens.shape[1]
            return torch.nonzero(torch.arange(seq)[None, :] < lengths[:, None], as_tuple=True)
        if self.kind == "last":
            return torch.arange(len(lengths)), lengths - 1
        items: list[int] = []
        positions: list[int] = []
        for i, n in enumerate(lengths.tolist()):
            index = batch.start + i
            if self.fn is None:
                chosen = [subject_last_index(model, source.prompts.texts[index], source.prompts.subjects[index])]
            else:
                chosen = [int(p) for p in self.fn(index, batch.tokens.tokens[i, :n].tolist())]
            for p in chosen:
                if not -n <= p < n:
                    raise DataError(f"Item {index}: position {p} is outside its {n} tokens; fix the positions function.")
                items.append(i)
                positions.append(p % n)
        return torch.tensor(items, dtype=torch.long), torch.tensor(positions, dtype=torch.long)
