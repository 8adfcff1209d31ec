"""Exceptions replab raises for bad input. Each message names the problem and the fix."""


class ReplabError(Exception):
    """Base class: a problem the user can fix, explained in the message."""


class ModelLoadError(ReplabError):
    """A model could not be loaded (unknown name, offline with no cache, broken checkpoint)."""


class HookNameError(ReplabError, KeyError):
    """A hook name or pattern matched nothing the model exposes."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class DataError(ReplabError, ValueError):
    """Input data is malformed: missing column, empty file, NaNs, wrong shape or dtype."""


class StoreError(ReplabError):
    """An activation store is missing, corrupt, or was made with different settings."""


class RunDirError(ReplabError):
    """A run directory is missing, partial or corrupt."""
