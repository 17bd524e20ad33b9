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

from .stores import StoreDataset, open_array, read_rows, sample_shape

BUFFER_CHUNKS, BUFFER_BYTES = 4, 64 * 1024**2


class ChunkStream(IterableDataset):
    """`(x, y)` batches of the given sorted `rows` of array `key` in the store at `uri`, float32 and int64."""

    def __init__(self, uri: str, key: str, rows: np.ndarray, labels: np.ndarray, batch_size: int, *,
                 shuffle: bool, seed: int = 0, options: dict[str, Any] | None = None,
                 buffer_chunks: int = BUFFER_CHUNKS) -> None:
        self.uri, self.key, self.options = uri, key, options
        self.rows, self.labels = np.asarray(rows, dtype=np.int64), np.asarray(labels, dtype=np.int64)
        if len(self.rows) != len(self.labels) or (np.diff(self.rows) <= 0).any():
            raise ValueError("ChunkStream takes sorted, distinct rows and one label per row")
        self.batch_size, self.shuffle, self.seed, self.buffer_chunks = batch_size, shuffle, seed, buffer_chunks

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        array = open_array(self.uri, self.key, options=self.options)
        shape = sample_shape(array)
        step = int(array.chunks[0])
        chunks = np.unique(self.rows // step)
        # Chunks mixed at once: BUFFER_BYTES of float32 samples (at least one chunk's), at most `buffer_chunks`.
        block_bytes = step * int(np.prod(array.shape[1:])) * 4
        buffered = max(1, min(self.buffer_chunks, BUFFER_BYTES // max(block_bytes, 1)))
        rng = np.random.default_rng([self.seed, worker])
        if self.shuffle:
            np.random.default_rng(self.seed).shuffle(chunks)
        xs: list[np.ndarray] = []
        ys: list[np.ndarray] = []
        for chunk in chunks[worker::workers]:
            inside = (self.rows >= chunk * step) & (self.rows < (chunk + 1) * step)
            xs.append(read_rows(array, self.rows[inside], shape, source=self.uri))
            ys.append(self.labels[inside])
            if not self.shuffle or len(xs) >= buffered:
                yield from self._cut(xs, ys, rng, keep_rest=True)
        yield from self._cut(xs, ys, rng, keep_rest=False)

    def _cut(self, xs: list[np.ndarray], ys: list[np.ndarray], rng: np.random.Generator, *,
             keep_rest: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches of the buffered rows (mixed when shuffling); a tail shorter than a batch stays buffered.
        Each batch gathers its rows from the buffered chunks: the buffer is never copied whole."""
        if not xs:
            return
        offsets = np.cumsum([0] + [len(y) for y in ys])
        chunks, labels = list(xs), np.concatenate(ys)
        xs.clear()
        ys.clear()
        order = rng.permutation(len(labels)) if self.shuffle else np.arange(len(labels))

        def gather(rows: np.ndarray) -> np.ndarray:
            which = np.searchsorted(offsets, rows, side="right") - 1
            return np.stack([chunks[c][r] for c, r in zip(which, rows - offsets[which], strict=True)])

        full = len(labels) - len(labels) % self.batch_size if keep_rest else len(labels)
        for start in range(0, full, self.batch_size):
            rows = order[start:min(start + self.batch_size, full)]
            if self.shuffle and len(rows) == 1 and self.batch_size > 1:
                continue  # a last batch of one breaks BatchNorm and says little (as `training.steps.batches`)
            yield torch.from_numpy(gather(rows)), torch.from_numpy(labels[rows])
        if full < len(labels):
            xs.append(gather(order[full:]))
            ys.append(labels[order[full:]])


def loader_workers() -> int:
    """Reader processes: `MASKSEL_LOADER_WORKERS`, else half the cores up to four, and none on two cores or fewer
    (measured on two cores: a reader competing with the network's threads made an epoch slower, not faster, and
    its copy of the trainer's pages cost about 1 GiB); none inside a daemon process (a prefork pool's child may
    not start processes of its own)."""
    if multiprocessing.current_process().daemon:
        return 0
    text = os.environ.get("MASKSEL_LOADER_WORKERS", "").strip()
    if text:
        return max(0, int(text))
    cores = os.cpu_count() or 1
    return 0 if cores <= 2 else min(4, cores // 2)


def loader(stream: ChunkStream, *, workers: int | None = None, pin_memory: bool = False) -> DataLoader:
    """The stream behind a DataLoader that reads ahead in worker processes (batches are made by the stream)."""
    workers = loader_workers() if workers is None else workers
    return DataLoader(stream, batch_size=None, num_workers=workers, pin_memory=pin_memory,
                      prefetch_factor=2 if workers else None, multiprocessing_context="fork" if workers else None)


class LocalCopy:
    """Rows of a store copied once to an uncompressed local zarr array, read again every epoch from the disk.

    Why: the validation split is a stratified draw of samples, spread over every chunk of the store; reading it
    from the store would read the whole store for every evaluation. The copy is read in its own order."""

    def __init__(self, store: StoreDataset, key: str, rows: np.ndarray, labels: np.ndarray, *, batch: int) -> None:
        base = os.environ.get("MASKSEL_CACHE_DIR") or None
        if base:
            Path(base).mkdir(parents=True, exist_ok=True)
        self.folder = Path(tempfile.mkdtemp(prefix="masksel-split-", dir=base))
        self.uri, self.batch = str(self.folder / "split.zarr"), batch
        try:
            self.labels = self._copy(store, key, rows, labels)
        except BaseException:
            self.close()  # a copy that failed halfway (the store gone, a cancel) leaves nothing on the disk
            raise

    def _copy(self, store: StoreDataset, key: str, rows: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Write the rows and their labels as they are delivered; the labels as written. The copy is read here,
        in the rows' order (several readers would interleave their chunks), so that its first rows are the same
        whatever the host: a dynamic run's probe and gallery are those."""
        import zarr

        group = zarr.open_group(self.uri, mode="w")
        target = group.create_array("x", shape=(len(rows), *store.input_shape), chunks=(self.batch, *store.input_shape),
                                    dtype="float32", compressors=None)
        written = np.empty(len(rows), dtype=np.int64)
        done = 0
        source = ChunkStream(store.uri, key, rows, labels, self.batch, shuffle=False, options=store.options)
        for x, y in loader(source, workers=0):
            target[done:done + len(x)] = x.numpy()
            written[done:done + len(x)] = y.numpy()
            done += len(x)
        return written

    def batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        stream = ChunkStream(self.uri, "x", np.arange(len(self.labels)), self.labels, self.batch, shuffle=False)
        return iter(loader(stream, workers=0))

    def head(self, count: int) -> np.ndarray:
        """The first `count` rows, in memory."""
        import zarr

        return np.asarray(zarr.open_group(self.uri, mode="r")["x"][:count])

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
