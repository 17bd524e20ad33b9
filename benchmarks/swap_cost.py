"""What the swap check that ends selection costs, against one selection epoch, where many elements are kept.

lenet5 on a generated 32 x 32 input (labels a function of every pixel), pixel-any started from `--kept` pixels
(about 800 of 1024), a short selection and the swap check through the real `train()`; printed: seconds per
selection epoch, the swap check's seconds (`seconds_per_phase`) and their ratio (goal: at most 1), and beside it
what a screen of every (kept, candidate) pair would take (one validation pass each, timed here on one pass).

    python benchmarks/swap_cost.py [--samples 10000] [--kept 800] [--device cpu]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from masksel_core import TensorDataset, TrainConfig, train  # noqa: E402
from masksel_core.training.steps import evaluate  # noqa: E402


def planted(n: int, side: int = 32) -> TensorDataset:
    """Ten classes, each the largest of ten random projections of the whole image: every pixel helps a little."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n + 1000, 1, side, side, generator=generator)
    y = (x.flatten(1) @ torch.randn(side * side, 10, generator=generator)).argmax(dim=1)
    return TensorDataset(f"planted-{side}x{side}", x[:n], y[:n], x[n:], y[n:], 10, ["v"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10_000)
    parser.add_argument("--kept", type=int, default=800)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    data = planted(args.samples)
    kept = torch.randperm(1024, generator=torch.Generator().manual_seed(1))[:args.kept].tolist()
    config = TrainConfig(mask_type="pixel-any", model="lenet5", epochs=args.epochs, warmup_epochs=1,
                         finalize_epochs=0, init_selected=kept, lambda_init=1e-4, lambda_factor=1.0, device=args.device)
    result = train(config, data)
    select = [r.seconds for r in result.records if r.phase == "select"]
    epoch = statistics.median(select[1:] or select)
    swap = result.seconds_per_phase()["swap_check"]
    val = data.x_train[:int(config.val_share * args.samples)].to(config.device)
    started = time.perf_counter()
    evaluate(result.model, result.mask, val, data.y_train[:len(val)].to(config.device))
    one_pass = time.perf_counter() - started
    pairs = int(result.selected.sum()) * config.swap_candidates
    print(f"lenet5, pixel-any on {data.name}, {args.samples} samples, batch {config.batch_size}, "
          f"{config.swap_rounds} rounds, {config.swap_candidates} candidates, device {args.device}\n")
    print("| kept pixels | selection epoch (s) | swap check (s) | swap / epoch | swaps made "
          "| every pair screened (s, estimated) | every pair / epoch |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {int(result.selected.sum())} | {epoch:.2f} | {swap:.2f} | {swap / epoch:.2f} | {len(result.swaps)} "
          f"| {pairs * one_pass:.0f} | {pairs * one_pass / epoch:.0f} |")


if __name__ == "__main__":
    main()
