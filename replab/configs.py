"""Frozen config dataclasses -> argparse flags, in one place, so no CLI re-lists a config's fields by hand.

How a command adopts it (the lens and relation commands can do the same)::

    from replab.configs import add_config_flags, config_from_args

    def register(sub):
        p = sub.add_parser("lens", help="...")
        add_config_flags(p, LensConfig, skip=("hook",))      # --field-name per dataclass field
        p.set_defaults(func=_run)

    def _run(args):
        cfg = config_from_args(LensConfig, args)              # the frozen config, validated by its __post_init__

Each field ``snake_case`` becomes ``--snake-case`` with the field's default; the type comes from the
annotation (``int``, ``float``, ``str``, ``bool`` as ``--x/--no-x``, ``X | None``); the help text is the
field's ``metadata["help"]`` (``metadata["choices"]`` restricts the values), else its line in the class docstring's ``Attributes:`` section. Fields of other types (tuples, dicts) are skipped and keep their
defaults. This module imports nothing heavy, so ``replab --help`` stays cheap.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import types
import typing
from typing import Any, TypeVar

C = TypeVar("C")
_SCALARS = (int, float, str, bool)


def _scalar_type(annotation: Any) -> type | None:
    """The scalar type behind ``T`` or ``T | None`` (None for anything else)."""
    if annotation in _SCALARS:
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1 and args[0] in _SCALARS:
            return args[0]
    return None


def config_flag_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of dataclass ``cls`` that become flags (scalar or optional-scalar types)."""
    hints = typing.get_type_hints(cls)
    return [f for f in dataclasses.fields(cls) if f.init and _scalar_type(hints[f.name]) is not None]


def field_help(cls: type) -> dict[str, str]:
    """Each field's help: ``metadata["help"]``, else its entry under ``Attributes:`` in ``cls``'s (or a base's) docstring."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        doc = inspect.cleandoc(klass.__dict__.get("__doc__") or "")
        section = doc.split("Attributes:", 1)[1] if "Attributes:" in doc else ""
        for name, text in re.findall(r"^\s+(\w+)(?: \([^)]*\))?: (.+(?:\n\s{6,}.+)*)", section, flags=re.M):
            docs[name] = " ".join(text.split())
    return {f.name: f.metadata.get("help") or docs.get(f.name, "") for f in dataclasses.fields(cls)}


def _add_flag(parser: argparse.ArgumentParser, name: str, kind: type, default: Any, text: str,
              required: bool = False, choices: tuple | None = None) -> None:
    flag = f"--{name.replace('_', '-')}"
    text = text.replace("%", "%%")
    if kind is bool:
        parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=default, help=text)
    else:
        parser.add_argument(flag, dest=name, type=kind, default=default, required=required, help=text,
                            choices=choices)


def add_config_flags(parser: argparse.ArgumentParser, cls: type, *, skip: tuple[str, ...] = ()) -> list[str]:
    """Add one ``--flag`` per scalar field of dataclass ``cls`` (minus ``skip``); return the field names added."""
    hints, helps = typing.get_type_hints(cls), field_help(cls)
    added = []
    for f in config_flag_fields(cls):
        if f.name in skip:
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        if f.default is dataclasses.MISSING and f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        text = helps[f.name] + (f" (default {default})" if default is not None else "")
        _add_flag(parser, f.name, _scalar_type(hints[f.name]), default, text, required, f.metadata.get("choices"))
        added.append(f.name)
    return added


def add_variant_flags(parser: argparse.ArgumentParser, variants: dict[str, type], *,
                      skip: tuple[str, ...] = ()) -> dict[str, tuple[str, ...]]:
    """Flags for the union of several config classes' fields (e.g. one per SAE architecture).

    Each flag defaults to ``None`` (not given: the chosen variant's own default applies) and its help names
    the variants that take it. Returns ``field -> variants`` for ``variant_values``.
    """
    owners: dict[str, list[str]] = {}
    for key, cls in variants.items():
        for f in config_flag_fields(cls):
            if f.name not in skip:
                owners.setdefault(f.name, []).append(key)
    for name, keys in owners.items():
        cls = variants[keys[0]]
        kind = _scalar_type(typing.get_type_hints(cls)[name])
        defaults = {_default(variants[k], name) for k in keys}
        shown = f", default {next(iter(defaults))}" if len(defaults) == 1 and None not in defaults else ""
        _add_flag(parser, name, kind, None, f"{field_help(cls)[name]} ({', '.join(keys)}{shown})")
    return {name: tuple(keys) for name, keys in owners.items()}


def _default(cls: type, name: str) -> Any:
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    return f.default if f.default is not dataclasses.MISSING else None


def variant_values(args: argparse.Namespace, owners: dict[str, tuple[str, ...]], variant: str,
                   flag_of: str = "--variant") -> dict[str, Any]:
    """The flags given on the command line for ``variant`` (from ``add_variant_flags``).

    Raises:
        DataError: a flag was given that ``variant`` does not take; the message names the ones that do.
    """
    from replab.errors import DataError

    values = {}
    for name, keys in owners.items():
        value = getattr(args, name)
        if value is None:
            continue
        if variant not in keys:
            raise DataError(f"--{name.replace('_', '-')} applies to {', '.join(keys)}, not {flag_of} {variant}.")
        values[name] = value
    return values


def config_from_args(cls: type[C], args: argparse.Namespace, **overrides: Any) -> C:
    """Build ``cls`` from the parsed flags that ``add_config_flags`` added (plus ``overrides``)."""
    values = {f.name: getattr(args, f.name) for f in config_flag_fields(cls) if hasattr(args, f.name)}
    return cls(**{**values, **overrides})
