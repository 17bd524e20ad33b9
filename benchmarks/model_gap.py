"""Is the model a run writes as good as its mask allows? Its test accuracy against a fresh network's on the same mask.

For each case and seed: one `masksel_core.train` run with the defaults (warm-up, selection to the target, finalize),
then a fresh network of the same architecture trained from scratch behind the run's final, frozen mask: Adam at the
run's `network_lr`, the run's own validation split for early stopping with twice the run's patience, at most 300
epochs, the best validation epoch kept. Both are scored on the test split, which neither run saw. The table gives
the mean over seeds of each, and of the gap written minus fresh (goal: gap >= -0.01).

    python benchmarks/model_gap.py [--seeds 3] [--cases digits-mlp,digits-lenet5,remote-mlp] [--quick]
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from masksel_core import TensorDataset, TrainConfig, TrainResult, create_model, load_dataset, train  # noqa: E402
from masksel_core.training.schedules import EarlyStopping  # noqa: E402
from masksel_core.training.steps import batches, evaluate, network_step  # noqa: E402
from masksel_core.training.train import prepare_inputs, split_validation  # noqa: E402

# case -> (data set, mask, model, target fractions; None = the default run, without a target)
CASES: dict[str, tuple[str, str, str, tuple[float | None, ...]]] = {
    "digits-mlp": ("digits", "pixel-any", "mlp", (4 / 64, 8 / 64, 16 / 64)),
    "digits-lenet5": ("digits", "pixel-any", "lenet5", (4 / 64, 8 / 64, 16 / 64)),
    "remote-mlp": ("synthetic-remote", "channel-any", "mlp", (None,)),
}
FRESH_EPOCHS = 300


def fresh_accuracy(result: TrainResult, data: TensorDataset, seed: int) -> float:
    """A new network of the run's architecture, trained from scratch behind the run's frozen final mask."""
    config, chain = result.config, copy.deepcopy(result.mask).cpu()
    chain.freeze()
    prepared = prepare_inputs(chain, data)
    splits = split_validation(prepared, config.val_share, config.seed)
    torch.manual_seed(10_000 + seed)
    model = create_model(config.model, chain.output_shape, data.num_classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.network_lr)
    stopper, best = EarlyStopping(2 * config.early_stop_patience), copy.deepcopy(model.state_dict())
    generator, loss_fn = torch.Generator().manual_seed(seed), nn.CrossEntropyLoss()
    for epoch in range(FRESH_EPOCHS):
        model.train()
        for batch in batches(len(splits.y_fit), config.batch_size, generator=generator):
            network_step(model, chain, loss_fn, splits.x_fit[batch], splits.y_fit[batch], optimizer)
        if stopper.step(evaluate(model, chain, splits.x_val, splits.y_val)[0], epoch):
            best = copy.deepcopy(model.state_dict())
        if stopper.exhausted:
            break
    model.load_state_dict(best)
    return evaluate(model, chain, prepared.x_test, prepared.y_test)[0]


def run_case(name: str, seeds: list[int], quick: bool) -> list[str]:
    data_name, mask, model, targets = CASES[name]
    data = load_dataset(data_name)
    rows = []
    for target in targets:
        written, fresh, fractions, started = [], [], [], time.perf_counter()
        for seed in seeds:
            options = {"mask_type": mask, "model": model, "seed": seed, "device": "cpu", "target_fraction": target}
            if target is not None:
                options["epochs"] = 300  # the run reaches the target well before (TargetPace)
            if quick:
                options.update(epochs=20, warmup_epochs=10, finalize_epochs=10)
            result = train(TrainConfig.from_dict(options), data)
            assert result.test_accuracy is not None
            written.append(result.test_accuracy)
            fresh.append(fresh_accuracy(result, data, seed))
            fractions.append(result.fraction)
        gaps = [w - f for w, f in zip(written, fresh, strict=True)]
        spread = statistics.stdev(gaps) if len(gaps) > 1 else 0.0
        label = "none" if target is None else f"{target:.4f}"
        rows.append(f"| {data_name} | {mask} | {model} | {label} | {statistics.mean(fractions):.4f} | "
                    f"{statistics.mean(written):.4f} | {statistics.mean(fresh):.4f} | "
                    f"{statistics.mean(gaps):+.4f} ± {spread:.4f} | {time.perf_counter() - started:.0f} |")
        print(rows[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--quick", action="store_true", help="short phases: a smoke run, not a measurement")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, seeds 0..{args.seeds - 1}; "
          "accuracy on the test split, mean over seeds; gap = written - fresh (mean ± std)")
    print("| data | mask | model | target | Q | written model | fresh network | gap | seconds |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for name in args.cases.split(","):
        run_case(name, list(range(args.seeds)), args.quick)


if __name__ == "__main__":
    main()
