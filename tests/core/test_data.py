from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from masksel_core.data.arrays import DataError, load_npz
from masksel_core.data.builtins import load_dataset, load_digits
from tests.conftest import make_npz


def test_digits_ships_offline_as_one_channel_8x8() -> None:
    data = load_digits()
    assert data.input_shape == (1, 8, 8)
    assert data.num_classes == 10
    assert data.x_train.dtype == torch.float32 and 0 <= data.x_train.min() and data.x_train.max() <= 1
    assert data.x_train.shape[0] + data.x_test.shape[0] == 1797


def test_a_valid_npz_loads_with_a_seeded_stratified_split(small_npz: Path) -> None:
    first = load_npz(small_npz, seed=3)
    again = load_npz(small_npz, seed=3)
    assert first.input_shape == (2, 6, 6) and first.num_classes == 3
    assert torch.equal(first.y_test, again.y_test)
    assert torch.bincount(first.y_test).tolist() == [8, 8, 8]
    assert first.x_train.shape[0] + first.x_test.shape[0] == 120


def test_given_test_arrays_and_channel_names_are_used(tmp_path: Path) -> None:
    x = np.zeros((10, 4, 4), dtype=np.uint8)
    x[:, 0, 0] = 255
    y = np.array([0, 1] * 5)
    path = make_npz(tmp_path / "d.npz", x_train=x, y_train=y, x_test=x[:4], y_test=y[:4],
                    channel_names=np.array(["only"]))
    data = load_npz(path)
    assert data.input_shape == (1, 4, 4) and data.x_test.shape[0] == 4
    assert data.channel_names == ["only"]
    assert data.x_train.max().item() == 1.0  # uint8 scaled to [0, 1]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"x_train": np.full((4, 1, 3, 3), np.nan, dtype=np.float32), "y_train": np.array([0, 1, 0, 1])}, "NaN"),
        ({"x_train": np.full((4, 1, 3, 3), np.inf, dtype=np.float32), "y_train": np.array([0, 1, 0, 1])},
         "infinite"),
        ({"x_train": np.zeros((4, 3), dtype=np.float32), "y_train": np.array([0, 1, 0, 1])}, "rank 2"),
        ({"x_train": np.zeros((4, 1, 3, 3)), "y_train": np.array([0, 1, 0])}, "3 labels for 4 samples"),
        ({"x_train": np.zeros((4, 1, 3, 3)), "y_train": np.zeros(4, dtype=np.int64)}, "single class"),
        ({"x_train": np.zeros((4, 1, 3, 3)), "y_train": np.array([0, 2, 0, 2])}, "no samples of class(es) 1"),
        # Counting the classes of a label of 10**12 would ask for 8 TB: refused before it is counted.
        ({"x_train": np.zeros((4, 1, 3, 3)), "y_train": np.array([0, 1, 0, 10**12])},
         "largest label is 1000000000000 with 4 samples"),
        ({"x_train": np.zeros((4, 1, 3, 3)), "y_train": np.array([0, 1, 2**64 - 1, 1], dtype=np.uint64)},
         "labels beyond 2**63 - 1"),
        ({"x_train": np.zeros((4, 1, 3, 3)), "y_train": np.array([0.0, 1.0, 0.0, 1.0])}, "integer labels"),
        ({"y_train": None}, "missing required array 'y_train'"),
    ],
)
def test_bad_arrays_are_refused_with_the_problem_named(tmp_path: Path, overrides: dict, message: str) -> None:
    path = make_npz(tmp_path / "bad.npz", **overrides)
    with pytest.raises(DataError) as info:
        load_npz(path)
    assert message in str(info.value)


def test_object_arrays_are_refused_without_unpickling(tmp_path: Path) -> None:
    path = tmp_path / "pickle.npz"
    np.savez(path, x_train=np.array([{"a": 1}] * 4, dtype=object), y_train=np.array([0, 1, 0, 1]))
    with pytest.raises(DataError, match="object array"):
        load_npz(path)


def test_not_a_zip_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "text.npz"
    path.write_text("hello")
    with pytest.raises(DataError, match="not an .npz"):
        load_npz(path)


def test_a_header_claiming_huge_arrays_is_refused_before_reading(tmp_path: Path) -> None:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                  "shape": (10**10, 1, 1, 1)})
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x_train.npy", b"\x93NUMPY\x01\x00" + header.getvalue()[8:] + b"\x00" * 16)
        archive.writestr("y_train.npy", b"")
    with pytest.raises(DataError, match="more than the limit"):
        load_npz(path)


def test_an_unknown_dataset_name_is_refused() -> None:
    with pytest.raises(DataError, match="unknown dataset 'mnistt'"):
        load_dataset("mnistt")


def test_test_labels_outside_the_training_classes_are_refused(tmp_path: Path) -> None:
    x = np.zeros((6, 1, 4, 4), dtype=np.float32)
    path = make_npz(tmp_path / "labels.npz", x_train=x, y_train=np.array([0, 1] * 3), x_test=x[:2],
                    y_test=np.array([0, 7]))
    with pytest.raises(DataError, match="y_test has label 7 not present in y_train"):
        load_npz(path)


def test_negative_labels_are_refused(tmp_path: Path) -> None:
    path = make_npz(tmp_path / "neg.npz", x_train=np.zeros((4, 1, 3, 3)), y_train=np.array([0, -1, 0, 1]))
    with pytest.raises(DataError, match="negative labels"):
        load_npz(path)
