"""A data set larger than memory: the streamed path's peak memory and its throughput against the in-memory path.

Why: the paper's `remote` set (24,694 samples of 36x35x35, 4.4 GB as float32) is more than masksel holds in memory
on a small host; `load_dataset` hands such a zarr store to `train` as a `StoreDataset`, which streams it.
- Writes a stand-in of `remote` at full size (`synthetic-remote`'s generator: four channels and their noisy copies
  carry the 12 classes), chunked as `convert.chunk_shape` says, five chunks of samples at a time, and a second
  store of its first `--subset` samples.
- Memory: trains (allconvnet, channel-any, a warm-up and a selection epoch, test score, transfer summary) on the
  full store in a child process with MASKSEL_MEMORY_BUDGET=1G, sampling every 0.2 s the resident memory (VmRSS)
  of its process tree (the trainer and its DataLoader readers), beside it PSS (pages shared since the fork counted
  once). A whole epoch takes minutes on 2 cores, so each epoch's training stream is cut to `--batches` batches
  (0: whole epochs); the validation copy, the validation passes and the test pass read the whole store.
  Goal: at most 1.5 GiB.
- Throughput: the subset store trained streamed and in memory, one run each, one warm-up epoch: fit samples over
  the warm-up record's `seconds` (its training and validation passes; `train()`'s wall time would add one-off
  work: building the model, the streamed validation copy, the test pass). Goal: streamed >= 0.85x in memory.

    python benchmarks/data_scale.py [--samples 24694] [--subset 4000] [--batches 15] [--batch-size 128]
                                    [--dir DIR --keep]
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FULL_SAMPLES, GOAL_GIB, GOAL_RATIO = 24_694, 1.5, 0.85
BUDGETS = {"full": None, "streamed": 1, "in-memory": 2**62}  # None: MASKSEL_MEMORY_BUDGET decides


def write(path: Path, samples: int, source: Path | None = None) -> None:
    """x_train and y_train, five chunks of samples at a time: generated, or the first `samples` of `source`."""
    import zarr

    from masksel_core.data import synthetic
    from masksel_core.data.convert import chunk_shape

    rng = np.random.default_rng(0)
    base = rng.uniform(*synthetic._REMOTE_BASE, size=36).astype(np.float32)
    origin = zarr.open_group(source, mode="r") if source is not None else None
    group = zarr.open_group(path, mode="w")
    shape = (samples, 36, 35, 35)
    x = group.create_array("x_train", shape=shape, dtype="float32", chunks=chunk_shape(shape, 4))
    y = group.create_array("y_train", shape=(samples,), dtype="int64", chunks=chunk_shape((samples,), 8))
    with zarr.config.set({"array.write_empty_chunks": True}):
        for start in range(0, samples, x.chunks[0] * 5):
            part = slice(start, min(start + x.chunks[0] * 5, samples))
            x[part], y[part] = ((origin["x_train"][part], origin["y_train"][part]) if origin is not None
                                else synthetic._remote_split(rng, part.stop - part.start, base))
    group.attrs.update({"channel_names": list(synthetic.SYNTHETIC_REMOTE_CHANNELS), "complete": samples})


def complete(path: Path, samples: int) -> bool:
    """Whether a store of `samples` was written to the end there."""
    import zarr

    try:
        return zarr.open_group(path, mode="r").attrs.get("complete") == samples
    except Exception:  # noqa: BLE001 - missing or half written: write it again
        return False


def descendants(pid: int) -> list[int]:
    """The process ids below `pid`: psutil's answer where it is installed, else /proc's children lists."""
    try:
        import psutil

        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except ImportError:
        kids, todo = [], [pid]
        while todo:
            for children in glob.glob(f"/proc/{todo.pop()}/task/*/children"):
                found = [int(c) for c in Path(children).read_text().split()]
                kids, todo = kids + found, todo + found
        return kids


def tree_memory(pid: int) -> np.ndarray:
    """Bytes: RSS and PSS summed over `pid` and its descendants, the RSS of `pid` alone (the trainer), and the USS
    (private pages) of its descendants (the DataLoader's readers)."""
    try:
        kids = descendants(pid)
    except Exception:  # noqa: BLE001 - the process ended between two looks
        return np.zeros(4)
    status, smaps = ({p: kib(f"/proc/{p}/{name}") for p in (pid, *kids)} for name in ("status", "smaps_rollup"))
    return 1024.0 * np.array([sum(s.get("VmRSS", 0) for s in status.values()),
                              sum(s.get("Pss", 0) for s in smaps.values()), status[pid].get("VmRSS", 0),
                              sum(smaps[p].get("Private_Clean", 0) + smaps[p].get("Private_Dirty", 0) for p in kids)])


def kib(path: str) -> dict[str, int]:
    """The `Key: 123 kB` lines of a /proc file."""
    try:
        with open(path) as handle:
            return {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in handle if line.endswith("kB\n"))}
    except (OSError, ValueError):
        return {}


def run_child(mode: str, uri: Path, args: argparse.Namespace, folder: Path) -> dict:
    """One training run in a child process, its tree's memory sampled every 0.2 s until it ends (peaks in GiB)."""
    out = folder / "cache" / f"{mode}.json"
    env = {**os.environ, "MASKSEL_MEMORY_BUDGET": args.budget, "MASKSEL_CACHE_DIR": str(folder / "cache")}
    command = [sys.executable, __file__, "--child", mode, "--uri", str(uri), "--out", str(out),
               "--batches", str(args.batches), "--batch-size", str(args.batch_size)]
    started, peak = time.perf_counter(), np.zeros(4)
    child = subprocess.Popen(command, env=env)
    while child.poll() is None:
        peak = np.maximum(peak, tree_memory(child.pid))
        time.sleep(0.2)
    if child.returncode:
        raise SystemExit(f"the {mode} run failed (exit {child.returncode})")
    peaks = dict(zip(("rss", "pss", "trainer", "readers"), peak / 2**30, strict=True))
    return {**json.loads(out.read_text()), **peaks, "elapsed": time.perf_counter() - started}


def child_main(args: argparse.Namespace) -> None:
    import itertools

    from masksel_core import TrainConfig, load_dataset, train
    from masksel_core.data.arrays import stratified_indices
    from masksel_core.data.stores import StoreDataset
    from masksel_core.training.streamed import StreamedSplits

    data = load_dataset(str(args.uri), budget=BUDGETS[args.child])
    if isinstance(data, StoreDataset) != (args.child != "in-memory"):
        raise SystemExit(f"{args.child}: load_dataset gave a {type(data).__name__} (see --budget)")
    if args.child == "full" and args.batches:  # each epoch's training stream cut short (see the docstring)
        whole = StreamedSplits.fit_batches
        StreamedSplits.fit_batches = lambda self, g: itertools.islice(whole(self, g), args.batches)
    config = TrainConfig(mask_type="channel-any", model="allconvnet", epochs=1, warmup_epochs=1, finalize_epochs=0,
                         batch_size=args.batch_size, device="cpu", target_fraction=None)
    records: list = []
    result = train(config, data, on_epoch=records.append,
                   should_stop=lambda: args.child != "full" and bool(records))  # throughput: the warm-up only
    fit = len(stratified_indices(np.asarray(data.y_train), config.val_share, config.seed)[0])
    warmup = next(r for r in result.records if r.phase == "warmup")
    Path(args.out).write_text(json.dumps({"fit": fit, "rate": fit / warmup.seconds, "val_accuracy": warmup.val_accuracy,
                                          "test_accuracy": result.test_accuracy}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=FULL_SAMPLES, help="samples in the large store")
    parser.add_argument("--subset", type=int, default=4000, help="samples in the throughput runs' store")
    parser.add_argument("--batches", type=int, default=15, help="training batches per epoch of the memory run")
    parser.add_argument("--batch-size", type=int, default=128, help="training batch (the network's activations "
                        "weigh most of the trainer's memory: allconvnet at 128 on 36x35x35 needs about 1.6 GiB alone)")
    parser.add_argument("--budget", default="1G", help="MASKSEL_MEMORY_BUDGET of the full-store run (below its size)")
    parser.add_argument("--dir", type=Path, help="where the stores go (default: a new folder under /tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the stores (and reuse them next time)")
    parser.add_argument("--child", choices=tuple(BUDGETS), help=argparse.SUPPRESS)
    parser.add_argument("--uri", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child_main(args)
    import torch

    folder = args.dir or Path(tempfile.mkdtemp(prefix="masksel-data-scale-", dir="/tmp"))
    (folder / "cache").mkdir(parents=True, exist_ok=True)
    big, small = folder / "remote.zarr", folder / "remote-head.zarr"
    subset = min(args.subset, args.samples)
    try:
        started = time.perf_counter()
        for path, samples, source in ((big, args.samples, None), (small, subset, big)):
            if not (args.keep and complete(path, samples)):
                write(path, samples, source)
        written = time.perf_counter() - started
        disk = sum(f.stat().st_size for f in big.rglob("*") if f.is_file()) / 2**30
        full = run_child("full", big, args, folder)
        streamed = run_child("streamed", small, args, folder)
        memory = run_child("in-memory", small, args, folder)
    finally:
        if not args.keep:  # a folder of our own goes whole; in one given, what we wrote
            for path in [folder] if args.dir is None else [big, small, folder / "cache"]:
                shutil.rmtree(path, ignore_errors=True)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    workers = os.environ.get("MASKSEL_LOADER_WORKERS") or "default"
    print(f"machine: {os.cpu_count()} cores, {cpu}, {torch.get_num_threads()} torch threads, "
          f"MASKSEL_LOADER_WORKERS={workers}, MASKSEL_MEMORY_BUDGET={args.budget}; allconvnet, batch "
          f"{args.batch_size}")
    print(f"stores: {args.samples:,} x 36x35x35 float32 ({args.samples * 36 * 35 * 35 * 4 / 2**30:.2f} GiB, "
          f"{disk:.2f} GiB on disk) and its first {subset:,}, written or checked in {written:.0f} s; memory run "
          f"{full['elapsed']:.0f} s ({args.batches or 'all'} batches per epoch), throughput runs "
          f"{streamed['elapsed']:.0f} s and {memory['elapsed']:.0f} s")
    ratio = streamed["rate"] / memory["rate"]
    print("| what | value | goal | met? |\n|---|---:|---:|---|")
    for row in (
        ("peak RSS, process tree, streamed, full store", f"{full['rss']:.2f} GiB", f"<= {GOAL_GIB} GiB",
         "yes" if full["rss"] <= GOAL_GIB else "no"),
        ("peak PSS, process tree, streamed, full store", f"{full['pss']:.2f} GiB", "", ""),
        ("peak RSS of the trainer / USS of its readers", f"{full['trainer']:.2f} / {full['readers']:.2f} GiB", "", ""),
        ("test accuracy, streamed, full store (chance 0.083)", f"{full['test_accuracy']:.3f}", "", ""),
        (f"peak RSS, streamed / in memory, {subset:,} samples", f"{streamed['rss']:.2f} / {memory['rss']:.2f} GiB",
         "", ""),
        (f"warm-up samples/s, in memory ({memory['fit']:,} fit samples)", f"{memory['rate']:.1f}", "", ""),
        ("warm-up samples/s, streamed", f"{streamed['rate']:.1f}", "", ""),
        ("streamed / in memory", f"{ratio:.3f}x", f">= {GOAL_RATIO}x", "yes" if ratio >= GOAL_RATIO else "no"),
        ("warm-up val accuracy, streamed / in memory", f"{streamed['val_accuracy']:.3f} / "
         f"{memory['val_accuracy']:.3f}", "", ""),
    ):
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
