"""The splits of a stored data set too large for memory: the same interface as `steps.Splits`, streamed.

Training batches come from the store chunk by chunk (`data.streaming.ChunkStream` in reader processes); the
validation split is copied once to the local disk and read from there every epoch; only a bounded `probe` of it
(what a dynamic mask's share and gallery are measured on) and the labels are held in memory.
"""
from __future__ import annotations

import traceback
from collections.abc import Callable, Iterator

import numpy as np
import torch

from ..data.arrays import DataError, stratified_indices
from ..data.stores import StoreDataset
from ..data.streaming import ChunkStream, LocalCopy, loader
from .steps import eval_batch

# Validation inputs held in memory for a dynamic mask's share and gallery: this many, and at most PROBE_BYTES.
PROBE_SIZE, PROBE_BYTES = 2048, 64 * 1024**2
Transform = Callable[[torch.Tensor], torch.Tensor]


def probe_count(input_shape: tuple[int, int, int], available: int) -> int:
    """How many validation inputs a streamed run holds as its probe."""
    return max(1, min(PROBE_SIZE, PROBE_BYTES // (int(np.prod(input_shape)) * 4), available))


def read_ahead(stream: ChunkStream, workers: int | None, *, pin_memory: bool = False
               ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The stream's batches through `data.streaming.loader`, its reader processes stopped as soon as it fails.

    Why: a reader's error (a chunk gone from the bucket) reaches the trainer through the DataLoader's iterator,
    whose frames the error's traceback keeps. The iterator then outlives the run until the garbage collector
    breaks the cycle, and a reader process shut down from there does not hear its stop signal: torch waits
    5 s for it, then kills it. Clearing the finished frames' locals (the traceback still prints) lets the
    iterator go at once, and its readers stop in milliseconds."""
    batches = iter(loader(stream, workers=workers, pin_memory=pin_memory))
    try:
        yield from batches
    except BaseException as error:
        traceback.clear_frames(error.__traceback__)
        del batches
        raise


class StreamedSplits:
    """Fit and validation parts of a `StoreDataset`'s training split, stratified and seeded as in memory."""

    def __init__(self, store: StoreDataset, *, val_share: float, seed: int, batch_size: int, device: torch.device,
                 transform: Transform | None = None, workers: int | None = None) -> None:
        fit, val = stratified_indices(store.y_train, val_share, seed)
        if len(val) == 0:
            raise DataError("the training split has a single sample of every class: nothing is left for validation")
        self.store, self.batch_size, self.device, self.workers = store, batch_size, device, workers
        self.transform = transform or (lambda x: x)
        self.fit_rows, self.y_fit_np = store.train_rows[fit], store.y_train[fit]
        self.num_fit = len(fit)
        self.eval_batch = eval_batch(store.input_shape)
        self.copy = LocalCopy(store, "x_train", store.train_rows[val], store.y_train[val], batch=self.eval_batch)
        self.y_val = torch.from_numpy(self.copy.labels).to(device)  # in the copy's order, as its inputs
        self.probe_size = probe_count(store.input_shape, len(val))
        self.probe_labels = self.y_val[:self.probe_size]
        self._probe: torch.Tensor | None = None

    @property
    def probe(self) -> torch.Tensor:
        """The first validation inputs, read when first asked for (a dynamic mask measures its share on them)."""
        if self._probe is None:
            self._probe = self.transform(torch.from_numpy(self.copy.head(self.probe_size))).to(self.device)
        return self._probe

    def fit_batches(self, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch's batches; the order is drawn from `generator`, so a resumed run reads the same ones."""
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
        stream = ChunkStream(self.store.uri, "x_train", self.fit_rows, self.y_fit_np, self.batch_size,
                             shuffle=True, seed=seed, options=self.store.options)
        for x, y in read_ahead(stream, self.workers, pin_memory=self.device.type == "cuda"):
            yield self.transform(x).to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def val_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y in self.copy.batches():
            yield self.transform(x).to(self.device), y.to(self.device)

    def test_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The test split, read once in order (for the score of the written model)."""
        stream = ChunkStream(self.store.uri, self.store.test_key, self.store.test_rows, self.store.y_test,
                             self.eval_batch, shuffle=False, options=self.store.options)
        for x, y in read_ahead(stream, self.workers):
            yield self.transform(x).to(self.device), y.to(self.device)

    def close(self) -> None:
        self.copy.close()
