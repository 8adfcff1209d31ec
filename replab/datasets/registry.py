"""``replab.datasets.load(spec)``: one entry point for every prompt source."""

from __future__ import annotations

import os

from replab import plugins
from replab.datasets.files import load_file
from replab.datasets.promptset import PromptSet, TextCorpus


def load(spec: str | os.PathLike, *, split: str = "train") -> PromptSet | TextCorpus:
    """Load prompts or a corpus.

    Args:
        spec: ``"world:<name>"`` (``world:sentiment``, ``world:capital``, ``world:city_latitude``,
            ``world:birth_year``, ...; ``world:corpus`` for the training corpus), a path to a
            ``.jsonl``/``.csv`` prompt file, or a ``.txt`` corpus. A ``/heldout`` or ``/train``
            suffix on a world spec overrides ``split``.
        split: ``"train"`` or ``"heldout"`` templates for world prompt sets.
    """
    spec = str(spec)
    prefix, _, name = spec.partition(":")
    loader = plugins.source(prefix) if name and len(prefix) > 1 else None  # "C:\\x" is a Windows path
    if loader is not None:
        if "/" in name:
            name, split = name.split("/", 1)
        return loader(name, split)
    return load_file(spec)


__all__ = ["load", "PromptSet", "TextCorpus"]
