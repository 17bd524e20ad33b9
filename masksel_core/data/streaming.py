"""Batches of a stored data set read chunk by chunk, for data that does not fit the memory budget.

Why chunk by chunk: a zarr store is read in whole chunks, so a batch of random rows would read a chunk per row.
Instead each pass shuffles the order of the chunks, reads one chunk at a time (a contiguous range of samples),
and mixes the rows of `buffer_chunks` chunks before it cuts them into batches: random enough for SGD, one read
per chunk. `torch.utils.data.DataLoader` runs `ChunkStream` in worker processes that read ahead while the
network trains; each worker reads its own share of the chunks, and the order depends only on the seed it is
given, so a resumed run reads the same batches.
"""
from __future__ import annotations

import multiprocessing
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from .stores import StoreDataset, StoreError, as_float, open_group

BUFFER_CHUNKS = 4


class ChunkStream(IterableDataset):
    """`(x, y)` batches of the given sorted `rows` of array `key` in the store at `uri`, float32 and int64."""

    def __init__(self, uri: str, key: str, rows: np.ndarray, labels: np.ndarray, batch_size: int, *,
                 shuffle: bool, seed: int = 0, options: dict[str, Any] | None = None,
                 buffer_chunks: int = BUFFER_CHUNKS) -> None:
        self.uri, self.key, self.options = uri, key, options
        self.rows, self.labels = np.asarray(rows, dtype=np.int64), np.asarray(labels, dtype=np.int64)
        self.batch_size, self.shuffle, self.seed, self.buffer_chunks = batch_size, shuffle, seed, buffer_chunks

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        try:
            array = open_group(self.uri, options=self.options)[self.key]
        except Exception as exc:  # noqa: BLE001 - validated before the run: gone since, not bad data
            raise StoreError(f"{self.uri}: the store could not be opened ({exc})") from exc
        step = int(array.chunks[0])
        chunks = np.unique(self.rows // step)
        rng = np.random.default_rng([self.seed, worker])
        if self.shuffle:
            np.random.default_rng(self.seed).shuffle(chunks)
        xs: list[np.ndarray] = []
        ys: list[np.ndarray] = []
        for chunk in chunks[worker::workers]:
            inside = (self.rows >= chunk * step) & (self.rows < (chunk + 1) * step)
            here = self.rows[inside]
            try:
                block = as_float(np.asarray(array[int(here[0]):int(here[-1]) + 1]))
            except Exception as exc:  # noqa: BLE001 - whatever the bucket or the disk said, the store failed
                raise StoreError(f"{self.uri}: {self.key} samples {here[0]} to {here[-1]} could not be read "
                                 f"({type(exc).__name__}: {exc})") from exc
            xs.append(block[here - here[0]])
            ys.append(self.labels[inside])
            if not self.shuffle or len(xs) >= self.buffer_chunks:
                yield from self._cut(xs, ys, rng, keep_rest=True)
        yield from self._cut(xs, ys, rng, keep_rest=False)

    def _cut(self, xs: list[np.ndarray], ys: list[np.ndarray], rng: np.random.Generator, *,
             keep_rest: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches of the buffered rows (mixed when shuffling); a tail shorter than a batch stays buffered."""
        if not xs:
            return
        x, y = (np.concatenate(xs), np.concatenate(ys)) if len(xs) > 1 else (xs[0], ys[0])
        xs.clear()
        ys.clear()
        # Batches gather their rows from the buffer: no permuted copy of the whole buffer is made.
        order = rng.permutation(len(y)) if self.shuffle else np.arange(len(y))
        full = len(y) - len(y) % self.batch_size if keep_rest else len(y)
        for start in range(0, full, self.batch_size):
            rows = order[start:min(start + self.batch_size, full)]
            if self.shuffle and len(rows) == 1 and self.batch_size > 1:
                continue  # a last batch of one breaks BatchNorm and says little (as `training.steps.batches`)
            yield torch.from_numpy(x[rows]), torch.from_numpy(y[rows])
        if full < len(y):
            xs.append(x[order[full:]])
            ys.append(y[order[full:]])


def loader_workers() -> int:
    """Reader processes: `MASKSEL_LOADER_WORKERS`, else half the cores (one on two), none inside a daemon process
    (a prefork pool's child may not start processes of its own)."""
    if multiprocessing.current_process().daemon:
        return 0
    text = os.environ.get("MASKSEL_LOADER_WORKERS", "").strip()
    if text:
        return max(0, int(text))
    return max(1, min(4, (os.cpu_count() or 2) // 2))


def loader(stream: ChunkStream, *, workers: int | None = None, pin_memory: bool = False) -> DataLoader:
    """The stream behind a DataLoader that reads ahead in worker processes (batches are made by the stream)."""
    workers = loader_workers() if workers is None else workers
    return DataLoader(stream, batch_size=None, num_workers=workers, pin_memory=pin_memory,
                      prefetch_factor=2 if workers else None, multiprocessing_context="fork" if workers else None)


class LocalCopy:
    """Rows of a store copied once to an uncompressed local zarr array, read again every epoch from the disk.

    Why: the validation split is a stratified draw of samples, spread over every chunk of the store; reading it
    from the store would read the whole store for every evaluation. The copy is read in its own order."""

    def __init__(self, store: StoreDataset, key: str, rows: np.ndarray, labels: np.ndarray, *, batch: int,
                 workers: int | None = None) -> None:
        import zarr

        base = os.environ.get("MASKSEL_CACHE_DIR") or None
        if base:
            Path(base).mkdir(parents=True, exist_ok=True)
        self.folder = Path(tempfile.mkdtemp(prefix="masksel-split-", dir=base))
        self.uri, self.labels, self.batch = str(self.folder / "split.zarr"), np.asarray(labels), batch
        group = zarr.open_group(self.uri, mode="w")
        target = group.create_array("x", shape=(len(rows), *store.input_shape), chunks=(batch, *store.input_shape),
                                    dtype="float32", compressors=None)
        done = 0
        source = ChunkStream(store.uri, key, rows, labels, batch, shuffle=False, options=store.options)
        for x, _ in loader(source, workers=workers):
            target[done:done + len(x)] = x.numpy()
            done += len(x)
        self.workers = workers

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        stream = ChunkStream(self.uri, "x", np.arange(len(self.labels)), self.labels, self.batch, shuffle=False)
        return iter(loader(stream, workers=0))

    def head(self, count: int) -> np.ndarray:
        """The first `count` rows, in memory."""
        import zarr

        return np.asarray(zarr.open_group(self.uri, mode="r")["x"][:count])

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
