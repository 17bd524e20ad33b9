"""Serve samples of a data set as `masksel_core.transfer.packing` payloads: whole, or only what a run's mask selects.

This is the selective data server of the method: a client with a trained model asks for the
samples it needs and receives only the selected parts, in bytes the mask predicts. For a dynamic run the
run's mask network (`mask_net.ts`) picks each sample's cells here, from the server's copy of the sample. Data sets are
loaded once per process (a few are kept) and a run's plan once per trained mask.
"""
from __future__ import annotations

import json
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

import masksel_core
from masksel_core import (
    DataError,
    ReadCounter,
    StoreDataset,
    StoreError,
    TensorDataset,
    TransferError,
    TransferPlan,
    encode_channel,
    full_plan,
    load_store,
    pack,
    plan_from_mask_document,
)

from . import run_files
from .models import Dataset, Run, RunStatus

MAX_COUNT = masksel_core.MAX_PAGE_SAMPLES  # samples one request packs at most (the core's client asks no more)
DTYPE_CHOICES = ("float32", "float16", "uint8")
_KEEP_DATASETS = 4
_datasets: OrderedDict[tuple[str, int], Any] = OrderedDict()  # data sets in memory, and stores' layouts
_plans: dict[tuple[int, float], TransferPlan] = {}
_mask_nets: dict[tuple[int, float], torch.jit.ScriptModule] = {}  # dynamic runs' server halves (`mask_net.ts`)
_lock = threading.Lock()
# Encoded JPEG versions, per (data set, seed, split, channel, quality): encoded once, sent many times.
_JPEG_CACHE_BYTES = 512 * 2**20
_jpegs: OrderedDict[tuple[str, int, str, int, int], list[bytes]] = OrderedDict()
_jpeg_bytes = 0


class SampleRequestError(ValueError):
    """A request the server refuses (400), with the reason."""


@dataclass(frozen=True)
class SamplePage:
    payload: bytes
    total: int
    plan: TransferPlan
    bytes_read: int | None = None  # what a zarr store handed out to serve the page (None: a file held in memory)
    chunk_samples: int | None = None  # pages aligned to this many samples read no chunk twice (a store's split)


def _kept(key: tuple[str, int], load: Callable[[], Any]) -> Any:
    """What `load` gives for `key`, kept in this process (the least recently used out past _KEEP_DATASETS)."""
    with _lock:
        if key in _datasets:
            _datasets.move_to_end(key)
            return _datasets[key]
    value = load()
    with _lock:
        _datasets[key] = value
        while len(_datasets) > _KEEP_DATASETS:
            _datasets.popitem(last=False)
    return value


def _dataset_tensors(dataset: Dataset, seed: int) -> TensorDataset:
    """The data set as training split it (the seed decides the hold-out of files without a test split)."""
    return _kept((dataset.source, seed), lambda: masksel_core.load_dataset(dataset.source, seed=seed))


def run_plan(run: Run) -> TransferPlan:
    """The transfer plan of a run's trained mask (from its `mask.json`)."""
    # A succeeded run's mask never changes; its finish time tells it from a later run that got the same id
    # (SQLite reuses the highest id after a delete). Read from storage only when the plan is not kept yet.
    key = (run.pk, run.finished_at)
    plan = _plans.get(key) if run.status == RunStatus.SUCCEEDED else None
    if plan is None:
        document = run_files.read_bytes(run.pk, "mask.json") if run.status == RunStatus.SUCCEEDED else None
        if document is None:
            raise SampleRequestError(f"run {run.pk} has no trained mask (it is {run.status}); "
                                     "samples can be packed for succeeded runs only")
        plan = plan_from_mask_document(json.loads(document))
        _plans[key] = plan
    return plan


def run_mask_net(run: Run) -> torch.jit.ScriptModule:
    """A dynamic run's mask network, which picks each sample's cells here, where the data lives."""
    key = (run.pk, run.finished_at)
    net = _mask_nets.get(key)
    if net is None:
        path = run_files.fetch(run.pk, "mask_net.ts")
        if path is None:
            raise SampleRequestError(f"run {run.pk} has no mask network (mask_net.ts) to pick its cells")
        with warnings.catch_warnings(action="ignore", category=FutureWarning):
            net = torch.jit.load(str(path), map_location="cpu").eval()
        _mask_nets[key] = net
    return net


def _int_param(params: Any, name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise SampleRequestError(f"{name} must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise SampleRequestError(f"{name} must be between {low} and {high}, got {value}")
    return value


def sample_page(dataset: Dataset, run: Run | None, params: Any) -> SamplePage:
    """Samples `start .. start+count` of a split, packed whole or for `run`'s mask."""
    unknown = sorted(set(params) - {"run", "whole", "start", "count", "split", "dtype", "compress", "format"})
    if unknown:
        raise SampleRequestError(f"unknown parameter(s): {', '.join(unknown)}")
    split = params.get("split") or "test"
    if split not in ("train", "test"):
        raise SampleRequestError(f"split must be train or test, got {split!r}")
    dtype = params.get("dtype") or "float32"
    if dtype not in DTYPE_CHOICES:
        raise SampleRequestError(f"dtype must be one of {', '.join(DTYPE_CHOICES)}, got {dtype!r}")
    compress, whole = _flag(params, "compress"), _flag(params, "whole")
    if run is not None and run.dataset_id != dataset.pk:
        raise SampleRequestError(f"run {run.pk} was trained on another data set, not on {dataset.pk}")
    # The run's split (a data set without its own test part is split by the run's seed), its mask unless `whole`:
    # the same samples whole, to compare with.
    seed = int(run.config.get("seed", 0)) if run is not None else 0
    run = None if whole else run
    plan = run_plan(run) if run is not None else None
    if dataset.uri:
        return _store_page(dataset, run, plan, seed, split, params, dtype=dtype, compress=compress)
    data = _dataset_tensors(dataset, seed)
    x, y = (data.x_test, data.y_test) if split == "test" else (data.x_train, data.y_train)
    total = int(x.shape[0])
    start, stop = _page_range(params, total)
    plan = plan or full_plan(data.input_shape)

    def encoded(channel: int, quality: int) -> list[bytes]:
        return _encoded_split(dataset.source, seed, split, x, channel, quality)[start:stop]

    return SamplePage(_pack(x[start:stop], y[start:stop], plan, run, dtype=dtype, compress=compress,
                            encoded=encoded), total, plan)


def _flag(params: Any, name: str) -> bool:
    flag = str(params.get(name) or "0").lower()
    if flag not in ("0", "1", "false", "true", "no", "yes"):
        raise SampleRequestError(f"{name} must be true or false, got {params.get(name)!r}")
    return flag in ("1", "true", "yes")


def _page_range(params: Any, total: int) -> tuple[int, int]:
    start = _int_param(params, "start", 0, 0, max(total - 1, 0))
    count = _int_param(params, "count", min(256, total), 1, MAX_COUNT)
    return start, min(start + count, total)


def _store_page(dataset: Dataset, run: Run | None, plan: TransferPlan | None, seed: int, split: str, params: Any,
                *, dtype: str, compress: bool) -> SamplePage:
    """A page of a zarr store: only its samples' chunks of the channels the plan sends are read, and counted."""
    store = _store(dataset.uri, seed)
    key, rows, labels = ((store.test_key, store.test_rows, store.y_test) if split == "test"
                         else ("x_train", store.train_rows, store.y_train))
    start, stop = _page_range(params, len(rows))
    plan = plan or full_plan(store.input_shape)
    counter = ReadCounter()
    x = torch.from_numpy(store.read_rows(key, rows[start:stop], channels=np.array(plan.kept_channels(), dtype=np.int64),
                                         counter=counter))
    payload = _pack(x, torch.from_numpy(labels[start:stop]), plan, run, dtype=dtype, compress=compress,
                    encoded=lambda channel, quality: encode_channel(x, channel, quality))
    contiguous = len(rows) and int(rows[-1]) - int(rows[0]) + 1 == len(rows)
    chunk = store.chunks[key] if contiguous else None
    return SamplePage(payload, len(rows), plan, counter.bytes, chunk)


def _store(uri: str, seed: int) -> StoreDataset:
    """A store's layout (labels, splits), checked once per process and seed; its inputs stay stored."""
    def load() -> StoreDataset:
        try:
            return load_store(uri, seed=seed)
        except DataError as exc:  # it was checked when it was registered: it has changed or gone since
            raise StoreError(f"the data set's store no longer reads: {exc}") from exc

    return _kept((f"store:{uri}", seed), load)


def _pack(x: torch.Tensor, y: torch.Tensor, plan: TransferPlan, run: Run | None, *, dtype: str, compress: bool,
          encoded: Any) -> bytes:
    cells = None
    if plan.kind == "dynamic" and run is not None:
        with torch.no_grad():
            cells = run_mask_net(run)(x)
    try:
        return pack(x, plan, labels=y, dtype=dtype, compress=compress,
                    encoded=encoded if plan.kind == "jpeg" else None, cells=cells)
    except TransferError as exc:  # values the wire type asked for cannot carry
        raise SampleRequestError(str(exc)) from None


def _encoded_split(source: str, seed: int, split: str, x: Any, channel: int, quality: int) -> list[bytes]:
    """One channel of a whole split as JPEGs at one quality, kept (least recently used out past 512 MiB)."""
    global _jpeg_bytes
    key = (source, seed, split, channel, quality)
    with _lock:
        if key in _jpegs:
            _jpegs.move_to_end(key)
            return _jpegs[key]
    images = encode_channel(x, channel, quality)
    with _lock:
        if key not in _jpegs:
            _jpegs[key] = images
            _jpeg_bytes += sum(len(image) for image in images)
            while _jpeg_bytes > _JPEG_CACHE_BYTES and len(_jpegs) > 1:
                _, dropped = _jpegs.popitem(last=False)
                _jpeg_bytes -= sum(len(image) for image in dropped)
        return _jpegs[key]
