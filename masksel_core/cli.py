"""`python -m masksel_core train ...`: the command-line contract (README, "The library and CLI").

Bad flags or data end with one line `error: ...` on stderr and exit status 2. Every `TrainConfig` field has a flag
(`lambda_init` -> `--lambda-init`), so the CLI and the REST API accept the same options.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from . import reproduce
from .config import OPTION_CHOICES, ConfigError, TrainConfig, parse_grid
from .data import convert
from .data.arrays import DataError
from .data.builtins import load_dataset
from .export import write_outputs
from .masks.chain import MASK_NAMES
from .masks.dynamic import MASK_NET_NAMES
from .models import MODELS
from .options import OPTION_HELP
from .training.records import EpochRecord
from .training.train import config_problem, train
from .transfer import predict
from .transfer.client import RemoteError

EXIT_USAGE = 2
EXIT_REMOTE = 3  # the server refused or could not be reached
# Config fields with a flag of their own spelling, or none: everything else is generated.
SPECIAL = {"mask_type", "model", "epochs", "grid", "device", "costs", "init_selected", "rescale", "server_view",
           "mask_net"}


class UsageError(Exception):
    """A bad flag: reported in one line, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def _kind(annotation: str) -> type:
    for name, kind in (("int", int), ("float", float), ("str", str)):
        if annotation.startswith(name):
            return kind
    raise TypeError(annotation)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m masksel_core", description="Learn input selection masks.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    t = commands.add_parser("train", help="train a network and a selection mask jointly")
    t.add_argument("--data", required=True, help="built-in name (digits, synthetic-remote, ...), mnist/cifar10/svhn "
                                                 "(read from --data-root), a path to an .npz file, or a zarr store "
                                                 "(path/to/set.zarr, s3://bucket/prefix)")
    t.add_argument("--mask", required=True,
                   help=f"mask type or chain: {', '.join(MASK_NAMES)}; chain with +, e.g. jpeg-xor+pixel-any")
    t.add_argument("--model", required=True, help=f"network: {', '.join(MODELS)}")
    t.add_argument("--epochs", required=True, type=int)
    t.add_argument("--out", required=True, help="folder for mask.json, mask.npy, model.pt, metrics.csv, config.json")
    defaults = TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        if f.name in SPECIAL:
            continue
        t.add_argument(f"--{f.name.replace('_', '-')}", type=_kind(str(f.type)), default=getattr(defaults, f.name),
                       choices=OPTION_CHOICES.get(f.name),
                       help=f"{OPTION_HELP[f.name]} (default: {getattr(defaults, f.name)})")
    t.add_argument("--device", default="auto", choices=OPTION_CHOICES["device"], help=OPTION_HELP["device"])
    t.add_argument("--grid", default="3x3", help=f"{OPTION_HELP['grid']} (default 3x3)")
    t.add_argument("--server-view", help=OPTION_HELP["server_view"])
    t.add_argument("--mask-net", default="auto", choices=MASK_NET_NAMES, help=OPTION_HELP["mask_net"])
    t.add_argument("--rescale", action="store_true", help=OPTION_HELP["rescale"])
    t.add_argument("--costs", help="JSON file with the relative price of every mask element (default: all 1)")
    t.add_argument("--init-selected", help=OPTION_HELP["init_selected"])
    t.add_argument("--checkpoint-dir", help="save the whole state after every epoch and resume from it if present")
    t.add_argument("--data-root", help="folder of the torchvision data sets (default: $MASKSEL_DATA_ROOT)")
    t.add_argument("--download", action="store_true", help="download mnist/cifar10/svhn into --data-root")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(handler=run_train)
    reproduce.add_parser(commands)
    predict.add_parser(commands)
    convert.add_parser(commands)
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if f.name not in SPECIAL}
    costs = None
    if args.costs:
        try:
            costs = json.loads(Path(args.costs).read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"--costs: cannot read a JSON list from {args.costs} ({exc})") from None
    init_selected = None
    if args.init_selected:
        try:
            init_selected = [int(part) for part in args.init_selected.split(",")]
        except ValueError:
            raise ConfigError(f"--init-selected must be comma-separated integers, got {args.init_selected!r}") from None
    return TrainConfig(mask_type=args.mask, model=args.model, epochs=args.epochs, device=args.device,
                       grid=parse_grid(args.grid), rescale=args.rescale, costs=costs, init_selected=init_selected,
                       server_view=parse_grid(args.server_view, "server view") if args.server_view else None,
                       mask_net=args.mask_net, **values)


def _make_folder(flag: str, folder: str | None) -> None:
    if folder is None:
        return
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file of that name, or a file on its path, or no permission
        raise UsageError(f"{flag} {folder}: cannot make the folder ({exc.strerror or exc})") from None


def run_train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    config = config_from_args(args)
    data = load_dataset(args.data, seed=config.seed, root=args.data_root, download=args.download)
    problem = config_problem(config, data.input_shape)
    if problem:  # before the progress bar, so the error is the only line
        raise ConfigError(problem)
    for flag, folder in (("--out", args.out), ("--checkpoint-dir", args.checkpoint_dir)):
        _make_folder(flag, folder)  # before training: a run must not be lost to a folder it cannot write
    with tqdm(unit="epoch", disable=args.quiet, file=sys.stderr) as bar:
        def on_epoch(record: EpochRecord) -> None:
            bar.n = record.epoch
            bar.set_postfix(phase=record.phase, acc=f"{record.val_accuracy:.3f}", frac=f"{record.fraction:.3f}",
                            lam=f"{record.lambda_:.3g}", refresh=True)

        result = train(config, data, on_epoch=on_epoch, checkpoint_dir=args.checkpoint_dir)
    paths = write_outputs(result, args.out)
    if not result.records:
        raise ValueError("no epoch was trained")
    last = result.records[-1]
    test = "" if result.test_accuracy is None else f", test_accuracy {result.test_accuracy:.4f}"
    print(f"done (selection ended: {result.stopped_because}): {len(result.records)} epochs, val_accuracy "
          f"{last.val_accuracy:.4f}{test}, fraction {result.fraction:.4f}; wrote {', '.join(sorted(paths))} "
          f"to {args.out}")
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if result.transfer:
        t = result.transfer
        held = "" if t["budget_held"] is None else (" (budget held)" if t["budget_held"] else
                                                      f" (over the budget of {t['budget_bytes']:g})")
        print(f"transfer: {t['bytes_per_sample']:.1f} bytes per test sample of {t['raw_bytes_per_sample']} raw "
              f"({t['fraction_of_raw']:.4f}){held}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return args.handler(args)
    except (UsageError, ConfigError, DataError, ValueError, RemoteError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_REMOTE if isinstance(exc, RemoteError) else EXIT_USAGE
