"""The Arrests example's data: pinned digest, restricted unpickling, deterministic splits."""

from __future__ import annotations

import io
import lzma
import pickle
from pathlib import Path

import numpy as np
import pytest

from compressgate.recipes.examples import arrests


def test_the_packaged_file_has_the_pinned_digest_and_reads_as_the_r_data_frame() -> None:
    frame = arrests.read_arrests()
    assert frame.shape == (5226, 9)
    assert sorted(set(frame["colour"])) == ["Black", "White"]
    assert (frame["released"] == "Yes").sum() == 4334
    black = frame["colour"] == "Black"
    assert int(black.sum()) == 1288 and int((black & (frame["released"] == "No")).sum()) == 333


def test_a_changed_file_is_refused_before_it_is_unpickled(tmp_path: Path) -> None:
    data = bytearray(arrests.arrests_path().read_bytes())
    data[-1] ^= 1
    changed = tmp_path / "Arrests.pkl.compress"
    changed.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=f"not the pinned {arrests.ARRESTS_SHA256}"):
        arrests.read_arrests(changed)


def test_the_unpickler_refuses_any_name_outside_the_allow_list(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    # A pickle that would call os.system: the classic payload.
    payload = f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()
    with pytest.raises(pickle.UnpicklingError, match=r"names os\.system"):
        arrests.RestrictedUnpickler(io.BytesIO(payload)).load()
    assert not marker.exists()
    # The real file's pickle passes, and names only what the allow-list holds.
    raw = lzma.decompress(arrests.arrests_path().read_bytes())
    assert arrests.RestrictedUnpickler(io.BytesIO(raw)).load().shape == (5226, 9)


def test_splits_are_deterministic_stratified_and_carry_balanced_weights() -> None:
    a = arrests.load(1, test_seed=0)
    b = arrests.load(1, test_seed=0)
    c = arrests.load(2, test_seed=0)
    assert np.array_equal(a.train.ids.numpy(), b.train.ids.numpy())  # type: ignore[union-attr]
    assert np.array_equal(a.test.ids.numpy(), c.test.ids.numpy())  # type: ignore[union-attr]
    assert not np.array_equal(a.train.ids.numpy(), c.train.ids.numpy())  # type: ignore[union-attr]
    assert len(a.train) + len(a.calibration) + len(a.test) == 5226
    assert a.train.x.shape[1] == arrests.input_count()
    assert a.group_names == ("Black", "White") and a.class_names == ("held", "released")
    # Stratified by outcome and colour: the test split keeps the shares of each cell.
    for split in (a.train, a.test):
        cell = 2 * split.y.numpy() + split.groups.numpy()  # type: ignore[union-attr]
        shares = np.bincount(cell, minlength=4) / len(split)
        assert np.allclose(shares, [333 / 5226, 559 / 5226, 955 / 5226, 3379 / 5226], atol=0.01)
    # Balanced: each class weighs as much as the other in the training loss.
    weights = a.train.class_weights
    assert weights is not None
    counts = np.bincount(a.train.y.numpy(), minlength=2)
    assert np.allclose(np.asarray(weights) * counts, len(a.train) / 2)
    assert arrests.load(1, test_seed=0, balanced=False).train.class_weights is None
    # colour defines the groups; it is an input only when asked.
    assert arrests.load(1, test_seed=0, colour_as_input=True).train.x.shape[1] == (
        arrests.input_count(colour=True)
    )
