"""Adam's step as `torch.optim` does it by default on a CPU, with `foreach`, and fused (what `train()` uses).

Table 1: one `optimizer.step()` of each model's network at the data sets' shapes (gradients set, nothing else
timed), the median of `--steps` steps after one that warms up. Table 2: selection epochs of `train()` with the
defaults (median after the first), Adam as it was built before (`torch.optim.Adam(...)`) against the fused one.
Goal: the fused step pays where the network is large (the paper's 36-channel inputs), and costs nothing where it
is small.

    python benchmarks/optimizer_step.py [--steps 20] [--epochs 3]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from masksel_core import TrainConfig, create_model, load_dataset, train  # noqa: E402
from masksel_core.training import loop, swap_check  # noqa: E402

KINDS: dict[str, dict[str, bool]] = {"default": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}
CASES = [("mlp", (1, 28, 28), 10), ("lenet5", (1, 28, 28), 10), ("mlp", (36, 35, 35), 10),
         ("allconvnet", (36, 35, 35), 10)]


def step_ms(model: torch.nn.Module, options: dict[str, bool], steps: int) -> float:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, amsgrad=True, **options)
    for parameter in model.parameters():
        parameter.grad = torch.randn_like(parameter)
    optimizer.step()
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        optimizer.step()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def unfused(parameters: Any, lr: float, **options: bool) -> torch.optim.Adam:
    return torch.optim.Adam(parameters, lr=lr, **options)


def epoch_seconds(data: str, config: TrainConfig, fused: bool) -> float:
    original = loop.adam
    loop.adam = swap_check.adam = original if fused else unfused
    try:
        records = [r for r in train(config, load_dataset(data)).records if r.phase == "select"]
    finally:
        loop.adam = swap_check.adam = original
    return statistics.median(r.seconds for r in records[1:]) if len(records) > 1 else records[0].seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    print("\n| network | input | parameters | default ms | foreach ms | fused ms | fused vs default |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, shape, classes in CASES:
        model = create_model(name, shape, classes)
        ms = {kind: step_ms(model, options, args.steps) for kind, options in KINDS.items()}
        count = sum(p.numel() for p in model.parameters())
        print(f"| {name} | {'x'.join(map(str, shape))} | {count:,} | {ms['default']:.2f} | {ms['foreach']:.2f} | "
              f"{ms['fused']:.2f} | {ms['default'] / ms['fused']:.1f}x |", flush=True)
    print("\n| run (selection epochs, defaults) | default Adam s/epoch | fused s/epoch | speed-up |")
    print("|---|---:|---:|---:|")
    for data, model, mask in [("digits", "lenet5", "pixel-any"), ("synthetic-remote", "mlp", "channel-any")]:
        config = TrainConfig(mask_type=mask, model=model, epochs=args.epochs, warmup_epochs=1, finalize_epochs=0,
                             device="cpu")
        before, after = epoch_seconds(data, config, fused=False), epoch_seconds(data, config, fused=True)
        print(f"| {data} {model} {mask} | {before:.3f} | {after:.3f} | {before / after:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
