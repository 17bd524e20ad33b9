"""Dynamic masks against static ones: what a training step costs, and what each keeps of a moving object.

1. Step cost (CPU): one `masked_step` (forward, backward, both optimisers) on a batch of 128, for the static
   `pixel-any` mask and the dynamic masks with each mask network, on 1x28x28 inputs; median of
   `--rounds` rounds of 30 steps. Goal: a dynamic step at most 1.5x the static one on the same data.
2. The moving object (`synthetic-moving`: a 5x5 pattern anywhere in a 28x28 image): one run each of
   `dynamic-pixel-any` (the default mask network) and `pixel-any` with lenet5 and target_fraction 0.12 (the static mask
   given 0.15), and their test accuracy at the bytes per test sample their payloads measure (the bytes that
   say which cells included).
   Goal: dynamic >= 0.9 at <= 0.15 of the raw bytes, where static stays below 0.7.

    python benchmarks/dynamic.py [--rounds 5] [--skip-runs]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from masksel_core import TrainConfig, load_dataset, train  # noqa: E402
from masksel_core.training.steps import adam, masked_step  # noqa: E402
from masksel_core.training.train import build  # noqa: E402

SHAPE, CLASSES, BATCH, STEPS = (1, 28, 28), 4, 128, 30


def stepper(config: TrainConfig) -> Callable[[int], None]:
    """Runs `count` training steps of `config`'s mask and network on one fixed batch."""
    mask, model = build(config, SHAPE, CLASSES, torch.Generator().manual_seed(0))
    optimizers = [adam(model.parameters(), config.model_lr), adam(mask.parameters(), config.mask_lr)]
    generator = torch.Generator().manual_seed(1)
    x, y = torch.rand(BATCH, *SHAPE, generator=generator), torch.randint(0, CLASSES, (BATCH,), generator=generator)
    loss = torch.nn.CrossEntropyLoss()

    def steps(count: int) -> None:
        for _ in range(count):
            masked_step(model, mask, loss, x, y, optimizers, lam=0.1, tau=1.0, explore=True, generator=generator)

    return steps


def step_table(rounds: int) -> None:
    """Each round times every set-up in turn (so that a slower stretch of the machine hits them all)."""
    print(f"1. training step, batch {BATCH} of {'x'.join(map(str, SHAPE))}, {torch.get_num_threads()} threads, "
          f"median of {rounds} rounds of {STEPS} steps, set-ups interleaved")
    print(f"{'model':<7} {'mask':<20} {'mask network':<13} {'ms/step':>8} {'vs static':>10}")
    setups = []
    for model in ("mlp", "lenet5"):
        for spec, options in (("pixel-any", {}), ("dynamic-pixel-any", {"mask_net": "linear"}),
                              ("dynamic-pixel-any", {"mask_net": "convatt"}),
                              ("dynamic-pixel-any", {"mask_net": "hybrid"}),
                              ("dynamic-block-any", {"grid": (7, 7), "mask_net": "convatt"})):
            config = TrainConfig(mask_type=spec, model=model, device="cpu", **options)  # type: ignore[arg-type]
            net = build(config, SHAPE, CLASSES)[0].mask_net if spec.startswith("dynamic") else "-"
            setups.append((model, spec, net, stepper(config), []))
    for steps in (setup[3] for setup in setups):
        steps(10)  # warm-up: allocations, first-call dispatch
    for _ in range(rounds):
        for *_, steps, times in setups:
            started = time.perf_counter()
            steps(STEPS)
            times.append((time.perf_counter() - started) / STEPS)
    base = 0.0
    for model, spec, net, _, times in setups:
        seconds = statistics.median(times)
        base = seconds if spec == "pixel-any" else base
        print(f"{model:<7} {spec:<20} {net:<13} {seconds * 1000:>8.2f} {seconds / base:>9.2f}x")


def moving_table() -> None:
    data = load_dataset("synthetic-moving")
    print("\n2. synthetic-moving (1x28x28, 4 classes, 2,400 / 600), lenet5, one run each")
    print(f"{'mask':<20} {'target':>7} {'bytes/raw':>10} {'test accuracy':>14} {'seconds':>8}")
    for spec, target in (("dynamic-pixel-any", 0.12), ("pixel-any", 0.15)):
        config = TrainConfig(mask_type=spec, model="lenet5", device="cpu", epochs=60, warmup_epochs=40,
                             finalize_epochs=30, target_fraction=target)
        started = time.perf_counter()
        result = train(config, data)
        print(f"{spec:<20} {target:>7.2f} {result.transfer['fraction_of_raw']:>10.3f} "
              f"{result.test_accuracy:>14.3f} {time.perf_counter() - started:>8.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--skip-runs", action="store_true", help="only the step cost")
    args = parser.parse_args()
    step_table(args.rounds)
    if not args.skip_runs:
        moving_table()


if __name__ == "__main__":
    main()
