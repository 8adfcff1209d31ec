"""Hook names and globs resolved against a list of names: the torch-free core of ``resolve_hooks``.

Shared by ``replab.models.hooks`` (a loaded model's catalogue) and ``replab.models.catalogue`` (the
catalogue derived from a checkpoint's ``config.json`` before loading), so both give the same answer
and the same error.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Collection, Iterable, Sequence

from replab.errors import HookNameError


def expand_patterns(patterns: Sequence[str], available: Sequence[str],
                    missing: Callable[[str], list[str]]) -> list[str]:
    """The names in ``available`` matching each name or glob, in pattern order, without repeats.

    ``missing(pattern)`` supplies the names for a pattern that matched nothing, or raises.
    """
    out: list[str] = []
    for pat in patterns:
        matched = [n for n in available if fnmatch.fnmatchcase(n, pat)] or missing(pat)
        out.extend(m for m in matched if m not in out)
    return out


def match_hooks(hooks: str | Iterable[str], available: Sequence[str], aliases: Collection[str] = ()) -> list[str]:
    """Expand hook names and globs against ``available`` (forward order); ``aliases`` are also valid names.

    Raises:
        HookNameError: no hooks given, or a name or pattern matched nothing (close matches listed).
    """
    patterns: Sequence[str] = [hooks] if isinstance(hooks, str) else list(hooks)
    if not patterns:
        raise HookNameError("No hooks given. Pass a name or a glob such as 'blocks.*.hook_resid_post'.")

    def missing(pat: str) -> list[str]:
        if pat in aliases:
            return [pat]  # an alias name the catalogue folded away is still a valid hook
        close = difflib.get_close_matches(pat, available, n=5, cutoff=0.5)
        hint = f" Close matches: {', '.join(close)}." if close else ""
        raise HookNameError(
            f"Hook {pat!r} matches nothing on this model.{hint} "
            "See replab.hook_names(model) (or `replab hooks --model NAME`) for the full list."
        )

    out = expand_patterns(patterns, available, missing)
    return sorted(out, key=lambda n: available.index(n) if n in available else len(available))
