"""Packages whose public names are imported on first use (PEP 562).

``replab <command> --help`` and argument errors then never import torch: a command's CLI module can
import its package's torch-free config module (``replab.probes.config``) without running the
package's heavy imports.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Mapping
from importlib import import_module
from importlib.util import find_spec
from typing import Any


def lazy_exports(package: str, names: Mapping[str, str]) -> None:
    """Make ``package``'s public ``names`` load on first use; each maps to ``"module"`` or ``"module:attr"``.

    A public function named like its submodule (``replab.probes.sweep``) stays the function when the
    submodule is imported later (the import system would otherwise set the package attribute to the module).
    Any other submodule loads on attribute access too (``replab.saes.synthetic``).
    Usage, at the end of a package's ``__init__``: ``lazy_exports(__name__, {"sweep": "replab.probes.sweep"})``.
    """

    def resolve(name: str) -> Any:
        module, _, attr = names[name].partition(":")
        return getattr(import_module(module), attr or name)

    class LazyPackage(types.ModuleType):
        def __getattr__(self, name: str) -> Any:
            if name not in names:
                if not name.startswith("_") and find_spec(f"{package}.{name}") is not None:
                    return import_module(f"{package}.{name}")  # a submodule (sets the attribute itself)
                raise AttributeError(f"module {package!r} has no attribute {name!r}")
            value = resolve(name)
            self.__dict__[name] = value  # cached: later lookups are plain attribute reads
            return value

        def __dir__(self) -> list[str]:
            return sorted(set(self.__dict__) | set(names))

        def __setattr__(self, name: str, value: Any) -> None:
            if isinstance(value, types.ModuleType) and name in names and names[name].partition(":")[0] == value.__name__:
                value = resolve(name)  # the submodule finished importing: keep the public name the function
            super().__setattr__(name, value)

    sys.modules[package].__class__ = LazyPackage
