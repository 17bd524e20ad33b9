"""Do the defaults give a useful model? The new-run form's default run and the README's examples, as a user runs them.

Each row: the run as offered (no option changed), its final mask's share, the written model's test accuracy,
and its warnings (goal: a non-empty mask everywhere and, on digits, accuracy above 0.9).

    python benchmarks/defaults.py [--seeds 3]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from masksel_core import TrainConfig, default_mask_type, load_dataset, train  # noqa: E402

RUNS = {
    "form default (digits)": {"data": "digits"},
    "form default (synthetic-remote)": {"data": "synthetic-remote"},
    "README CLI": {"data": "digits", "mask_type": "pixel-any", "model": "mlp", "epochs": 30},
    "README Python": {"data": "digits", "mask_type": "jpeg-xor+pixel-any", "model": "lenet5", "epochs": 20},
    "README REST": {"data": "digits", "mask_type": "pixel-any", "model": "mlp", "epochs": 20},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--only", default="", help="comma-separated row names")
    args = parser.parse_args()
    print(f"seeds 0..{args.seeds - 1}; mean (min) over seeds")
    print("| run | options | Q | kept elements | test accuracy | warnings | seconds per run |")
    print("|---|---|---:|---:|---:|---|---:|")
    for name, options in RUNS.items():
        if args.only and name not in args.only.split(","):
            continue
        options = dict(options)
        data = load_dataset(options.pop("data"))
        options.setdefault("mask_type", default_mask_type(data.input_shape))  # as the form and the API do
        fractions, kept, accuracies, warnings, started = [], [], [], set(), time.perf_counter()
        for seed in range(args.seeds):
            result = train(TrainConfig(**options, seed=seed, device="cpu"), data)
            fractions.append(result.fraction)
            kept.append(int(result.selected.sum()))
            accuracies.append(result.test_accuracy or 0.0)
            warnings.update(result.warnings)
        shown = ", ".join(f"{k}={v}" for k, v in options.items())
        print(f"| {name} | {shown} | {statistics.mean(fractions):.3f} ({min(fractions):.3f}) | "
              f"{statistics.mean(kept):.1f} ({min(kept)}) | {statistics.mean(accuracies):.3f} ({min(accuracies):.3f}) "
              f"| {'; '.join(sorted(warnings)) or 'none'} | {(time.perf_counter() - started) / args.seeds:.0f} |",
              flush=True)


if __name__ == "__main__":
    main()
