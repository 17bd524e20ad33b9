"""Data sets as tensors, and `.npz` files of the dataset contract checked into them.

The built-in sets and the name registry live in `builtins`, beside this module.
Validation happens before the arrays are read: a zip member's `.npy` header states its shape
and dtype, so absurd sizes are refused before anything is allocated.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

DEFAULT_MAX_BYTES = 2 * 1024**3
TEST_SHARE = 0.2


class DataError(ValueError):
    """The data cannot be used; the message names the problem."""


@dataclass
class TensorDataset:
    """Train and test tensors `(N, C, H, W)` float32 with int64 labels."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    channel_names: list[str] = field(default_factory=list)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        c, h, w = self.x_train.shape[1:]
        return int(c), int(h), int(w)

    def to(self, device: torch.device) -> TensorDataset:
        return TensorDataset(self.name, self.x_train.to(device), self.y_train.to(device), self.x_test.to(device),
                             self.y_test.to(device), self.num_classes, list(self.channel_names))

    def summary(self) -> dict[str, object]:
        return {"name": self.name, "input_shape": list(self.input_shape), "num_classes": self.num_classes,
                "num_train": int(self.x_train.shape[0]), "num_test": int(self.x_test.shape[0]),
                "channel_names": list(self.channel_names)}


def load_npz(path: str | Path, *, seed: int = 0, max_bytes: int = DEFAULT_MAX_BYTES,
             name: str | None = None) -> TensorDataset:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        _check_headers(path, max_bytes)
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except DataError:
        raise
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
            raise DataError(f"{path.name}: contains an object array (pickled data is refused)") from None
        raise DataError(f"{path.name}: cannot be read as .npz ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - a damaged zip can fail in many ways; all mean the same here
        raise DataError(f"{path.name}: not a readable .npz file ({type(exc).__name__}: {exc})") from None
    return _from_npz_arrays(name or path.stem, arrays, seed)


def _check_headers(path: Path, max_bytes: int) -> None:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"{path.name}: not an .npz (zip) file ({exc})") from None
    total = 0
    with archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            with archive.open(info) as member:
                try:
                    if np.lib.format.read_magic(member) == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(member)
                    else:
                        shape, _, dtype = np.lib.format.read_array_header_2_0(member)
                except ValueError as exc:
                    raise DataError(f"{path.name}: member {info.filename} has a broken header ({exc})") from None
            key = info.filename[:-4]
            if dtype.hasobject:
                raise DataError(f"{path.name}: {key} is an object array (pickled data is refused)")
            total += int(np.prod(shape, dtype=np.float64)) * max(dtype.itemsize, 1)
            if total > max_bytes:
                raise DataError(f"{path.name}: arrays hold more than the limit of {max_bytes} bytes for an .npz (read "
                                "whole): convert it to a zarr store, which is streamed: python -m masksel_core convert")


def _from_npz_arrays(name: str, arrays: dict[str, np.ndarray], seed: int) -> TensorDataset:
    for key in ("x_train", "y_train"):
        if key not in arrays:
            raise DataError(f"missing required array {key!r} (found: {', '.join(sorted(arrays)) or 'none'})")
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise DataError("x_test and y_test must be given together")
    names = arrays.get("channel_names")
    if names is not None and (names.ndim != 1 or names.dtype.kind not in "US"):
        raise DataError("channel_names must be a 1-d array of strings")
    channel_names = [str(n) for n in names.tolist()] if names is not None else None
    return from_arrays(name, arrays["x_train"], arrays["y_train"], arrays.get("x_test"), arrays.get("y_test"),
                        channel_names, seed)


def check_images(key: str, x: np.ndarray, *, full_shape: tuple[int, ...] | None = None) -> None:
    """The contract's checks of an input array; `full_shape` stands for `x.shape` where `x` is only a sample of
    a stored array (a zarr store's metadata gives the shape, a few chunks give the values)."""
    shape = tuple(full_shape) if full_shape is not None else x.shape
    if x.dtype.kind not in "uif":
        raise DataError(f"{key} must be numeric (uint8 or float), got dtype {x.dtype}")
    if len(shape) not in (3, 4):
        raise DataError(f"{key} must have shape (N,C,H,W) or (N,H,W), got rank {len(shape)} shape {shape}")
    if len(shape) == 4 and shape[3] <= 4 < min(shape[1], shape[2]):
        raise DataError(f"{key} has shape {shape}, which looks channel-last (N,H,W,C); "
                        "store it as (N,C,H,W), e.g. x.transpose(0, 3, 1, 2)")
    if shape[0] == 0 or min(shape[1:]) == 0:
        raise DataError(f"{key} is empty: shape {shape}")
    bad = nonfinite(x)
    if bad:
        raise DataError(f"{key} contains {bad}")


def nonfinite(x: np.ndarray) -> str:
    """What makes values unusable, as an error names it ("NaN" or "infinite values"); "" when all are finite."""
    if x.dtype.kind != "f" or np.isfinite(x).all():
        return ""
    return "NaN" if np.isnan(x).any() else "infinite values"


def as_float(x: np.ndarray, *, copy: bool = True) -> np.ndarray:
    """The contract's scaling: uint8 to [0, 1], other numbers as float32; (N, H, W) gains its channel axis."""
    x = x[:, None] if x.ndim == 3 else x
    return x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32, copy=copy)


def _images(key: str, x: np.ndarray) -> np.ndarray:
    check_images(key, x)
    return as_float(x)


def check_labels(key: str, y: np.ndarray, n: int) -> np.ndarray:
    """Integer labels, one per sample, none negative; as int64."""
    if y.ndim != 1:
        raise DataError(f"{key} must have shape (N,), got {y.shape}")
    if y.dtype.kind not in "iu":
        raise DataError(f"{key} must hold integer labels, got dtype {y.dtype}")
    if y.shape[0] != n:
        raise DataError(f"{key} has {y.shape[0]} labels for {n} samples")
    if (y < 0).any():
        raise DataError(f"{key} has negative labels")
    if y.size and y.max() > np.iinfo(np.int64).max:  # uint64: as int64 it would turn negative
        raise DataError(f"{key} has labels beyond 2**63 - 1: labels must be 0..K-1")
    return y.astype(np.int64)


def count_classes(y_train: np.ndarray) -> int:
    """K for labels 0..K-1, each present, K at least 2."""
    num_classes = int(y_train.max()) + 1
    if num_classes < 2:
        raise DataError("y_train has a single class; at least two are needed")
    if num_classes > len(y_train):  # some class is empty; and counting them would ask for K counters (a label 10**12)
        raise DataError(f"y_train's largest label is {num_classes - 1} with {len(y_train)} samples: labels must be "
                        "0..K-1, each class present")
    empty = np.flatnonzero(np.bincount(y_train, minlength=num_classes) == 0)
    if empty.size:
        raise DataError(f"y_train has no samples of class(es) {', '.join(map(str, empty[:10]))}: labels must be 0..K-1")
    return num_classes


def from_arrays(name: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray | None,
                y_test: np.ndarray | None, channel_names: list[str] | None, seed: int) -> TensorDataset:
    """Check arrays of the dataset contract and wrap them; without a test part, a seeded stratified
    `TEST_SHARE` of the training part is held out."""
    x_train = _images("x_train", x_train)
    y_train = check_labels("y_train", y_train, x_train.shape[0])
    num_classes = count_classes(y_train)
    if x_test is not None and y_test is not None:
        x_test = _images("x_test", x_test)
        y_test = check_labels("y_test", y_test, x_test.shape[0])
        if x_test.shape[1:] != x_train.shape[1:]:
            raise DataError(f"x_test samples have shape {x_test.shape[1:]}, x_train {x_train.shape[1:]}")
        if y_test.max() >= num_classes:
            raise DataError(f"y_test has label {int(y_test.max())} not present in y_train")
    else:
        x_train, y_train, x_test, y_test = stratified_split(x_train, y_train, TEST_SHARE, seed)
    if channel_names is not None and len(channel_names) != x_train.shape[1]:
        raise DataError(f"channel_names has {len(channel_names)} names for {x_train.shape[1]} channels")
    names = channel_names or [f"ch{i}" for i in range(x_train.shape[1])]
    return TensorDataset(name, torch.from_numpy(np.ascontiguousarray(x_train)), torch.from_numpy(y_train),
                         torch.from_numpy(np.ascontiguousarray(x_test)), torch.from_numpy(y_test), num_classes, names)


def stratified_split(x: np.ndarray, y: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, ...]:
    """`(x_kept, y_kept, x_held, y_held)`."""
    kept, held = stratified_indices(y, share, seed)
    return x[kept], y[kept], x[held], y[held]


def stratified_indices(y: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted indices `(kept, held)`: `share` of every class held out (at least one sample of each class that has
    two or more), chosen with a seeded generator."""
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    held: list[np.ndarray] = []
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        rng.shuffle(members)
        take = min(max(int(round(len(members) * share)), 1), len(members) - 1) if len(members) > 1 else 0
        held.append(members[:take])
    held_idx = np.sort(np.concatenate(held))
    return np.setdiff1d(np.arange(len(y)), held_idx, assume_unique=True), held_idx
