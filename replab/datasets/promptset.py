"""``PromptSet`` (labelled prompts) and ``TextCorpus`` (documents for token-level capture)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from replab.errors import DataError


@dataclass(frozen=True)
class PromptSet:
    """Prompts with optional per-prompt class label, numeric target, subject and expected answer.

    Attributes:
        texts: the prompts.
        labels: a class per prompt (str or int), e.g. ``"positive"``.
        targets: a number per prompt, e.g. a latitude.
        subjects: the substring of each prompt whose last token methods read (``positions="subject_last"``).
        answers: the expected next-token completion (``" Paris"``), used by behavioural metrics.
        name: where it came from (``"world:capital/train"``, a file path).
        meta: free-form metadata (e.g. ``{"relation": "capital", "split": "train"}``).
    """

    texts: tuple[str, ...]
    labels: tuple[Any, ...] | None = None
    targets: tuple[float, ...] | None = None
    subjects: tuple[str, ...] | None = None
    answers: tuple[str, ...] | None = None
    name: str = "prompts"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "texts", tuple(self.texts))
        if not self.texts:
            raise DataError(f"Prompt set {self.name!r} is empty; it needs at least one prompt.")
        for col in ("labels", "targets", "subjects", "answers"):
            vals = getattr(self, col)
            if vals is None:
                continue
            vals = tuple(vals)
            object.__setattr__(self, col, vals)
            if len(vals) != len(self.texts):
                raise DataError(
                    f"Prompt set {self.name!r}: {col} has {len(vals)} entries for {len(self.texts)} prompts."
                )
        if self.targets is not None:
            import math

            bad = [i for i, t in enumerate(self.targets) if not isinstance(t, (int, float)) or not math.isfinite(t)]
            if bad:
                raise DataError(f"Prompt set {self.name!r}, row {bad[0] + 1}: target is {self.targets[bad[0]]!r}, "
                                "not a finite number.")
        if self.subjects is not None:
            for i, (t, s) in enumerate(zip(self.texts, self.subjects)):
                if s and s not in t:
                    raise DataError(f"Prompt set {self.name!r}, row {i + 1}: subject {s!r} does not occur in {t!r}.")

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices: Sequence[int]) -> "PromptSet":
        """A new prompt set with the given rows, in that order."""
        pick = lambda col: None if col is None else tuple(col[i] for i in indices)  # noqa: E731
        return PromptSet(
            texts=pick(self.texts), labels=pick(self.labels), targets=pick(self.targets),
            subjects=pick(self.subjects), answers=pick(self.answers), name=self.name, meta=dict(self.meta),
        )

    def records(self) -> list[dict[str, Any]]:
        """One dict per prompt with the columns that are present (``text``, ``label``, ...)."""
        cols = {"text": self.texts, "label": self.labels, "target": self.targets,
                "subject": self.subjects, "answer": self.answers}
        present = {k: v for k, v in cols.items() if v is not None}
        return [{k: v[i] for k, v in present.items()} for i in range(len(self))]

    def describe(self) -> dict[str, Any]:
        """A JSON-able description for manifests: name, size, columns, metadata."""
        cols = [c for c in ("labels", "targets", "subjects", "answers") if getattr(self, c) is not None]
        return {"type": "prompts", "name": self.name, "n": len(self), "columns": cols, "meta": self.meta}


@dataclass(frozen=True)
class TextCorpus:
    """Documents (one string each) to be packed into fixed-length contexts for SAE training."""

    documents: tuple[str, ...]
    name: str = "corpus"

    def __post_init__(self) -> None:
        object.__setattr__(self, "documents", tuple(d for d in self.documents if d.strip()))
        if not self.documents:
            raise DataError(f"Text corpus {self.name!r} has no non-empty documents.")

    def __len__(self) -> int:
        return len(self.documents)

    def describe(self) -> dict[str, Any]:
        import hashlib

        digest = hashlib.sha256("\n".join(self.documents).encode()).hexdigest()[:16]
        return {"type": "text", "name": self.name, "n_documents": len(self), "sha256": digest}
