"""``SweepConfig``: the settings of a probe sweep, the one source of ``sweep``'s defaults and of ``replab probe``'s flags."""

from __future__ import annotations

from dataclasses import dataclass

from replab.errors import DataError


@dataclass(frozen=True)
class SweepConfig:
    """How ``replab.probes.sweep`` cross-validates (everything but the store, hooks, probes and target).

    Attributes:
        cv: cross-validation folds (stratified for classifiers).
        groups: metadata column whose values never straddle folds (e.g. subject).
        control: add the control task (Hewitt & Liang) and report selectivity = task - control.
        shuffled: add the shuffled-label baseline.
        control_by: word-type column of the control task (default the subject column, else token_id).
        mdl: also report MDL (online code) codelength and compression.
        seed: seed of the folds, control task and shuffled labels.
        device: where the probes' matrix products run, e.g. cuda (default the CPU).
        layers_per_batch: hooks whose logistic probes are fitted together (default: all that fit in 64 MiB on CPU, a quarter of a GPU).
    """

    cv: int = 5
    groups: str | None = None
    control: bool = True
    shuffled: bool = True
    control_by: str | None = None
    mdl: bool = False
    seed: int = 0
    device: str | None = None
    layers_per_batch: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.cv, bool) or not isinstance(self.cv, int) or self.cv < 2:
            raise DataError(f"cv must be an integer of at least 2 (folds), got {self.cv!r}.")
        if self.layers_per_batch is not None and self.layers_per_batch < 1:
            raise DataError(f"layers_per_batch must be at least 1, got {self.layers_per_batch}.")


PROBE_TASKS = {"logistic": "classification", "meandiff": "classification", "meandiff-iid": "classification",
               "ridge": "regression"}
"""What each built-in probe name of ``PROBES`` predicts, torch-free (``replab probe`` checks its target and
``cv`` before importing torch)."""


def default_target(task: str) -> str:
    """The metadata column a sweep predicts when none is named: ``target`` for regression, else ``label``."""
    return "target" if task == "regression" else "label"
