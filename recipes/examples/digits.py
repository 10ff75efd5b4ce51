"""The reference example: scikit-learn's bundled digits (1,797 images of 8x8) and small CNNs.

`load` splits the data deterministically and stratified by class from a seed; `build_cnn` is the
baseline architecture and `build_student` the smaller one a recipe distils into. Nothing here
downloads anything: the data ships inside scikit-learn.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

from compressgate.recipes.data import Split, Splits, stratified_indices


def load(
    seed: int,
    test_fraction: float = 0.25,
    calibration_fraction: float = 0.15,
    test_seed: int | None = None,
) -> Splits:
    """Stratified train / calibration / test splits of the digits, scaled to [0, 1].

    The test split is drawn from `test_seed` when given (the same test set for every run seed,
    so that seeds vary the training and not the yardstick), else from `seed`. Sample ids are the
    images' positions in the collection. Groups are the two halves of the collection order: a
    synthetic grouping that gives the fairness metrics something to compute on. It is not a
    sensitive attribute.
    """
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    y = digits.target.astype(np.int64)
    groups = (np.arange(len(y)) >= len(y) // 2).astype(np.int64)
    train, calibration, test = stratified_indices(
        y,
        seed,
        test_fraction=test_fraction,
        calibration_fraction=calibration_fraction,
        test_seed=test_seed,
    )

    def split(rows: np.ndarray) -> Split:
        rows = np.sort(rows)
        return Split(
            torch.from_numpy(x[rows]),
            torch.from_numpy(y[rows]),
            groups=torch.from_numpy(groups[rows]),
            ids=torch.from_numpy(rows.astype(np.int64)),
        )

    return Splits(
        train=split(train),
        calibration=split(calibration),
        test=split(test),
        class_names=tuple(str(name) for name in digits.target_names),
        group_names=("first-half", "second-half"),
    )


def build_cnn(channels: tuple[int, int] = (32, 64), hidden: int = 128) -> nn.Module:
    """The baseline: two 3x3 convolutions, max pooling, and a two-layer classifier."""
    c1, c2 = channels
    return nn.Sequential(
        nn.Conv2d(1, c1, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(c1, c2, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(c2 * 4 * 4, hidden),
        nn.ReLU(),
        nn.Linear(hidden, 10),
    )


def build_student(channels: tuple[int, int] = (24, 48), hidden: int = 96) -> nn.Module:
    """A smaller student with the baseline's shape, for distillation."""
    return build_cnn(channels=channels, hidden=hidden)
