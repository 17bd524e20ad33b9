"""Do the defaults give a useful model? The new-run form's default run and the README's examples, as a user runs them.

Each row: the run as offered (no option changed), its final mask's share, the written model's test accuracy,
and its warnings (goal: a non-empty mask everywhere and, on digits, accuracy above 0.9). `--variants` prints a
second table: the form's default run on digits with one option set back to the paper's, or changed, each.

    python benchmarks/defaults.py [--seeds 3] [--only NAME,...] [--variants]
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
# The default run on digits with one option changed: what each default buys.
VARIANTS = {
    "defaults": {},
    "model_lr=1e-4 (paper)": {"model_lr": 1e-4},
    "lambda_factor=1.1": {"lambda_factor": 1.1},
    "lambda_monitor=total, threshold 0 (paper)": {"lambda_monitor": "total", "lambda_threshold": 0.0,
                                                  "lambda_threshold_mode": "abs"},
    "threshold 0 (val_total)": {"lambda_threshold": 0.0, "lambda_threshold_mode": "abs"},
    "early_stop_patience=5": {"early_stop_patience": 5},
    "no warm-up (warmup_epochs=0)": {"warmup_epochs": 0},
    "no finalize (finalize_epochs=0)": {"finalize_epochs": 0},
    "target 4 of 64 pixels": {"target_fraction": 4 / 64, "epochs": 300},
    "target 4 of 64 pixels, model_lr=1e-4 (paper)": {"target_fraction": 4 / 64, "epochs": 300, "model_lr": 1e-4},
    "target 16 of 64 pixels": {"target_fraction": 16 / 64, "epochs": 300},
    "target 16 of 64 pixels, model_lr=1e-4 (paper)": {"target_fraction": 16 / 64, "epochs": 300, "model_lr": 1e-4},
}


def row(name: str, data_name: str, options: dict[str, object], seeds: int) -> str:
    data = load_dataset(data_name)
    options = {"mask_type": default_mask_type(data.input_shape), **options}  # as the form and the API do
    fractions, kept, accuracies, warnings, started = [], [], [], set(), time.perf_counter()
    for seed in range(seeds):
        result = train(TrainConfig(**options, seed=seed, device="cpu"), data)  # type: ignore[arg-type]
        fractions.append(result.fraction)
        kept.append(int(result.selected.sum()))
        accuracies.append(result.test_accuracy or 0.0)
        warnings.update(result.warnings)
    shown = ", ".join(f"{k}={v}" for k, v in options.items())
    return (f"| {name} | {shown} | {statistics.mean(fractions):.3f} ({min(fractions):.3f}) | "
            f"{statistics.mean(kept):.1f} ({min(kept)}) | {statistics.mean(accuracies):.3f} ({min(accuracies):.3f}) "
            f"| {'; '.join(sorted(warnings)) or 'none'} | {(time.perf_counter() - started) / seeds:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--only", default="", help="comma-separated row names")
    parser.add_argument("--variants", action="store_true", help="also the default run with one option changed")
    parser.add_argument("--only-variants", action="store_true", help="only the second table")
    args = parser.parse_args()
    print(f"seeds 0..{args.seeds - 1}; mean (min) over seeds")
    header = ("| run | options | Q | kept elements | test accuracy | warnings | seconds per run |\n"
              "|---|---|---:|---:|---:|---|---:|")
    print(header)
    for name, options in RUNS.items() if not args.only_variants else ():
        if not args.only or name in args.only.split(","):
            options = dict(options)
            print(row(name, str(options.pop("data")), options, args.seeds), flush=True)
    if args.variants or args.only_variants:
        print("\nThe form's default run on digits, one option changed:\n" + header)
        for name, options in VARIANTS.items():
            print(row(name, "digits", options, args.seeds), flush=True)


if __name__ == "__main__":
    main()
