"""The data a loader hands to the executor: train, calibration and test splits.

A loader is `module:function(seed: int, **args) -> Splits`. Splits must be deterministic in the
seed; their content digests go into the run record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Split:
    """Inputs `x`, integer labels `y`; optionally one group id per sample (for fairness) and one
    stable id per sample (to match samples across seeds whose splits differ).

    `class_weights`, on a train split, weigh the classes in every training loss's cross-entropy
    (baseline training, distillation, fine-tuning): `balanced` ones, n / (classes · n_class),
    keep a model of an imbalanced task from settling on the majority class. None: unweighted.
    """

    x: torch.Tensor
    y: torch.Tensor
    groups: torch.Tensor | None = None
    ids: torch.Tensor | None = None
    class_weights: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        n = len(self.x)
        if len(self.y) != n or any(
            extra is not None and len(extra) != n for extra in (self.groups, self.ids)
        ):
            raise ValueError("x, y, groups and ids must have one entry per sample")
        if self.class_weights is not None and not all(w > 0 for w in self.class_weights):
            raise ValueError("class weights must be positive")

    def __len__(self) -> int:
        return len(self.x)


@dataclass(frozen=True)
class Splits:
    train: Split
    calibration: Split
    test: Split
    class_names: tuple[str, ...]
    group_names: tuple[str, ...] = field(default=())
