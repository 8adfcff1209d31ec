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
        layers_per_batch: hooks whose logistic probes are fitted together (default 1 on CPU, all that fit on a GPU).
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
