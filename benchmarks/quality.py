"""Pixel selection quality of peer selectors on scikit-learn's digits, under one shared evaluation protocol.

Protocol: digits (8x8 = 64 pixels, /16 to [0, 1]), one fixed stratified split (25 % test, random_state 0).
Each selector sees the training part and a budget k and returns pixel indices (at most k distinct; duplicates
do not add pixels). Then the same MLP 64-128-128-10 (ReLU) is trained from scratch on the masked input
(unselected pixels = 0): Adam lr 1e-3, batch 64, at most 100 epochs, early stopping (patience 15) on a fixed
stratified 15 % of the training part, the weights of the best validation epoch are kept; test accuracy is
reported. A selector that trains a network with its selection (masksel) also hands that network over, and
its test accuracy on the chosen pixels, without the retrain, is a row of its own. Seeds drive the selectors'
randomness and the MLP's initialisation and batch order. Tables give mean ± sample std (ddof=1) over the
seeds; "all 64 pixels" is the same MLP without selection.

Channel task: the digit split into 8 channels of 32 values each (flattened; no zero padding): 0 = top half
(rows 0-3), 1 = bottom half (rows 4-7), 2 and 3 = top half + Gaussian noise (sigma 0.1, independent per copy),
4-7 = pure noise (uniform [0, 1]). Budget 2 channels; the optimum is {0, 1} (2 and 3 only repeat 0). Every
peer runs with ``groups`` = the 8 channels (filters: mean pixel score per channel; greedy forward: a group
loop). Counted: how often out of 10 seeds (noise and selector seed) the choice is exactly {0, 1}.

Adding rows for another method: register a selector in ``benchmarks.peers.SELECTORS`` (per budget,
``fn(x, y, k, seed) -> list[int]``, or ``@peers.all_budgets`` ``fn(x, y, budgets, seed) -> {k: list[int]}`` when
one fit serves every budget; take ``groups=None`` too to join the channel task) and call :func:`main`::

    from benchmarks import peers, quality
    peers.SELECTORS["masksel"] = my_selector
    quality.main()

or score pixel sets directly with :func:`evaluate_pixels` (indices, seed) -> test accuracy.

    python benchmarks/quality.py [--quick] [--only random,stg] [--budgets 4,8,16] [--seeds 3] [--no-channels]
                                 [--jpeg-seeds 3] [--ablation]

JPEG task (``benchmarks/jpeg_task.py``, run with masksel in the selection or with none named): which quality
to send each of four channels at, masksel's path against always-q and a random 90/10 mix at equal bytes.

Default run: 462 s measured (session 4, 2-core machine; 592 s in session 3; the JPEG task about 3 minutes of
it; torch limited to one thread: these networks are too small to gain from more).
Times printed per selector and budget are the selection only, summed over seeds. Requires
requirements-bench.txt for the LassoNet rows (skipped with a note otherwise).
"""
from __future__ import annotations

import argparse
import copy
import math
import statistics
import sys
import time
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import jpeg_task, masksel_selector, peers  # noqa: E402 - importing masksel_selector registers "masksel"

EPOCHS = 100
PATIENCE = 15
N_PIXELS = 64
CHANNEL_OPTIMUM = {0, 1}


@cache
def digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test): float32 in [0, 1], int64 labels; the one fixed split."""
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, stratify=y, random_state=0)
    return x_train, y_train, x_test, y_test


@cache
def _fit_val_indices() -> tuple[np.ndarray, np.ndarray]:
    """Fixed stratified 85/15 split of the training part: MLP fitting / early stopping."""
    _, y_train, _, _ = digits_split()
    return train_test_split(np.arange(len(y_train)), test_size=0.15, stratify=y_train, random_state=0)


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        correct = (model(x).argmax(dim=1) == y).float().mean().item()
    model.train()
    return correct


def evaluate_pixels(indices: list[int] | np.ndarray, seed: int, *, epochs: int | None = None,
                    patience: int = PATIENCE, batch_size: int = 64, report: str = "test") -> float:
    """Test accuracy of the MLP 64-128-128-10 trained from scratch on digits with only ``indices`` kept
    (``report="val"``: the validation accuracy early stopping kept)."""
    x_train, y_train, x_test, y_test = digits_split()
    mask = np.zeros(N_PIXELS, dtype=np.float32)
    mask[sorted({int(i) for i in indices})] = 1.0
    return evaluate_features(x_train * mask, y_train, x_test * mask, y_test, seed, epochs=epochs,
                             patience=patience, batch_size=batch_size, report=report)


def evaluate_features(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, seed: int,
                      *, epochs: int | None = None, patience: int = PATIENCE, batch_size: int = 64,
                      report: str = "test") -> float:
    """The protocol's retrain on any (N, F) features of the fixed digits split: the MLP F-128-128-10 trained
    from scratch (early stopping on the fixed 15 % of the training part), test accuracy of its best epoch
    (``report="val"``: that epoch's validation accuracy instead, for searches that must not see the test)."""
    epochs = EPOCHS if epochs is None else epochs
    fit, val = _fit_val_indices()
    x_train, x_test = x_train.reshape(len(x_train), -1), x_test.reshape(len(x_test), -1)
    x_fit, y_fit = torch.as_tensor(x_train[fit]), torch.as_tensor(y_train[fit])
    x_val, y_val = torch.as_tensor(x_train[val]), torch.as_tensor(y_train[val])
    x_te, y_te = torch.as_tensor(x_test), torch.as_tensor(y_test)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(x_train.shape[1], 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(),
                          nn.Linear(128, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    best_acc, best_state, since_best = -1.0, copy.deepcopy(model.state_dict()), 0
    for _ in range(epochs):
        for batch in torch.randperm(len(y_fit), generator=generator).split(batch_size):
            loss = nn.functional.cross_entropy(model(x_fit[batch]), y_fit[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        acc = _accuracy(model, x_val, y_val)
        if acc > best_acc:
            best_acc, best_state, since_best = acc, copy.deepcopy(model.state_dict()), 0
        else:
            since_best += 1
            if since_best >= patience:
                break
    if report == "val":
        return best_acc
    model.load_state_dict(best_state)
    return _accuracy(model, x_te, y_te)


def channel_task(seed: int) -> tuple[np.ndarray, np.ndarray, list[list[int]]]:
    """(x (N, 8 * 32), y, groups) for the channel task on the training part; noise drawn from ``seed``."""
    x_train, y_train, _, _ = digits_split()
    rng = np.random.default_rng(seed)
    top, bottom = x_train[:, :32], x_train[:, 32:]
    channels = [top, bottom]
    channels += [top + rng.normal(0.0, 0.1, size=top.shape) for _ in range(2)]
    channels += [rng.random(top.shape) for _ in range(4)]
    x = np.concatenate(channels, axis=1).astype(np.float32)
    return x, y_train, [list(range(32 * c, 32 * c + 32)) for c in range(8)]


def _cell(values: list[float]) -> str:
    if not values:
        return "-"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {std:.3f}"


def run_pixels(names: list[str], budgets: list[int], seeds: list[int], include_all: bool) -> None:
    x_train, y_train, x_test, y_test = digits_split()
    accuracy: dict[str, dict[int, list[float]]] = {}
    seconds: dict[str, dict[int, float]] = {}
    pixels: dict[str, dict[int, list[int]]] = {}
    joint: dict[str, dict[int, list[float]]] = {}  # selectors' own jointly trained networks, no retrain
    shared = {name: getattr(peers.SELECTORS[name], "all_budgets", False) for name in names}
    for name in names:
        accuracy[name] = {k: [] for k in budgets}
        seconds[name] = dict.fromkeys(budgets, 0.0)
        pixels[name] = {k: [] for k in budgets}
        for seed in seeds:
            predictors: dict[int, Any] = {}
            chosen = peers.select(peers.SELECTORS[name], x_train, y_train, budgets, seed, joint=predictors)
            for k, predict in predictors.items():
                joint.setdefault(name, {b: [] for b in budgets})[k].append(float((predict(x_test) == y_test).mean()))
            for k, (indices, took) in chosen.items():
                seconds[name][k] += took
                pixels[name][k].append(len(indices))
                accuracy[name][k].append(evaluate_pixels(indices, seed))
        print(f"  {name}: done", file=sys.stderr, flush=True)
    columns = " | ".join(f"k={k}" for k in budgets)
    print(f"\n| selector | {columns} |")
    print("|---|" + "---:|" * len(budgets))
    for name in names:
        print(f"| {name} | " + " | ".join(_cell(accuracy[name][k]) for k in budgets) + " |")
    for name, scores in joint.items():
        print(f"| {name} (its joint network, no retrain) | " + " | ".join(_cell(scores[k]) for k in budgets) + " |")
    if include_all:
        every = _cell([evaluate_pixels(range(N_PIXELS), seed) for seed in seeds])
        print("| all 64 pixels | " + " | ".join(every for _ in budgets) + " |")
    if "masksel" in accuracy and len(seeds) > 1:
        print_goal(accuracy, budgets)
    print(f"\nSelection seconds (sum over {len(seeds)} seeds) and mean number of distinct pixels chosen; "
          "(shared) = one fit serves every budget, its time is shown once")
    print(f"\n| selector | {columns} |")
    print("|---|" + "---:|" * len(budgets))
    for name in names:
        cells = []
        for position, k in enumerate(budgets):
            took = "(shared)" if shared[name] and position > 0 else f"{seconds[name][k]:.1f} s"
            cells.append(f"{took}, {statistics.mean(pixels[name][k]):.1f} px")
        print(f"| {name} | " + " | ".join(cells) + " |")


def print_goal(accuracy: dict[str, dict[int, list[float]]], budgets: list[int]) -> None:
    """Issue 7's goal, budget by budget: masksel against the best peer (highest mean; masksel's variants and
    random excluded), the gap in pooled standard deviations sqrt((s1^2 + s2^2) / 2). "ahead" and "behind"
    mean a gap of at least one pooled standard deviation either way; "level" is anything in between."""
    peers_only = [n for n in accuracy if not n.startswith("masksel") and n != "random"]
    if not peers_only:
        return
    print("\nGoal check: masksel against the best peer at each budget\n")
    print("| budget | best peer | masksel | gap | gap / pooled std | verdict |")
    print("|---|---|---:|---:|---:|---|")
    for k in budgets:
        best = max(peers_only, key=lambda n: statistics.mean(accuracy[n][k]))
        ours, theirs = accuracy["masksel"][k], accuracy[best][k]
        gap = statistics.mean(ours) - statistics.mean(theirs)
        pooled = ((statistics.stdev(ours) ** 2 + statistics.stdev(theirs) ** 2) / 2) ** 0.5
        if pooled > 0:
            ratio = gap / pooled
        else:
            ratio = math.copysign(math.inf, gap) if gap else 0.0
        verdict = "ahead" if ratio >= 1 else "behind" if ratio <= -1 else "level"
        print(f"| k={k} | {best} {_cell(theirs)} | {_cell(ours)} | {gap:+.3f} | {ratio:+.1f} | {verdict} |")


def run_channels(names: list[str], n_seeds: int) -> None:
    print(f"\nChannel task: budget 2 of 8 channels, times the optimum {{0, 1}} was chosen out of {n_seeds} seeds")
    print("\n| selector | optimum found | most frequent other choice | seconds |")
    print("|---|---:|---|---:|")
    for name in names:
        hits, others, took = 0, {}, 0.0
        for seed in range(n_seeds):
            x, y, groups = channel_task(seed)
            (indices, seconds), = peers.select(peers.SELECTORS[name], x, y, [2], seed, groups=groups).values()
            took += seconds
            if set(indices) == CHANNEL_OPTIMUM:
                hits += 1
            else:
                others[tuple(indices)] = others.get(tuple(indices), 0) + 1
        other = max(others.items(), key=lambda item: item[1]) if others else None
        other_text = f"{set(other[0]) or '{}'} ({other[1]}x)" if other else "-"
        print(f"| {name} | {hits}/{n_seeds} | {other_text} | {took:.1f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 seed, 30 epochs, <= 3 channel seeds")
    parser.add_argument("--only", default="", help="comma-separated selector names (all64 = the no-selection row)")
    parser.add_argument("--budgets", default="4,8,16")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--channel-seeds", type=int, default=10)
    parser.add_argument("--no-channels", action="store_true", help="skip the channel task")
    parser.add_argument("--jpeg-seeds", type=int, default=3, help="seeds of the JPEG task (0 skips it)")
    parser.add_argument("--ablation", action="store_true", help="also masksel's variants (one option changed each)")
    args = parser.parse_args()
    variants = masksel_selector.register_ablation()  # named by --only, or all with --ablation
    global EPOCHS
    torch.set_num_threads(1)
    budgets = [int(k) for k in args.budgets.split(",")]
    n_seeds, channel_seeds = args.seeds, args.channel_seeds
    if args.quick:
        EPOCHS, peers.TRAIN_EPOCHS, n_seeds, channel_seeds = 30, 30, 1, min(channel_seeds, 3)
    default = [name for name in peers.SELECTORS if name not in variants] + ["all64"]
    wanted = [name for name in args.only.split(",") if name] or default
    if args.ablation:
        wanted += [name for name in variants if name not in wanted]
    unknown = set(wanted) - set(peers.SELECTORS) - {"all64"}
    if unknown:
        parser.error(f"unknown selectors {sorted(unknown)}; known: {', '.join(peers.SELECTORS)}, all64")
    names = [name for name in wanted if name != "all64"]
    if "lassonet" in names and peers.LASSONET_MISSING:
        print(f"lassonet rows skipped: {peers.LASSONET_MISSING}")
        names.remove("lassonet")
    print(f"digits {N_PIXELS} px, budgets {budgets}, seeds {n_seeds}, MLP <= {EPOCHS} epochs, "
          f"selector training epochs {peers.TRAIN_EPOCHS}, torch {torch.__version__}, 1 thread")
    started = time.perf_counter()
    run_pixels(names, budgets, list(range(n_seeds)), include_all="all64" in wanted)
    if not args.no_channels and names:
        capable = [name for name in names if peers.supports_groups(peers.SELECTORS[name])]
        if len(capable) < len(names):
            print(f"\nnot in the channel task (no ``groups`` argument): {', '.join(sorted(set(names) - set(capable)))}")
        if capable:
            run_channels(capable, channel_seeds)
    if args.jpeg_seeds > 0 and (not names or "masksel" in names):
        x_train, y_train, x_test, y_test = digits_split()
        jpeg_task.run_jpeg(list(range(1 if args.quick else args.jpeg_seeds)), evaluate_features, x_train, y_train,
                           x_test, y_test)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
