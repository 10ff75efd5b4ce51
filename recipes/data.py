"""The data a loader hands to the executor: train, calibration and test splits.

A loader is `module:function(seed: int, **args) -> Splits`. Splits must be deterministic in the
seed; their content digests go into the run record.

Splits may declare that their samples are padded to a common length (`Padding`): consumers then
cut each batch to its longest real sample (`trim`) before running a model on it, as a server
batching real requests would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np
    import torch

    from compressgate.recipes.manifest import Recipe


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
class Padding:
    """Samples padded at the end of `axis` of `x` (an axis of the batch, 0 being the samples),
    real positions marked non-zero in the mask `x[:, mask_channel]`, where that axis is
    `axis - 1`. A tokenized text batch (N, 2, L), mask in channel 1: `Padding(2, 1)`."""

    axis: int
    mask_channel: int

    def __post_init__(self) -> None:
        if self.axis < 2 or self.mask_channel < 0:
            raise ValueError(
                "padding needs axis >= 2 (after the samples and the mask's channel axis) and "
                f"mask_channel >= 0, got axis {self.axis}, mask_channel {self.mask_channel}"
            )

    def describe(self) -> str:
        return f"padded along axis {self.axis}, mask x[:, {self.mask_channel}]"


def longest(x: torch.Tensor, padding: Padding) -> int:
    """The length of the longest real sample of batch `x`: the last position where any row's
    mask is non-zero, plus one; at least 1 (a batch of nothing but padding keeps one place)."""
    if x.dim() <= padding.axis or x.shape[1] <= padding.mask_channel:
        raise ValueError(
            f"a batch of shape {tuple(x.shape)} has no axis {padding.axis} or no channel "
            f"{padding.mask_channel} on axis 1 to hold the padding mask"
        )
    mask = x[:, padding.mask_channel].movedim(padding.axis - 1, -1)
    used = (mask != 0).reshape(-1, mask.shape[-1]).any(dim=0).nonzero()
    return max(1, int(used[-1]) + 1) if len(used) else 1


def trim(x: torch.Tensor, padding: Padding) -> torch.Tensor:
    """Batch `x` cut along the padded axis to its longest real sample (`longest`): a view."""
    return x.narrow(padding.axis, 0, longest(x, padding))


@dataclass(frozen=True)
class Splits:
    """The three splits, the class and group names, and where the data came from.

    `provenance` is recorded with the splits' digests in the run record (and so in the stage
    cache key): say what the data is and pin its content, e.g. {"corpus_sha256": "…"}.

    `padding`, when declared, says the samples are padded to a common length along an axis:
    exports make that axis dynamic and evaluations run each batch trimmed to its longest real
    sample. The run record's data then holds it under "padding" (`Padding.describe`), so the
    stage cache keys differ from the undeclared data's.
    """

    train: Split
    calibration: Split
    test: Split
    class_names: tuple[str, ...]
    group_names: tuple[str, ...] = field(default=())
    provenance: dict[str, str] = field(default_factory=dict)
    padding: Padding | None = None

    def __post_init__(self) -> None:
        clash = {"train", "calibration", "test"} & set(self.provenance)
        if clash:
            raise ValueError(f"provenance may not use the split names as keys: {sorted(clash)}")
        if self.padding is not None and "padding" in self.provenance:
            raise ValueError("provenance may not use the key 'padding' when padding is declared")


def stratified_indices(
    strata: np.ndarray,
    seed: int,
    *,
    test_fraction: float,
    calibration_fraction: float,
    test_seed: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train, calibration and test row indices, each stratified by `strata` (one per row).

    The test rows are drawn from `test_seed` when given (one yardstick for every run seed), else
    from `seed`; the calibration rows from `seed`. Indices are unsorted, as scikit-learn draws
    them. Deterministic in the seeds.
    """
    import numpy as np
    from sklearn.model_selection import train_test_split

    if not (0 < test_fraction < 1 and 0 <= calibration_fraction < 1 - test_fraction):
        raise ValueError(
            "need 0 < test_fraction < 1 and 0 <= calibration_fraction < 1 - test_fraction"
        )
    index = np.arange(len(strata))
    rest, test = train_test_split(
        index,
        test_size=test_fraction,
        stratify=strata,
        random_state=seed if test_seed is None else test_seed,
    )
    if calibration_fraction == 0:
        return rest, rest[:0], test
    train, calibration = train_test_split(
        rest,
        test_size=calibration_fraction / (1 - test_fraction),
        stratify=strata[rest],
        random_state=seed,
    )
    return train, calibration, test


def load_splits(recipe: Recipe, base: Path, seed: int) -> Splits:
    """The recipe's data for one seed, from its loader (imported only from the allow-listed
    modules in force: `compressgate.recipes.models.allowed_modules`); a failing loader is a
    stage error."""
    from compressgate.recipes import models
    from compressgate.registry.kernel.errors import StageError

    spec = recipe.data
    loader = models.resolve(spec.loader, base)
    try:
        splits = loader(seed, **spec.args)
    except Exception as exc:
        raise StageError(
            f"data (seed {seed}): the loader {spec.loader} raised {type(exc).__name__}: {exc}",
            hint="fix the loader or its args in the recipe",
        ) from exc
    if not isinstance(splits, Splits):
        raise StageError(
            f"data (seed {seed}): the loader {spec.loader} returned "
            f"{type(splits).__name__}, not compressgate.recipes.data.Splits"
        )
    if len(splits.train) == 0 or len(splits.test) == 0:
        raise StageError(f"data (seed {seed}): the train and test splits must not be empty")
    return splits
