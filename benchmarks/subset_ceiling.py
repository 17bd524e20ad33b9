"""How good can a k-pixel set get under the method benchmark's protocol? A hill climb over single swaps.

Starting from a peer's set (or given indices), every set one swap away (one chosen pixel out, one other in)
is scored by the protocol's own retrain (`quality.evaluate_pixels`) on the *validation* part of the training
split: the accuracy of the epoch early stopping keeps, averaged over ``--score-seeds`` seeds. The best swap
is taken while it raises that score, for at most ``--rounds`` rounds. The start and the final set are then
scored on the test split over ``--test-seeds`` seeds, as `quality.py` scores every selector.

This retrains the MLP thousands of times (k * (64 - k) sets per round): it is a measuring stick for issue 7
(how far above the best peer any k-pixel set gets at all), not a selector for the benchmark's table.

    python benchmarks/subset_ceiling.py --budget 4 --start extra-trees --rounds 3 --workers 14
    python benchmarks/subset_ceiling.py --budget 16 --start 2,3,10,... --rounds 1
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from multiprocessing import get_context
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import peers, quality  # noqa: E402

N_PIXELS = quality.N_PIXELS


def _init_worker() -> None:
    torch.set_num_threads(1)  # one process per core: these networks are too small to gain from threads


def _val_score(job: tuple[tuple[int, ...], tuple[int, ...]]) -> float:
    chosen, seeds = job
    return statistics.mean(quality.evaluate_pixels(list(chosen), seed, report="val") for seed in seeds)


def start_set(start: str, k: int) -> tuple[int, ...]:
    """A peer's set for seed 0 (by its name in `peers.SELECTORS`), or comma-separated pixel indices."""
    if start in peers.SELECTORS:
        x_train, y_train, _, _ = quality.digits_split()
        return tuple(sorted(peers.select(peers.SELECTORS[start], x_train, y_train, [k], 0)[k][0]))
    chosen = tuple(sorted({int(i) for i in start.split(",")}))
    if len(chosen) != k or not all(0 <= i < N_PIXELS for i in chosen):
        raise SystemExit(f"--start must name a peer or give {k} distinct pixel indices below {N_PIXELS}")
    return chosen


def climb(chosen: tuple[int, ...], rounds: int, score_seeds: tuple[int, ...], pool) -> tuple[int, ...]:  # type: ignore[no-untyped-def]
    best = pool.map(_val_score, [(chosen, score_seeds)])[0]
    print(f"| 0 | {list(chosen)} | {best:.4f} | start |", flush=True)
    for number in range(1, rounds + 1):
        trials = [tuple(sorted((set(chosen) - {out}) | {new})) for out in chosen
                  for new in range(N_PIXELS) if new not in chosen]
        started = time.perf_counter()
        scores = pool.map(_val_score, [(trial, score_seeds) for trial in trials], chunksize=4)
        top = max(range(len(trials)), key=scores.__getitem__)
        took = time.perf_counter() - started
        if scores[top] <= best:
            print(f"| {number} | {list(chosen)} | {best:.4f} | no swap raises it ({len(trials)} tried, {took:.0f} s) |")
            break
        chosen, best = trials[top], scores[top]
        print(f"| {number} | {list(chosen)} | {best:.4f} | best of {len(trials)} swaps, {took:.0f} s |", flush=True)
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=4)
    parser.add_argument("--start", default="extra-trees", help="a peer's name or comma-separated pixel indices")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--score-seeds", type=int, default=2)
    parser.add_argument("--test-seeds", type=int, default=3)
    args = parser.parse_args()
    k = args.budget
    if not 0 < k < N_PIXELS:
        raise SystemExit(f"--budget must be between 1 and {N_PIXELS - 1}")
    chosen = start_set(args.start, k)
    print(f"budget {k}, start {args.start}, score = validation accuracy, mean of {args.score_seeds} seeds")
    print("| round | set | validation score | note |\n|---|---|---:|---|")
    with get_context("spawn").Pool(args.workers, initializer=_init_worker) as pool:
        final = climb(chosen, args.rounds, tuple(range(args.score_seeds)), pool)
        seeds = list(range(args.test_seeds))
        tests = {name: pool.starmap(quality.evaluate_pixels, [(list(s), seed) for seed in seeds])
                 for name, s in (("start", chosen), ("after the climb", final))}
    print(f"\ntest accuracy over seeds {seeds} (the protocol of quality.py)")
    for name, values in tests.items():
        print(f"- {name}: {statistics.mean(values):.3f} ± {statistics.stdev(values) if len(values) > 1 else 0:.3f}")


if __name__ == "__main__":
    main()
