"""Selection quality, measured so that it can tell selectors apart (the protocol: `benchmarks/protocol.py`).

Data sets and budgets: mnist5k (784 pixels: 10, 20, 39 = about 5 %, and 78) and digits (64 pixels: 4, 8, 16).
Each selector is fitted inside each training fold of the same 5 x 2 repeated stratified folds, the protocol's
network is retrained on each (fold, selection) and scored on the fold's test part. Printed per data set:
- accuracy per selector and budget (mean ± std over the folds) and the area under accuracy against budget;
- masksel's written model (the one a user downloads, no retrain) beside the retrain of its mask;
- masksel against the best peer at each budget and in area: the mean paired difference with its corrected
  95 % interval, the Holm-adjusted p-value across all peers, and the verdict (ahead / level / behind by the
  interval);
- seconds per selector: fitting (summed over folds) and the retrains.
With ``--seeds N`` masksel runs N times per fold (its own seed each): its rows are the mean over seeds, and a
table gives the spread over seeds and how many runs used their budget (kept 0.9 to 1.0 of k).
Then the channel task: the digit split into 8 channels of 32 values (0 top half, 1 bottom half, 2 and 3 the
top half with noise, 4-7 noise), budget 2; the optimum is {0, 1}; how often each selector finds it in 10 seeds.

Greedy forward selection runs on digits only (on mnist5k's 784 pixels it would take hours). The peers that
train (concrete, stg, lassonet) train `PEER_EPOCHS[data]` epochs. Folds run in parallel processes
(``--workers``, one torch thread each: these networks are too small to gain from more).

    python benchmarks/quality.py [--quick] [--data mnist5k,digits] [--only a,b] [--workers 2]
                                 [--channel-seeds 10] [--ablation] [--jpeg-seeds 3] [--folds N] [--seeds 3]

``--quick`` (at most 5 minutes): mnist5k, 2 folds, peers trained `QUICK_EPOCHS`, 3 channel seeds. Requires
requirements-bench.txt for the LassoNet rows (skipped with a note otherwise).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from functools import cache, partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import jpeg_task, masksel_selector, peers, protocol  # noqa: E402 - masksel_selector registers

PEER_EPOCHS = {"digits": 100, "mnist5k": 10}  # about as many steps on each: mnist5k's folds are 2.8x larger
QUICK_EPOCHS = {"digits": 20, "mnist5k": 5}
SLOW_ON = {"greedy-forward": {"mnist5k"}}  # selectors left out where they would not fit the time
SEED_STRIDE = 1000  # masksel's seed for repeat r of fold f: f + SEED_STRIDE * r
Q_RANGE = (0.9, 1.0)  # a run uses its budget when it keeps between these shares of it
CHANNEL_OPTIMUM = {0, 1}
ANCHORS = ("Anchors on full MNIST (60,000 training images; other protocols, for scale only): the authors report "
           "about 0.96 for a static pixel mask at about 5 % of the pixels (SDM 2022); concrete autoencoder 0.906 "
           "and LassoNet 0.892 at 50 pixels with ExtraTrees downstream (LassoNet, JMLR 2021, Table 2).")


@cache
def _data(name: str) -> tuple[np.ndarray, np.ndarray, list[protocol.Fold]]:
    x, y, _ = protocol.load(name)
    return x, y, protocol.folds(y)


def _start_worker() -> None:
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")


def fold_task(data: str, fold_index: int, name: str, budgets: tuple[int, ...], epochs: int,
              repeat: int = 0) -> dict[str, Any]:
    """Fit one selector on one fold's training part, retrain on each budget's choice, score on the test part;
    `epochs`: what the peers that train (concrete, stg, lassonet) train; `repeat`: which of masksel's seeds (its
    run's seed is `fold + SEED_STRIDE * repeat`; the retrain's stays the fold's, so only the selection differs)."""
    x, y, folds = _data(data)
    fold = folds[fold_index]
    x_train, y_train, x_test, y_test = x[fold.train], y[fold.train], x[fold.test], y[fold.test]
    selector = _with_epochs(name, epochs)
    joint: dict[int, Any] = {}
    started = time.perf_counter()
    chosen = peers.select(selector, x_train, y_train, budgets, fold_index + SEED_STRIDE * repeat, joint=joint)
    fitted = time.perf_counter()
    accuracy = {k: protocol.retrain_accuracy(x_train, y_train, x_test, y_test, chosen[k][0], fold_index)
                for k in budgets}
    return {"accuracy": accuracy, "pixels": {k: len(chosen[k][0]) for k in budgets},
            "joint": {k: float((predict(x_test) == y_test).mean()) for k, predict in joint.items()},
            "fit_s": fitted - started, "retrain_s": time.perf_counter() - fitted}


def _longest_first(names: list[str]) -> list[str]:
    """masksel's runs (one training per budget) first: started last, they would leave one worker idle at the end."""
    return sorted(names, key=lambda n: not n.startswith("masksel"))


def _cell(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {std:.3f}"


def run_data(data: str, names: list[str], folds: list[int], workers: int, epochs: int,
             seeds: int = 1) -> dict[str, dict[str, Any]]:
    """Every selector on every fold; masksel's selectors `seeds` times per fold, their tables the mean over seeds
    (the expected score of one run), with the spread over seeds and the runs that used their budget beside."""
    budgets = protocol.BUDGETS[data]
    names = [n for n in names if data not in SLOW_ON.get(n, set())]
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers, initializer=_start_worker) as pool:
        futures = {(n, f, r): pool.submit(fold_task, data, f, n, budgets, epochs, r) for n in _longest_first(names)
                   for r in range(seeds if n.startswith("masksel") else 1) for f in folds}
        repeats = {n: [[futures[(n, f, r)].result() for r in range(seeds) if (n, f, r) in futures] for f in folds]
                   for n in names}
    results = {n: [_mean_over_seeds(runs) for runs in repeats[n]] for n in names}
    x, y, all_folds = _data(data)
    print(f"\n## {data}: {x.shape[1]} pixels, {len(y)} samples, folds {len(folds)} of "
          f"{protocol.FOLDS} x {protocol.REPEATS}, budgets {list(budgets)}, masksel {seeds} seed(s) per fold "
          f"({time.perf_counter() - started:.0f} s)")
    accuracy = {n: {k: [r["accuracy"][k] for r in results[n]] for k in budgets} for n in names}
    areas = {n: [protocol.area(budgets, [r["accuracy"][k] for k in budgets]) for r in results[n]] for n in names}
    header = " | ".join(f"k={k}" for k in budgets)
    print(f"\n| selector | {header} | area |\n|---|" + "---:|" * (len(budgets) + 1))
    for n in names:
        print(f"| {n} | " + " | ".join(_cell(accuracy[n][k]) for k in budgets) + f" | {_cell(areas[n])} |")
    if "masksel" in results and results["masksel"][0]["joint"]:
        joint = {k: [r["joint"][k] for r in results["masksel"]] for k in budgets}
        print("| masksel's written model (no retrain) | " + " | ".join(_cell(joint[k]) for k in budgets) + " | |")
        if len(folds) > 1:
            print_written_against_retrain(joint, accuracy["masksel"], budgets, all_folds[0])
    print_budget_use({n: repeats[n] for n in names if n.startswith("masksel")}, budgets, seeds)
    if "masksel" in accuracy and len(folds) > 1:
        print_comparisons(accuracy, areas, budgets, all_folds[0])
    print(f"\nSeconds (summed over {len(folds)} folds): fitting the selector / retraining the protocol's network")
    print("\n| selector | fit s | retrain s | mean elements chosen |\n|---|---:|---:|---|")
    for n in names:
        chosen = ", ".join(f"{statistics.mean(r['pixels'][k] for r in results[n]):.1f}" for k in budgets)
        print(f"| {n} | {sum(r['fit_s'] for r in results[n]):.0f} | {sum(r['retrain_s'] for r in results[n]):.0f} "
              f"| {chosen} |")
    return results


def _mean_over_seeds(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One fold's result: each score the mean over its runs, the seconds their sum."""
    first = runs[0]
    return {"accuracy": {k: statistics.mean(r["accuracy"][k] for r in runs) for k in first["accuracy"]},
            "pixels": {k: statistics.mean(r["pixels"][k] for r in runs) for k in first["pixels"]},
            "joint": {k: statistics.mean(r["joint"][k] for r in runs) for k in first["joint"]},
            "fit_s": sum(r["fit_s"] for r in runs), "retrain_s": sum(r["retrain_s"] for r in runs)}


def print_budget_use(repeats: dict[str, list[list[dict[str, Any]]]], budgets: tuple[int, ...], seeds: int) -> None:
    """Per masksel selector and budget: how many runs kept between `Q_RANGE` of their budget, and (with more than
    one seed) the spread over seeds, the standard deviation across a fold's seeds averaged over the folds, of the
    retrain and of the written model."""
    if not repeats:
        return
    low, high = Q_RANGE
    print(f"\nmasksel's runs: budget used ({low}-{high} of k kept) and, over {seeds} seed(s) per fold, the spread "
          "(std across seeds, mean over folds; goal <= 0.015 for the written model)\n")
    print("| selector | budget | used | retrain spread | written spread |\n|---|---|---:|---:|---:|")
    for name, per_fold in repeats.items():
        runs = [run for fold in per_fold for run in fold]
        for k in budgets:
            used = sum(low * k <= run["pixels"][k] <= high * k for run in runs)
            spreads = [_seed_spread([run["accuracy"][k] for run in fold]) for fold in per_fold]
            written = [_seed_spread([run["joint"][k] for run in fold]) for fold in per_fold if fold[0]["joint"]]
            print(f"| {name} | k={k} | {used}/{len(runs)} | {_spread(spreads)} | {_spread(written)} |")


def _seed_spread(values: list[float]) -> float | None:
    return statistics.stdev(values) if len(values) > 1 else None


def _spread(values: list[float | None]) -> str:
    known = [v for v in values if v is not None]
    return f"{statistics.mean(known):.3f}" if known else "-"


def _share(fold: protocol.Fold) -> float:
    return len(fold.test) / (len(fold.train) + len(fold.test))


def print_written_against_retrain(joint: dict[int, list[float]], retrain: dict[int, list[float]],
                                  budgets: tuple[int, ...], fold: protocol.Fold) -> None:
    print("\nmasksel's written model minus the retrain of its mask (goal: within 0.01)\n")
    print("| budget | difference | 95 % interval |\n|---|---:|---|")
    for k in budgets:
        c = protocol.compare(joint[k], retrain[k], test_share=_share(fold))
        print(f"| k={k} | {c.mean:+.3f} | [{c.low:+.3f}, {c.high:+.3f}] |")


def print_comparisons(accuracy: dict[str, dict[int, list[float]]], areas: dict[str, list[float]],
                      budgets: tuple[int, ...], fold: protocol.Fold) -> None:
    """masksel against every peer; the row shows the best peer (highest mean), its p Holm-adjusted over all."""
    peer_names = [n for n in accuracy if not n.startswith("masksel")]
    if not peer_names:
        return
    print("\nmasksel against the best peer (corrected resampled t, Nadeau & Bengio 2003; p Holm-adjusted over "
          f"{len(peer_names)} peers)\n")
    print("| budget | best peer | masksel - best | 95 % interval | p (Holm) | verdict |\n|---|---|---:|---|---:|---|")
    columns = [(f"k={k}", {n: accuracy[n][k] for n in accuracy}) for k in budgets] + [("area", areas)]
    for label, scores in columns:
        comparisons = {n: protocol.compare(scores["masksel"], scores[n], test_share=_share(fold)) for n in peer_names}
        adjusted = dict(zip(peer_names, protocol.holm([comparisons[n].p for n in peer_names]), strict=True))
        best = max(peer_names, key=lambda n: statistics.mean(scores[n]))
        c = comparisons[best]
        verdict = c.verdict if (c.verdict == "level" or adjusted[best] < 0.05) else "level"
        print(f"| {label} | {best} {_cell(scores[best])} | {c.mean:+.3f} | [{c.low:+.3f}, {c.high:+.3f}] | "
              f"{adjusted[best]:.3f} | {verdict} |")


def channel_task(seed: int) -> tuple[np.ndarray, np.ndarray, list[list[int]]]:
    """(x (N, 8 * 32), y, groups) from digits' first training fold; noise drawn from ``seed``."""
    x, y, folds = _data("digits")
    x, y = x[folds[0].train], y[folds[0].train]
    rng = np.random.default_rng(seed)
    top, bottom = x[:, :32], x[:, 32:]
    channels = [top, bottom] + [top + rng.normal(0.0, 0.1, size=top.shape) for _ in range(2)]
    channels += [rng.random(top.shape) for _ in range(4)]
    return np.concatenate(channels, axis=1).astype(np.float32), y, [list(range(32 * c, 32 * c + 32)) for c in range(8)]


def _with_epochs(name: str, epochs: int) -> Any:
    """The selector `name`, trained `epochs` epochs where it trains (concrete, stg, lassonet)."""
    selector = peers.SELECTORS[name]
    if name not in ("concrete", "stg", "lassonet"):
        return selector
    trained = partial(selector, epochs=epochs)
    return peers.all_budgets(trained) if getattr(selector, "all_budgets", False) else trained


def channel_seed(name: str, seed: int, epochs: int) -> tuple[list[int], float]:
    x, y, groups = channel_task(seed)
    selector = _with_epochs(name, epochs)
    (indices, seconds), = peers.select(selector, x, y, [2], seed, groups=groups).values()
    return indices, seconds


def run_channels(names: list[str], seeds: int, workers: int, epochs: int) -> None:
    print(f"\nChannel task: budget 2 of 8 channels, times the optimum {{0, 1}} was chosen out of {seeds} seeds")
    print("\n| selector | optimum found | most frequent other choice | seconds |\n|---|---:|---|---:|")
    with ProcessPoolExecutor(max_workers=workers, initializer=_start_worker) as pool:
        futures = {(n, s): pool.submit(channel_seed, n, s, epochs) for n in _longest_first(names)
                   for s in range(seeds)}
        for name in names:
            answers = [futures[(name, s)].result() for s in range(seeds)]
            hits = sum(set(indices) == CHANNEL_OPTIMUM for indices, _ in answers)
            others: dict[tuple[int, ...], int] = {}
            for indices, _ in answers:
                if set(indices) != CHANNEL_OPTIMUM:
                    others[tuple(indices)] = others.get(tuple(indices), 0) + 1
            other = max(others.items(), key=lambda item: item[1]) if others else None
            shown = f"{set(other[0]) or '{}'} ({other[1]}x)" if other else "-"
            print(f"| {name} | {hits}/{seeds} | {shown} | {sum(s for _, s in answers):.1f} |", flush=True)


def jpeg_evaluate(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                  seed: int) -> float:
    """The JPEG task's score: the protocol's network on every value of the policy's channels."""
    x_train, x_test = x_train.reshape(len(x_train), -1), x_test.reshape(len(x_test), -1)
    return protocol.retrain_accuracy(x_train, y_train, x_test, y_test, range(x_train.shape[1]), seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="mnist5k, 2 folds, 3 channel seeds (a smoke run)")
    parser.add_argument("--data", default="mnist5k,digits")
    parser.add_argument("--only", default="", help="comma-separated selector names")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--channel-seeds", type=int, default=10, help="seeds of the channel task (0 skips it)")
    parser.add_argument("--jpeg-seeds", type=int, default=0, help="seeds of the JPEG task (0 skips it)")
    parser.add_argument("--ablation", action="store_true", help="also masksel's variants (one option changed each)")
    parser.add_argument("--folds", type=int, default=0, help="only the first N folds (a partial run, e.g. ablations)")
    parser.add_argument("--seeds", type=int, default=1, help="masksel's runs per fold, each with its own seed")
    args = parser.parse_args()
    variants = masksel_selector.register_ablation()
    names = [n for n in args.only.split(",") if n] or [n for n in peers.SELECTORS if n not in variants]
    if args.ablation:
        names += [n for n in variants if n not in names]
    unknown = set(names) - set(peers.SELECTORS)
    if unknown:
        parser.error(f"unknown selectors {sorted(unknown)}; known: {', '.join(peers.SELECTORS)}")
    if "lassonet" in names and peers.LASSONET_MISSING:
        print(f"lassonet rows skipped: {peers.LASSONET_MISSING}")
        names.remove("lassonet")
    data_sets = ["mnist5k"] if args.quick else [d for d in args.data.split(",") if d]
    folds = list(range(2 if args.quick else args.folds or protocol.FOLDS * protocol.REPEATS))
    print(f"torch {torch.__version__}, {args.workers} worker processes of 1 thread; protocol: "
          f"{protocol.FOLDS}-fold x {protocol.REPEATS} repeated stratified CV, retrain MLP F-128-128-C "
          f"(<= {protocol.RETRAIN_EPOCHS} epochs, patience {protocol.RETRAIN_PATIENCE}); peers train "
          f"{PEER_EPOCHS} epochs")
    started = time.perf_counter()
    for data in data_sets:
        run_data(data, names, folds, args.workers, (QUICK_EPOCHS if args.quick else PEER_EPOCHS)[data], args.seeds)
        if data == "mnist5k":
            print(f"\n{ANCHORS}")
    seeds = min(args.channel_seeds, 3) if args.quick else args.channel_seeds
    capable = [n for n in names if peers.supports_groups(peers.SELECTORS[n])]
    if seeds and capable:
        part = time.perf_counter()
        run_channels(capable, seeds, args.workers, (QUICK_EPOCHS if args.quick else PEER_EPOCHS)["digits"])
        print(f"\n(channel task {time.perf_counter() - part:.0f} s)")
    if args.jpeg_seeds and "masksel" in names:
        x, y, folds_all = _data("digits")
        fold = folds_all[0]
        jpeg_task.run_jpeg(list(range(args.jpeg_seeds)), jpeg_evaluate, x[fold.train], y[fold.train],
                           x[fold.test], y[fold.test])
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
