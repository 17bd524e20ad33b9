"""Seconds per training epoch with the default options, through the real `train()` loop.

CPU: digits (lenet5, pixel-any) and synthetic-remote (allconvnet, channel-any). Where CUDA is
available, also resnet18 on 32x32x3 data (cifar10-sized, generated), with samples per second.

    python benchmarks/epoch_time.py [--epochs 3]
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from masksel_core import TensorDataset, TrainConfig, load_dataset, train  # noqa: E402
from masksel_core.training.train import split_validation  # noqa: E402


def cifar_sized(n: int = 10_000) -> TensorDataset:
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, 32, 32, generator=generator)
    y = torch.randint(0, 10, (n,), generator=generator)
    return TensorDataset("random-32x32x3", x, y, x[:1000], y[:1000], 10, ["r", "g", "b"])


def run(label: str, data: TensorDataset, config: TrainConfig) -> None:
    """Selection epochs only (the masked ones), with a short warm-up before them and no finalize."""
    config = TrainConfig.from_dict({**config.to_dict(), "warmup_epochs": 1, "finalize_epochs": 0})
    records = [r for r in train(config, data).records if r.phase == "select"]
    seconds = [r.seconds for r in records[1:]] or [records[0].seconds]  # the first epoch warms up
    per_epoch = statistics.median(seconds)
    fit = len(split_validation(data, config.val_share, config.seed).y_fit)  # trained on; the rest validates
    print(f"| {label} | {config.device} | {fit} | {per_epoch:.3f} | {fit / per_epoch:,.0f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads; median epoch after the first")
    print("| case | device | train samples | s/epoch | samples/s |")
    print("|---|---|---:|---:|---:|")
    run("digits lenet5 pixel-any", load_dataset("digits"),
        TrainConfig(mask_type="pixel-any", model="lenet5", epochs=args.epochs, device="cpu"))
    run("synthetic-remote allconvnet channel-any", load_dataset("synthetic-remote"),
        TrainConfig(mask_type="channel-any", model="allconvnet", epochs=args.epochs, device="cpu"))
    if torch.cuda.is_available():
        run("32x32x3 resnet18 pixel-any", cifar_sized(),
            TrainConfig(mask_type="pixel-any", model="resnet18", epochs=args.epochs, device="cuda"))
    else:
        print("(no CUDA device here: the resnet18 GPU row needs one)")


if __name__ == "__main__":
    main()
