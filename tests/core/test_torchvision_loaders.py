"""MNIST, CIFAR-10 and SVHN from small files in each library's own on-disk format; nothing is downloaded.

torchvision checks the md5 sums of the CIFAR-10 and SVHN files against the real ones; the tests put
the sums of their own small files into those tables (monkeypatch), so the loader's integrity check
stays in force and is exercised.
"""
from __future__ import annotations

import hashlib
import pickle
import re
import struct
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch

from masksel_core.data.arrays import DataError
from masksel_core.data.builtins import load_dataset
from masksel_core.data.torchvision_files import TORCHVISION_DATASETS, default_data_root, load_torchvision

N_TRAIN, N_TEST = 20, 10


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _labels(n: int) -> np.ndarray:
    return np.arange(n) % 10


def _images(n: int, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Random uint8 images whose first value is the image's index (so the order can be checked)."""
    x = np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)
    x.reshape(n, -1)[:, 0] = np.arange(n)
    return x


def make_mnist(root: Path) -> dict[str, np.ndarray]:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    arrays = {}
    for split, prefix, n, seed in (("train", "train", N_TRAIN, 0), ("test", "t10k", N_TEST, 1)):
        x, y = _images(n, (28, 28), seed), _labels(n).astype(np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 0x0803, n, 28, 28) + x.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x0801, n) + y.tobytes())
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x, y
    return arrays


def make_cifar10(root: Path, monkeypatch: pytest.MonkeyPatch | None) -> dict[str, np.ndarray]:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    x_train, x_test = _images(N_TRAIN, (3, 32, 32), 2), _images(N_TEST, (3, 32, 32), 3)
    y_train, y_test = _labels(N_TRAIN), _labels(N_TEST)[::-1].copy()
    batches = {f"data_batch_{i + 1}": (x_train[4 * i:4 * i + 4], y_train[4 * i:4 * i + 4]) for i in range(5)}
    batches["test_batch"] = (x_test, y_test)
    for name, (x, y) in batches.items():  # rows: 1024 red, 1024 green, 1024 blue values, each row-major
        with open(folder / name, "wb") as handle:
            pickle.dump({"data": x.reshape(len(x), 3072), "labels": [int(v) for v in y]}, handle)
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, handle)
    if monkeypatch is not None:
        import torchvision.datasets as tvd  # torchvision and scipy where they are used: seconds to import

        monkeypatch.setattr(tvd.CIFAR10, "train_list", [[f"data_batch_{i}", _md5(folder / f"data_batch_{i}")]
                                                        for i in range(1, 6)])
        monkeypatch.setattr(tvd.CIFAR10, "test_list", [["test_batch", _md5(folder / "test_batch")]])
        monkeypatch.setattr(tvd.CIFAR10, "meta", {"filename": "batches.meta", "key": "label_names",
                                                  "md5": _md5(folder / "batches.meta")})
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def make_svhn(root: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, np.ndarray]:
    import scipy.io
    import torchvision.datasets as tvd

    root.mkdir(parents=True, exist_ok=True)
    arrays = {}
    table = {key: list(value) for key, value in tvd.SVHN.split_list.items()}
    for split, n, seed in (("train", N_TRAIN, 4), ("test", N_TEST, 5)):
        x = _images(n, (3, 32, 32), seed)  # (N, C, H, W)
        digits = _labels(n)
        path = root / f"{split}_32x32.mat"
        # the .mat layout: X (H, W, C, N), y (N, 1) with the digit 0 stored as 10
        scipy.io.savemat(path, {"X": x.transpose(2, 3, 1, 0), "y": np.where(digits == 0, 10, digits)[:, None]})
        table[split][2] = _md5(path)
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x, digits
    monkeypatch.setattr(tvd.SVHN, "split_list", table)
    return arrays


def _check(data: object, arrays: dict[str, np.ndarray], channels: int, size: int) -> None:
    assert data.input_shape == (channels, size, size) and data.num_classes == 10  # type: ignore[attr-defined]
    for split in ("train", "test"):
        x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
        expected = arrays[f"x_{split}"].reshape(x.shape).astype(np.float32) / 255
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert torch.equal(x, torch.from_numpy(expected))
        assert y.tolist() == arrays[f"y_{split}"].astype(np.int64).tolist()
        assert 0 <= float(x.min()) and float(x.max()) <= 1


def test_mnist_reads_the_raw_idx_files(tmp_path: Path) -> None:
    arrays = make_mnist(tmp_path)
    data = load_torchvision("mnist", tmp_path)
    assert data.name == "mnist" and data.channel_names == ["gray"]
    assert data.x_train.shape == (N_TRAIN, 1, 28, 28) and data.x_test.shape == (N_TEST, 1, 28, 28)
    _check(data, arrays, 1, 28)


def test_cifar10_reads_the_python_pickles_as_channels_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arrays = make_cifar10(tmp_path, monkeypatch)
    data = load_torchvision("cifar10", tmp_path)
    assert data.channel_names == ["red", "green", "blue"]
    assert data.x_train.shape == (N_TRAIN, 3, 32, 32) and data.x_test.shape == (N_TEST, 3, 32, 32)
    _check(data, arrays, 3, 32)
    # the 1025th value of a row is the green value of the top-left pixel
    row = arrays["x_train"].reshape(N_TRAIN, 3072)
    assert float(data.x_train[3, 1, 0, 0]) == pytest.approx(row[3, 1024] / 255)


def test_svhn_reads_the_mat_files_and_maps_label_10_to_0(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arrays = make_svhn(tmp_path, monkeypatch)
    data = load_torchvision("svhn", tmp_path)
    assert data.channel_names == ["red", "green", "blue"]
    assert data.x_train.shape == (N_TRAIN, 3, 32, 32) and data.x_test.shape == (N_TEST, 3, 32, 32)
    _check(data, arrays, 3, 32)
    assert 0 in data.y_train.tolist() and int(data.y_train.max()) == 9


def test_load_dataset_reads_them_from_the_given_root_or_the_environment(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    make_mnist(tmp_path)
    assert load_dataset("mnist", root=tmp_path).x_train.shape == (N_TRAIN, 1, 28, 28)
    assert load_dataset("mnist", root=str(tmp_path), seed=5).x_test.shape == (N_TEST, 1, 28, 28)
    monkeypatch.setenv("MASKSEL_DATA_ROOT", str(tmp_path))
    assert default_data_root() == tmp_path
    assert load_dataset("mnist").num_classes == 10


def test_the_default_root_is_under_the_users_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MASKSEL_DATA_ROOT", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_data_root() == tmp_path / ".cache" / "masksel" / "data"


@pytest.mark.parametrize("name", TORCHVISION_DATASETS)
def test_missing_files_name_the_root_and_the_download_flag(name: str, tmp_path: Path) -> None:
    with pytest.raises(DataError) as caught:
        load_dataset(name, root=tmp_path / "empty")
    message = str(caught.value)
    assert str(tmp_path / "empty") in message and "--download" in message and "not found" in message


def test_files_that_fail_the_integrity_check_are_refused(tmp_path: Path) -> None:
    make_cifar10(tmp_path, None)  # the real md5 sums stay in force
    with pytest.raises(DataError, match=re.escape(str(tmp_path / "cifar-10-batches-py")) + ".*--download"):
        load_torchvision("cifar10", tmp_path)


@pytest.mark.parametrize("name", TORCHVISION_DATASETS)
def test_a_failed_download_is_a_data_error(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise URLError("no network in tests")

    import torchvision.datasets.cifar
    import torchvision.datasets.mnist
    import torchvision.datasets.svhn

    monkeypatch.setattr(torchvision.datasets.mnist, "download_and_extract_archive", offline)
    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", offline)
    monkeypatch.setattr(torchvision.datasets.svhn, "download_url", offline)
    with pytest.raises(DataError, match=f"{name}: downloading into .* failed"):
        load_torchvision(name, tmp_path, download=True)


def test_unknown_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown torchvision dataset 'fashion'"):
        load_torchvision("fashion", tmp_path)
