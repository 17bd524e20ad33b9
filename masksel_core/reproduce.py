"""`python -m masksel_core reproduce channel|pixel|jpeg|combined`: the paper's figures, offline.

Each experiment follows one figure of the paper (Fig. 6 channels on remote, Fig. 9 pixels on MNIST, Fig. 10 JPEG
versions on CIFAR-10, Fig. 13 JPEG versions and pixels together) on a data set that ships offline (or on the real one
with `--data`). As in the paper, every run starts from a network pre-trained on the full input (the run's warm-up).
Writes `<name>.csv` and `<name>.png` (accuracy and Q against the epoch).
"""
from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import TrainConfig
from .data.builtins import load_dataset
from .training.records import EpochRecord
from .training.train import train


@dataclass(frozen=True)
class Experiment:
    figure: str
    data: str
    mask: str
    model: str
    lambda_init: float
    lambda_factor: float
    epochs: int


EXPERIMENTS = {
    "channel": Experiment("Fig. 6", "synthetic-remote", "channel-any", "mlp", 1.0, 1.25, 50),
    "pixel": Experiment("Fig. 9", "digits", "pixel-any", "lenet5", 0.1, 1.25, 60),
    "jpeg": Experiment("Fig. 10", "digits", "jpeg-xor", "lenet5", 0.1, 1.25, 60),
    "combined": Experiment("Fig. 13", "digits", "jpeg-xor+pixel-any", "lenet5", 0.1, 1.25, 60),
}
CSV_COLUMNS = ("experiment", "run", "epoch", "val_accuracy", "fraction", "lambda", "tau", "task_loss", "mask_loss")


def run_experiment(name: str, *, runs: int, epochs: int | None, pretrain_epochs: int, data_spec: str | None,
                   model: str | None, device: str, out: Path, root: str | None) -> Path:
    spec = EXPERIMENTS[name]
    data = load_dataset(data_spec or spec.data, root=root)
    model_name = model or spec.model
    rows: list[dict[str, Any]] = []
    for run in range(runs):
        config = TrainConfig(mask_type=spec.mask, model=model_name, epochs=epochs or spec.epochs,
                             lambda_init=spec.lambda_init, lambda_factor=spec.lambda_factor, seed=run,
                             device=device, warmup_epochs=pretrain_epochs, finalize_epochs=0)
        # The figures show selection, as the paper's do: warm-up is the pre-training before them.
        selection = [r for r in train(config, data).records if r.phase == "select"]
        rows += [_row(name, run, epoch, r) for epoch, r in enumerate(selection, start=1)]
        print(f"{name}: run {run + 1}/{runs} done (accuracy {rows[-1]['val_accuracy']:.3f}, "
              f"Q {rows[-1]['fraction']:.3f})", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    with (out / f"{name}.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, f"{spec.figure} stand-in: {spec.mask} on {data.name} ({model_name}), {runs} runs",
         out / f"{name}.png")
    return out / f"{name}.png"


def _row(name: str, run: int, epoch: int, record: EpochRecord) -> dict[str, Any]:
    """One selection epoch of one run; `epoch` counts selection epochs, as the paper's figures do."""
    return {"experiment": name, "run": run, "epoch": epoch, "val_accuracy": record.val_accuracy,
            "fraction": record.fraction, "lambda": record.lambda_, "tau": record.tau,
            "task_loss": record.task_loss, "mask_loss": record.mask_loss}


def plot(rows: list[dict[str, Any]], title: str, path: Path) -> None:
    """Accuracy and Q per epoch: every run thin and light, the mean thick and black (paper style)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = sorted({r["run"] for r in rows})
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharex=True)
    for axis, key, label in ((axes[0], "val_accuracy", "validation accuracy"), (axes[1], "fraction", "Q")):
        curves = [[r[key] for r in rows if r["run"] == run] for run in runs]
        for curve in curves:
            axis.plot(range(1, len(curve) + 1), curve, color="tab:blue", alpha=0.35, linewidth=1)
        length = min(len(c) for c in curves)
        mean = np.mean([c[:length] for c in curves], axis=0)
        axis.plot(range(1, length + 1), mean, color="black", linewidth=2.2, label="mean")
        axis.set_xlabel("epoch")
        axis.set_ylabel(label)
        axis.set_ylim(0, 1.02)
        axis.grid(alpha=0.3)
    axes[0].legend(loc="lower left")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def add_parser(commands: Any) -> None:
    r = commands.add_parser("reproduce", help="the paper's figures on offline stand-ins")
    r.add_argument("experiment", choices=sorted(EXPERIMENTS))
    r.add_argument("--runs", type=int, default=10, help="independent runs (the paper: 10)")
    r.add_argument("--epochs", type=int, help="epochs of selection per run (default: the experiment's)")
    r.add_argument("--pretrain-epochs", type=int, default=15,
                   help="at most this many epochs of warm-up (the network alone) before selection")
    r.add_argument("--data", help="another data set (e.g. mnist with --data-root)")
    r.add_argument("--data-root")
    r.add_argument("--model", help="another network")
    r.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    r.add_argument("--out", default="reproduce", help="folder for <experiment>.csv and <experiment>.png")
    r.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    if args.runs < 1 or (args.epochs is not None and args.epochs < 1) or args.pretrain_epochs < 0:
        raise ValueError("--runs and --epochs must be 1 or more, --pretrain-epochs 0 or more")
    path = run_experiment(args.experiment, runs=args.runs, epochs=args.epochs, pretrain_epochs=args.pretrain_epochs,
                          data_spec=args.data, model=args.model, device=args.device, out=Path(args.out),
                          root=args.data_root)
    print(f"wrote {path} and {path.with_suffix('.csv')}")
    return 0
