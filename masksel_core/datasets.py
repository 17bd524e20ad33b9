"""Data sets by name: the built-ins that ship offline, the torchvision formats read from a local folder,
and `.npz` files of the dataset contract."""
from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .data import DEFAULT_MAX_BYTES, DataError, TensorDataset, from_arrays, load_npz
from .synthetic import SYNTHETIC_SUMMARIES, load_synthetic_remote, load_synthetic_supernova
from .torchvision_data import TORCHVISION_DATASETS, load_torchvision


def load_digits(seed: int = 0) -> TensorDataset:
    """scikit-learn's 8x8 digits (ships with the package, no download), scaled to [0, 1]."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None]  # (N, 1, 8, 8)
    y = bunch.target.astype(np.int64)
    return from_arrays("digits", x, y, None, None, ["gray"], seed)


#: Data sets that ship offline: name -> loader taking a seed.
BUILTINS: dict[str, Callable[[int], TensorDataset]] = {
    "digits": load_digits,
    "synthetic-remote": load_synthetic_remote,
    "synthetic-supernova": load_synthetic_supernova,
}


def load_dataset(spec: str, *, seed: int = 0, max_bytes: int = DEFAULT_MAX_BYTES, root: str | Path | None = None,
                 download: bool = False) -> TensorDataset:
    """A built-in name, a torchvision data set name (`TORCHVISION_DATASETS`) or a path to an `.npz` file.

    `root` and `download` only concern the torchvision data sets: their files are read from `root`
    (default `torchvision_data.default_data_root()`) and fetched only when `download` is true.
    """
    if spec in BUILTINS:
        return BUILTINS[spec](seed)
    if spec in TORCHVISION_DATASETS:
        return load_torchvision(spec, root, download=download, seed=seed)
    path = Path(spec)
    if path.suffix != ".npz" and not path.exists():
        raise DataError(f"unknown dataset {spec!r}: not a built-in ({', '.join(BUILTINS)}), a torchvision data set "
                        f"({', '.join(TORCHVISION_DATASETS)}) nor an .npz file")
    return load_npz(path, seed=seed, max_bytes=max_bytes)


def builtin_summary(name: str) -> dict[str, Any]:
    """`BUILTINS[name](0).summary()`, without generating the data where its summary is known in advance."""
    if name in SYNTHETIC_SUMMARIES:
        return copy.deepcopy(SYNTHETIC_SUMMARIES[name])
    if name not in BUILTINS:
        raise DataError(f"unknown built-in dataset {name!r} (built-ins: {', '.join(BUILTINS)})")
    return BUILTINS[name](0).summary()
