"""MNIST, CIFAR-10 and SVHN read from the files torchvision's own classes read, under a local folder.

Nothing is fetched unless the caller passes `download=True` (the CLI's `--download`).
"""
from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .arrays import DataError, TensorDataset, from_arrays

TORCHVISION_DATASETS: tuple[str, ...] = ("mnist", "cifar10", "svhn")
DATA_ROOT_ENV = "MASKSEL_DATA_ROOT"


def default_data_root() -> Path:
    """`$MASKSEL_DATA_ROOT`, else `~/.cache/masksel/data`."""
    return Path(os.environ.get(DATA_ROOT_ENV) or "~/.cache/masksel/data").expanduser()


def torchvision_location(name: str, root: str | Path) -> str:
    """Where torchvision's class for `name` looks for its files under `root` (for messages)."""
    if name not in _FILES:
        raise DataError(f"unknown torchvision dataset {name!r} (known: {', '.join(TORCHVISION_DATASETS)})")
    folder, files = _FILES[name]
    return f"{Path(root) / folder} ({files})"


def load_torchvision(name: str, root: str | Path | None = None, *, download: bool = False,
                     seed: int = 0) -> TensorDataset:
    """MNIST, CIFAR-10 or SVHN from the files torchvision reads under `root`, as a `TensorDataset`.

    `root` defaults to `default_data_root()`; the layout is torchvision's: `root/MNIST/raw/`,
    `root/cifar-10-batches-py/`, and SVHN's `.mat` files directly in `root`. torchvision's integrity checks (md5 sums of
    the CIFAR-10 and SVHN files) apply. Files are fetched only with `download=True`; otherwise missing files raise
    `DataError` naming where they were looked for. The library's own train/test split is used; `seed` is accepted for a
    uniform signature and unused. Images become float32 in [0, 1], `(N, C, H, W)`; SVHN's label 10 (digit 0) becomes 0.
    """
    del seed
    root = Path(root).expanduser() if root is not None else default_data_root()
    where = torchvision_location(name, root)
    try:
        import torchvision.datasets as tvd
    except ImportError as exc:  # pragma: no cover - torchvision is a dependency
        raise DataError(f"{name} needs torchvision, which cannot be imported ({exc})") from None
    read = _READERS[name]
    try:
        x_train, y_train = read(tvd, str(root), True, download)
        x_test, y_test = read(tvd, str(root), False, download)
    except (RuntimeError, OSError) as exc:
        if download:
            raise DataError(f"{name}: downloading into {root} failed or gave unusable files ({exc})") from None
        raise DataError(f"{name}: files not found (or corrupted) in {where}; run with --download "
                        f"(download=True) to fetch them into {root}") from None
    except (ValueError, TypeError, AssertionError, KeyError, EOFError, pickle.UnpicklingError) as exc:
        raise DataError(f"{name}: the files in {where} cannot be read ({exc!r})") from None
    return from_arrays(name, x_train, y_train, x_test, y_test, list(_CHANNELS[name]), 0)


def _read_mnist(tvd: Any, root: str, train: bool, download: bool) -> tuple[np.ndarray, np.ndarray]:
    data = tvd.MNIST(root, train=train, download=download)
    return data.data.numpy()[:, None], data.targets.numpy().astype(np.int64)  # (N, 1, 28, 28) uint8


def _read_cifar10(tvd: Any, root: str, train: bool, download: bool) -> tuple[np.ndarray, np.ndarray]:
    data = tvd.CIFAR10(root, train=train, download=download)
    return np.asarray(data.data).transpose(0, 3, 1, 2), np.asarray(data.targets, dtype=np.int64)  # NHWC -> NCHW


def _read_svhn(tvd: Any, root: str, train: bool, download: bool) -> tuple[np.ndarray, np.ndarray]:
    data = tvd.SVHN(root, split="train" if train else "test", download=download)
    return np.asarray(data.data), np.asarray(data.labels, dtype=np.int64).reshape(-1)  # already NCHW, 10 -> 0


_READERS: dict[str, Callable[[Any, str, bool, bool], tuple[np.ndarray, np.ndarray]]] = {
    "mnist": _read_mnist, "cifar10": _read_cifar10, "svhn": _read_svhn,
}
_CHANNELS: dict[str, tuple[str, ...]] = {
    "mnist": ("gray",), "cifar10": ("red", "green", "blue"), "svhn": ("red", "green", "blue"),
}
_FILES: dict[str, tuple[str, str]] = {  # the folder under the root, and the files in it
    "mnist": ("MNIST/raw", "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-..."),
    "cifar10": ("cifar-10-batches-py", "data_batch_1..5, test_batch, batches.meta"),
    "svhn": ("", "train_32x32.mat, test_32x32.mat"),
}
