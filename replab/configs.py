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
field's ``metadata["help"]`` when given. Fields of other types (tuples, dicts) are skipped and keep their
defaults. This module imports nothing heavy, so ``replab --help`` stays cheap.
"""

from __future__ import annotations

import argparse
import dataclasses
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


def add_config_flags(parser: argparse.ArgumentParser, cls: type, *, skip: tuple[str, ...] = ()) -> list[str]:
    """Add one ``--flag`` per scalar field of dataclass ``cls`` (minus ``skip``); return the field names added."""
    hints = typing.get_type_hints(cls)
    added = []
    for f in config_flag_fields(cls):
        if f.name in skip:
            continue
        kind = _scalar_type(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else None
        if f.default is dataclasses.MISSING and f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        flag = f"--{f.name.replace('_', '-')}"
        text = f.metadata.get("help", "") + (f" (default {default})" if default is not None else "")
        if kind is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=default, help=text)
        else:
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            parser.add_argument(flag, dest=f.name, type=kind, default=default, required=required, help=text)
        added.append(f.name)
    return added


def config_from_args(cls: type[C], args: argparse.Namespace, **overrides: Any) -> C:
    """Build ``cls`` from the parsed flags that ``add_config_flags`` added (plus ``overrides``)."""
    values = {f.name: getattr(args, f.name) for f in config_flag_fields(cls) if hasattr(args, f.name)}
    return cls(**{**values, **overrides})
