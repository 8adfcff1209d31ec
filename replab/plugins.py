"""Registries that packages above the base layers fill: named prompt sources and named checkpoints.

``replab.datasets.load("world:capital")`` and ``replab.load_model("world")`` know nothing of the
world package: ``replab.world`` registers its ``world:`` prompt sources and its checkpoint here
when it is imported, and this module imports every package declared under the ``replab.plugins``
entry-point group (``pyproject.toml``) the first time a name is not found. A third-party package
adds its own prompt sources or models the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

SourceLoader = Callable[[str, str], Any]  # (name after "prefix:", split) -> PromptSet | TextCorpus

_SOURCES: dict[str, SourceLoader] = {}
_CHECKPOINTS: dict[str, Path] = {}
_loaded = False


def register_source(prefix: str, loader: SourceLoader) -> None:
    """Make ``replab.datasets.load(f"{prefix}:<name>")`` call ``loader(name, split)``."""
    _SOURCES[prefix] = loader


def register_checkpoint(name: str, path: str | Path) -> None:
    """Make ``replab.load_model(name)`` load the Hugging Face checkpoint directory ``path``."""
    _CHECKPOINTS[name] = Path(path)


def _load_plugins() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for ep in entry_points(group="replab.plugins"):
            ep.load()


def source(prefix: str) -> SourceLoader | None:
    """The loader registered for ``prefix``, or ``None``."""
    if prefix not in _SOURCES:
        _load_plugins()
    return _SOURCES.get(prefix)


def checkpoint(name: str) -> Path | None:
    """The checkpoint directory registered under ``name``, or ``None``."""
    if name not in _CHECKPOINTS:
        _load_plugins()
    return _CHECKPOINTS.get(name)
