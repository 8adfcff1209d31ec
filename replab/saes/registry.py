"""The architecture registry: one module per SAE architecture registers its class here by name.

Names are SAELens's ``architecture`` strings (``"standard"``, ``"topk"``, ``"batchtopk"``,
``"jumprelu"``, ``"matching_pursuit"``), so ``cfg.json`` files map straight to classes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from replab.errors import DataError

if TYPE_CHECKING:
    from replab.saes.base import SAE

_REGISTRY: dict[str, type["SAE"]] = {}
T = TypeVar("T", bound=type)


def register(cls: T) -> T:
    """Class decorator: make ``cls`` available under ``cls.architecture``."""
    from replab.saes.config import ARCH_CONFIGS

    name = cls.architecture
    if ARCH_CONFIGS.setdefault(name, cls.config_class) is not cls.config_class:
        raise ValueError(f"SAE architecture {name!r}: {cls.__name__}.config_class is not ARCH_CONFIGS[{name!r}].")
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ValueError(f"SAE architecture {name!r} is registered twice ({_REGISTRY[name].__name__}, {cls.__name__}).")
    _REGISTRY[name] = cls
    return cls


def _builtins() -> dict[str, type["SAE"]]:
    """The registry, with replab's own architectures imported (they register themselves)."""
    from replab.saes import batchtopk, jumprelu, matching_pursuit, standard, topk  # noqa: F401

    return _REGISTRY


def architectures() -> list[str]:
    """The registered architecture names, sorted."""
    return sorted(_builtins())


def get(name: str) -> type["SAE"]:
    """The SAE class for an architecture name.

    Raises:
        DataError: the name is not registered; the message lists the known ones.
    """
    try:
        return _builtins()[name]
    except KeyError:
        raise DataError(
            f"Unknown SAE architecture {name!r}. replab supports: {', '.join(architectures())}. "
            "Pick one of those (SAELens 'gated', 'matryoshka_batchtopk', transcoders... are not supported)."
        ) from None


def create(architecture: str, d_in: int, d_sae: int, *, seed: int = 0, **config) -> "SAE":
    """A freshly initialised SAE.

    Args:
        architecture: ``"standard"``, ``"topk"``, ``"batchtopk"``, ``"jumprelu"`` or ``"matching_pursuit"``.
        d_in: activation dimension.
        d_sae: number of latents.
        seed: initialisation seed.
        **config: fields of the architecture's config (e.g. ``k=32``, ``l1_coefficient=5.0``,
            ``metadata={"hook_name": ...}``).

    Raises:
        DataError: unknown architecture, unknown config field, or an invalid value.
    """
    import dataclasses

    import torch

    cls = get(architecture)
    known = {f.name for f in dataclasses.fields(cls.config_class)} - {"d_in", "d_sae"}
    unknown = sorted(set(config) - known)
    if unknown:
        raise DataError(
            f"{architecture} SAE has no setting {', '.join(map(repr, unknown))}; its settings are: {', '.join(sorted(known))}."
        )
    sae = cls(cls.config_class(d_in=d_in, d_sae=d_sae, **config))
    sae.init_weights(torch.Generator().manual_seed(seed))
    return sae
