"""``RelationConfig``: one relation run's settings, the one source of ``relation_run``'s defaults and of ``replab relations``'s flags."""

from __future__ import annotations

from dataclasses import dataclass, field

from replab.errors import DataError

METHODS = ("jacobian", "regression", "identity", "translation")


@dataclass(frozen=True)
class RelationConfig:
    """How ``replab relations fit|sweep`` fits and scores an LRE.

    Attributes:
        subject_layer: fit: the subject's layer, 0 = embedding output .. n_layers (a sweep picks its best).
        object_layer: the object's layer (default the last block's output).
        n_train: training samples in each few-shot prompt's Jacobian average.
        beta: the LRE's scale on W.
        rank: causality edit rank (default the sweep's best, else full rank).
        method: how W is estimated: jacobian, regression, identity or translation.
        seed: seed of the train/test split.
    """

    subject_layer: int = 0
    object_layer: int | None = None
    n_train: int = 5
    beta: float = 1.0
    rank: int | None = None
    method: str = field(default="jacobian", metadata={"choices": METHODS})
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_train < 1:
            raise DataError(f"n_train must be at least 1, got {self.n_train}.")
        if self.rank is not None and self.rank < 1:
            raise DataError(f"rank must be at least 1, got {self.rank}.")
