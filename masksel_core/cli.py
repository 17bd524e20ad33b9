"""`python -m masksel_core train ...`: the command-line contract of ARCHITECTURE.md.

Bad flags or data end with one line `error: ...` on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .config import ConfigError, TrainConfig, parse_grid
from .data import DataError, load_dataset
from .export import write_outputs
from .masks import MASKS
from .models import MODELS
from .train import EpochRecord, train

EXIT_USAGE = 2


class UsageError(Exception):
    """A bad flag: reported in one line, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m masksel_core", description="Learn input selection masks.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    t = commands.add_parser("train", help="train a network and a selection mask jointly")
    t.add_argument("--data", required=True, help="built-in dataset name (digits) or a path to an .npz file")
    t.add_argument("--mask", required=True, help=f"mask type: {', '.join(MASKS)}")
    t.add_argument("--model", required=True, help=f"network: {', '.join(MODELS)}")
    t.add_argument("--epochs", required=True, type=int)
    t.add_argument("--out", required=True, help="folder for mask.json, mask.npy, model.pt, metrics.csv, config.json")
    defaults = TrainConfig()
    for flag, kind in (("lambda-init", float), ("lambda-factor", float), ("lambda-patience", int),
                       ("tau-init", float), ("tau-decay", float), ("tau-min", float), ("gamma", float),
                       ("mask-lr", float), ("model-lr", float), ("batch-size", int), ("seed", int),
                       ("target-fraction", float), ("finalize-epochs", int)):
        name = flag.replace("-", "_")
        t.add_argument(f"--{flag}", type=kind, default=getattr(defaults, name),
                       help=f"default: {getattr(defaults, name)}")
    t.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    t.add_argument("--grid", default="3x3", help="block grid GHxGW for block masks (default 3x3)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        mask_type=args.mask, model=args.model, epochs=args.epochs, lambda_init=args.lambda_init,
        lambda_factor=args.lambda_factor, lambda_patience=args.lambda_patience, tau_init=args.tau_init,
        tau_decay=args.tau_decay, tau_min=args.tau_min, gamma=args.gamma, mask_lr=args.mask_lr,
        model_lr=args.model_lr, batch_size=args.batch_size, seed=args.seed, device=args.device,
        target_fraction=args.target_fraction, finalize_epochs=args.finalize_epochs, grid=parse_grid(args.grid),
    )


def run_train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    config = config_from_args(args)
    data = load_dataset(args.data, seed=config.seed)
    total = config.epochs + config.finalize_epochs
    with tqdm(total=total, unit="epoch", disable=args.quiet, file=sys.stderr) as bar:
        def on_epoch(record: EpochRecord) -> None:
            bar.update(1)
            bar.set_postfix(acc=f"{record.val_accuracy:.3f}", frac=f"{record.fraction:.3f}",
                            lam=f"{record.lambda_:.3g}")

        result = train(config, data, on_epoch=on_epoch)
    paths = write_outputs(result, args.out)
    last = result.records[-1]
    print(f"done: {len(result.records)} epochs, val_accuracy {last.val_accuracy:.4f}, "
          f"fraction {result.fraction:.4f}; wrote {', '.join(sorted(paths))} to {args.out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "train":
            return run_train(args)
    except (UsageError, ConfigError, DataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_USAGE
