"""Zarr v3 stores of the dataset contract, on a local disk or in an S3 bucket, checked without a full read.

Why: data sets of many gigabytes live as chunked arrays where they are stored; an `.npz` must be read whole.
A store is opened from its metadata, its labels (small: one integer per sample) are read whole, and its inputs
only in a bounded sample (for NaN and the value range), so that validating a store of terabytes reads megabytes.
What fits the memory budget is then read into a `TensorDataset` (today's in-memory path); what does not is
trained on by streaming its chunks (`masksel_core.data.streaming`).

Credentials and endpoint of `s3://bucket/prefix` URIs come from the AWS_* variables the service uses
(`AWS_S3_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_S3_REGION_NAME`).
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .arrays import (
    TEST_SHARE,
    DataError,
    TensorDataset,
    as_float,
    check_images,
    check_labels,
    count_classes,
    nonfinite,
    stratified_indices,
)

#: Bytes of input values read to look for NaN and infinities: a few chunks, never the whole store.
SAMPLE_BYTES = 64 * 1024**2
#: Samples of one chunk, in every channel as float32, over this are refused: streaming reads them at once, and
#: each reader holds a few such blocks.
MAX_CHUNK_BYTES = 256 * 1024**2


def memory_budget(env: Mapping[str, str] | None = None) -> int:
    """Bytes of float32 inputs a data set may hold in memory before it is streamed instead:
    `MASKSEL_MEMORY_BUDGET` (bytes, or with a K/M/G/T suffix, binary), else an eighth of the machine's memory
    (the in-memory path holds the inputs about twice while it splits them, beside the network and the worker)."""
    env = os.environ if env is None else env
    text = env.get("MASKSEL_MEMORY_BUDGET", "").strip()
    if text:
        return parse_bytes(text, "MASKSEL_MEMORY_BUDGET")
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 * 1024**3
    return int(total) // 8


def parse_bytes(text: str, what: str) -> int:
    """`1073741824`, `512M`, `2G`, `1.5GiB`: a size in bytes (K, M, G, T are powers of 1024)."""
    units = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
    clean = text.strip().upper().removesuffix("IB").removesuffix("B")
    number, unit = (clean[:-1], clean[-1]) if clean[-1:] in units and clean[-1:] != "" else (clean, "")
    try:
        value = float(number) * units[unit]
    except (ValueError, KeyError):
        raise DataError(f"{what} must be a size such as 2G or 536870912, got {text!r}") from None
    if value <= 0:
        raise DataError(f"{what} must be positive, got {text!r}")
    return int(value)


def is_store_uri(spec: str) -> bool:
    """A zarr store by its name: `s3://...`, or a local path ending in `.zarr` (with or without a slash)."""
    return spec.startswith("s3://") or spec.rstrip("/").endswith(".zarr")


def storage_options(uri: str, env: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """fsspec's options for an `s3://` URI from the service's AWS_* variables; None for a local path."""
    if not uri.startswith("s3://"):
        return None
    env = os.environ if env is None else env
    options: dict[str, Any] = {}
    if env.get("AWS_S3_ENDPOINT_URL"):
        options["endpoint_url"] = env["AWS_S3_ENDPOINT_URL"]
    if env.get("AWS_ACCESS_KEY_ID"):
        options["key"], options["secret"] = env["AWS_ACCESS_KEY_ID"], env.get("AWS_SECRET_ACCESS_KEY", "")
    if env.get("AWS_S3_REGION_NAME"):
        options["client_kwargs"] = {"region_name": env["AWS_S3_REGION_NAME"]}
    return options


class StoreError(OSError):
    """A store could not be read while training (a bucket unreachable or gone, a chunk missing): not the run's
    fault, so a service may try again later."""


class ReadCounter:
    """Bytes a store handed out (chunks and metadata), counted as they are read: what serving a mask costs the
    storage, measured rather than predicted."""

    def __init__(self) -> None:
        self.bytes = 0


def _checked_store(store: Any, counter: ReadCounter | None) -> Any:
    """`store` where a chunk that is not there raises (zarr reads it as the fill value, and a store changed after
    its check must not feed zeros to a network), counting the bytes read into `counter`."""
    from zarr.storage import WrapperStore

    class CheckedStore(WrapperStore):  # type: ignore[type-arg]
        async def get(self, key: str, prototype: Any, byte_range: Any = None) -> Any:
            buffer = await self._store.get(key, prototype, byte_range)
            if buffer is None and (key.startswith("c/") or "/c/" in key):
                raise FileNotFoundError(f"chunk {key} is missing")
            if buffer is not None and counter is not None:
                counter.bytes += len(buffer)
            return buffer

    return CheckedStore(store)


def open_group(uri: str, *, options: dict[str, Any] | None = None, counter: ReadCounter | None = None) -> Any:
    """The store's root group, read-only; a DataError that names the store where it cannot be opened.

    A chunk that cannot be fetched raises instead of reading as the fill value (zarr's default for a missing
    key): a bucket or folder deleted mid-run must not feed zeros to the network."""
    import zarr
    from zarr.storage import FsspecStore, LocalStore

    options = options if options is not None else storage_options(uri)
    try:
        store = (FsspecStore.from_url(uri, storage_options=options, read_only=True, allowed_exceptions=())
                 if uri.startswith("s3://") else LocalStore(uri, read_only=True))
        return zarr.open_group(_checked_store(store, counter), mode="r", zarr_format=3)
    except FileNotFoundError:
        raise DataError(f"{uri}: no zarr store there (no zarr.json)") from None
    except Exception as exc:  # noqa: BLE001 - a bucket, a network or a damaged document: all mean "cannot open"
        raise DataError(f"{uri}: cannot be opened as a zarr store ({type(exc).__name__}: {exc})") from None


@dataclass
class StoreDataset:
    """A validated store: its shape, every label, and where its train and test samples are; inputs stay stored.

    `train_rows` are the rows of `x_train` that form the training split (all of them, unless the store has no
    `x_test` and a seeded, stratified `TEST_SHARE` is held out: then `test_rows` are those, read from `x_train`).
    """

    name: str
    uri: str
    input_shape: tuple[int, int, int]
    num_classes: int
    channel_names: list[str]
    y_train: np.ndarray  # (num_train,) labels of the training split, in the order of train_rows
    y_test: np.ndarray  # (num_test,)
    train_rows: np.ndarray
    test_key: str  # "x_test", or "x_train" when the test split is held out of it
    test_rows: np.ndarray
    chunks: dict[str, int]  # samples per chunk along the first axis, of x_train and x_test
    options: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def chunk_samples(self) -> int:
        """Samples per chunk of `x_train`."""
        return self.chunks["x_train"]

    @property
    def num_train(self) -> int:
        return len(self.train_rows)

    @property
    def num_test(self) -> int:
        return len(self.test_rows)

    @property
    def float_bytes(self) -> int:
        """What the in-memory path would hold: every sample as float32."""
        return (self.num_train + self.num_test) * int(np.prod(self.input_shape)) * 4

    def summary(self) -> dict[str, object]:
        return {"name": self.name, "input_shape": list(self.input_shape), "num_classes": self.num_classes,
                "num_train": self.num_train, "num_test": self.num_test, "channel_names": list(self.channel_names)}

    def read_rows(self, key: str, rows: np.ndarray, channels: np.ndarray | None = None,
                  counter: ReadCounter | None = None) -> np.ndarray:
        """float32 inputs (len(rows), C, H, W) of the given rows, in their order, one read per chunk they fall in;
        with `channels`, only those channels' chunks are read (the others are zero)."""
        array = open_array(self.uri, key, options=self.options, counter=counter)
        return read_rows(array, rows, self.input_shape, channels=channels, source=self.uri)

    def to_memory(self) -> TensorDataset:
        """Everything read into a `TensorDataset` (for a store that fits the memory budget)."""
        x_train = self.read_rows("x_train", self.train_rows)
        x_test = self.read_rows(self.test_key, self.test_rows)
        return TensorDataset(self.name, torch.from_numpy(x_train), torch.from_numpy(self.y_train),
                             torch.from_numpy(x_test), torch.from_numpy(self.y_test), self.num_classes,
                             list(self.channel_names))


def open_array(uri: str, key: str, *, options: dict[str, Any] | None = None,
               counter: ReadCounter | None = None) -> Any:
    """An array of a store that was checked, opened anew (safe in a loader's reader process): a store that no
    longer opens is gone since (a `StoreError`), not bad data."""
    try:
        return open_group(uri, options=options, counter=counter)[key]
    except (DataError, KeyError) as exc:
        raise StoreError(f"{uri}: the store could not be opened again ({exc})") from exc


def read_rows(array: Any, rows: np.ndarray, input_shape: tuple[int, int, int], *,
              channels: np.ndarray | None = None, source: str = "") -> np.ndarray:
    """`rows` of a zarr array in their order, read chunk by chunk in the store's order (a contiguous read per
    chunk, then the rows in it); `source` names the store in errors."""
    rows = np.asarray(rows, dtype=np.int64)
    order = np.argsort(rows, kind="stable")
    ordered = rows[order]
    out = np.zeros((len(rows), *input_shape), dtype=np.float32)
    step = int(array.chunks[0])
    done = 0
    for chunk in np.unique(ordered // step):
        start = int(chunk) * step
        here = ordered[(ordered >= start) & (ordered < start + step)]
        first, stop = int(here[0]), int(here[-1]) + 1
        try:
            if channels is None or array.ndim == 3:
                block = as_float(np.asarray(array[first:stop]), copy=False)
            else:
                block = np.zeros((stop - first, *input_shape), dtype=np.float32)
                block[:, channels] = as_float(np.asarray(array.oindex[first:stop, channels]), copy=False)
        except Exception as exc:  # noqa: BLE001 - whatever the bucket or the disk said, the store failed
            raise StoreError(f"{source or array.store_path}: {array.path} samples {first} to {stop - 1} could not "
                             f"be read ({type(exc).__name__}: {exc})") from exc
        bad = nonfinite(block) if array.dtype.kind == "f" else ""  # past what opening the store sampled
        if bad:
            raise DataError(f"{source or array.store_path}: {array.path} contains {bad} (samples {first} to "
                            f"{stop - 1}): the data set cannot be trained on")
        out[order[done:done + len(here)]] = block[here - first]
        done += len(here)
    return out


def load_store(uri: str, *, seed: int = 0, name: str | None = None,
               options: dict[str, Any] | None = None) -> StoreDataset:
    """Open and check a store of the dataset contract, reading labels and a bounded sample of inputs only."""
    options = options if options is not None else storage_options(uri)
    group = open_group(uri, options=options)
    members = set(group.array_keys())
    for key in ("x_train", "y_train"):
        if key not in members:
            raise DataError(f"{uri}: missing required array {key!r} (found: {', '.join(sorted(members)) or 'none'})")
    if ("x_test" in members) != ("y_test" in members):
        raise DataError(f"{uri}: x_test and y_test must be given together")
    x_train = _check_inputs(uri, "x_train", group["x_train"])
    shape = sample_shape(x_train)
    y_all = check_labels("y_train", _read_labels(uri, "y_train", group["y_train"]), x_train.shape[0])
    num_classes = count_classes(y_all)
    if "x_test" in members:
        x_test = _check_inputs(uri, "x_test", group["x_test"])
        if sample_shape(x_test) != shape:
            raise DataError(f"{uri}: x_test samples have shape {sample_shape(x_test)}, x_train {shape}")
        y_test = check_labels("y_test", _read_labels(uri, "y_test", group["y_test"]), x_test.shape[0])
        if y_test.max() >= num_classes:
            raise DataError(f"{uri}: y_test has label {int(y_test.max())} not present in y_train")
        train_rows, test_key, test_rows = np.arange(len(y_all)), "x_test", np.arange(len(y_test))
    else:
        train_rows, test_rows = stratified_indices(y_all, TEST_SHARE, seed)
        test_key, y_test, y_all = "x_train", y_all[test_rows], y_all[train_rows]
    names = _channel_names(uri, group, shape[0])
    chunks = {key: int(group[key].chunks[0]) for key in ("x_train", "x_test") if key in members}
    return StoreDataset(name or _default_name(uri), uri, shape, num_classes, names, y_all, y_test, train_rows,
                        test_key, test_rows, chunks, options)


def _default_name(uri: str) -> str:
    last = uri.rstrip("/").rsplit("/", 1)[-1]
    return last[:-5] if last.endswith(".zarr") else last


def sample_shape(array: Any) -> tuple[int, int, int]:
    """(C, H, W) of an input array's samples ((N, H, W) arrays have one channel)."""
    shape = tuple(int(s) for s in array.shape[1:])
    return (1, *shape) if len(shape) == 2 else shape  # type: ignore[return-value]


def _check_inputs(uri: str, key: str, array: Any) -> Any:
    """Shape, dtype and chunking from the metadata; every chunk present; NaN looked for in a bounded sample."""
    if array.dtype.kind not in "uif":
        raise DataError(f"{uri}: {key} must be numeric (uint8 or float), got dtype {array.dtype}")
    check_images(key, np.empty((0, *array.shape[1:]), dtype=array.dtype), full_shape=array.shape)
    # A read covers a chunk's run of samples in every channel, as float32: what one reader holds per chunk.
    block_bytes = int(array.chunks[0]) * int(np.prod(array.shape[1:])) * 4
    if block_bytes > MAX_CHUNK_BYTES:
        raise DataError(f"{uri}: {key}'s chunks {tuple(array.chunks)} span {array.chunks[0]} samples, "
                        f"{block_bytes / 2**20:.0f} MiB of every channel as float32 (at most "
                        f"{MAX_CHUNK_BYTES // 2**20} MiB): rechunk it, e.g. python -m masksel_core convert")
    _check_chunks_present(uri, key, array)
    _check_sample(uri, key, array)
    return array


def _check_chunks_present(uri: str, key: str, array: Any) -> None:
    """A chunk missing from the store reads as zeros without a word: refuse the store instead."""
    try:
        present = int(array.nchunks_initialized)
    except Exception as exc:  # noqa: BLE001 - listing the bucket failed: the store cannot be trusted
        raise DataError(f"{uri}: cannot list {key}'s chunks ({type(exc).__name__}: {exc})") from None
    if present < int(array.nchunks):
        raise DataError(f"{uri}: {key} has {present} of its {array.nchunks} chunks (a truncated store, or one "
                        "written with write_empty_chunks=False: write it again with python -m masksel_core convert)")


def _check_sample(uri: str, key: str, array: Any) -> None:
    """Read a few whole chunks along the sample axis, spread over the array, and look for NaN and infinities."""
    if array.dtype.kind != "f":
        return
    step = int(array.chunks[0])
    per_chunk = max(step * int(np.prod(array.shape[1:])) * array.dtype.itemsize, 1)
    count = -(-int(array.shape[0]) // step)
    picks = np.unique(np.linspace(0, count - 1, num=min(count, max(1, SAMPLE_BYTES // per_chunk))).astype(int))
    for chunk in picks:
        block = _read(uri, key, array, slice(int(chunk) * step, (int(chunk) + 1) * step))
        bad = nonfinite(block)
        if bad:
            raise DataError(f"{uri}: {key} contains {bad} (samples {chunk * step} to {(chunk + 1) * step - 1})")


def _read(uri: str, key: str, array: Any, where: Any) -> np.ndarray:
    try:
        return np.asarray(array[where])
    except Exception as exc:  # noqa: BLE001 - a damaged or vanished chunk: name it
        raise DataError(f"{uri}: {key} cannot be read ({type(exc).__name__}: {exc})") from None


def _read_labels(uri: str, key: str, array: Any) -> np.ndarray:
    if array.ndim != 1:
        raise DataError(f"{uri}: {key} must have shape (N,), got {tuple(array.shape)}")
    if array.dtype.kind not in "iu":
        raise DataError(f"{uri}: {key} must hold integer labels, got dtype {array.dtype}")
    _check_chunks_present(uri, key, array)
    return _read(uri, key, array, slice(None))


def _channel_names(uri: str, group: Any, channels: int) -> list[str]:
    names = group.attrs.get("channel_names")
    if names is None:
        return [f"ch{i}" for i in range(channels)]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise DataError(f"{uri}: the attribute channel_names must be a list of strings")
    if len(names) != channels:
        raise DataError(f"{uri}: channel_names has {len(names)} names for {channels} channels")
    return list(names)
