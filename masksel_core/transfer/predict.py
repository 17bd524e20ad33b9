"""`python -m masksel_core predict`: run a trained model on samples fetched from a masksel server.

It fetches the masked samples of a run (only the selected parts travel), predicts with the run's
TorchScript model (`model.ts`, downloaded unless `--model` names a local copy), and does the same
with the whole samples, so the two can be compared: accuracy, bytes received, seconds.
"""
from __future__ import annotations

import argparse
import io
import time
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from typing import Any

import torch

from .client import MAX_PAGE_SAMPLES, RemoteDataset, RemoteError, server_error


def add_parser(commands: Any) -> None:
    p = commands.add_parser("predict", help="predict on samples fetched from a server, masked and whole")
    p.add_argument("--server", required=True, help="e.g. http://127.0.0.1:8000")
    p.add_argument("--token", required=True, help="an API token (POST /api/auth/token/)")
    p.add_argument("--dataset", required=True, type=int, help="the data set's id on the server")
    p.add_argument("--run", required=True, type=int, help="the (succeeded) run whose mask and model to use")
    p.add_argument("--count", type=_at_least_one, help="how many test samples (default: all)")
    p.add_argument("--model", help="a local model.ts of the run (default: download it from the server)")
    p.add_argument("--page", type=_at_least_one, default=512, help=f"samples per request (at most {MAX_PAGE_SAMPLES})")
    p.add_argument("--dtype", default="float32", choices=("float32", "float16", "uint8"),
                   help="value type on the wire (the others are lossy)")
    p.add_argument("--compress", action="store_true", help="zlib the payloads (lossless)")
    p.add_argument("--skip-full", action="store_true", help="do not fetch the whole samples for comparison")
    p.set_defaults(handler=main)


def _at_least_one(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of 1 or more, got {text!r}")
    return int(text)


@dataclass(frozen=True)
class Measured:
    samples: int
    correct: int
    bytes_received: int
    seconds: float

    @property
    def accuracy(self) -> float:
        return self.correct / max(self.samples, 1)


def load_model(args: argparse.Namespace) -> torch.nn.Module:
    if args.model:
        source: Any = args.model
    else:
        request = urllib.request.Request(f"{args.server.rstrip('/')}/api/runs/{args.run}/model.ts",
                                         headers={"Authorization": f"Token {args.token}"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - the user's server
                source = io.BytesIO(response.read())
        except urllib.error.HTTPError as exc:  # e.g. a run still training: the server says so
            raise RemoteError(f"cannot download model.ts of run {args.run}: HTTP {exc.code}: {server_error(exc)}") \
                from None
        except OSError as exc:
            raise RemoteError(f"cannot download model.ts of run {args.run}: {exc}") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (FutureWarning, DeprecationWarning))
        try:
            return torch.jit.load(source, map_location="cpu").eval()
        except (RuntimeError, ValueError, OSError) as exc:  # a missing file, a state_dict (model.pt), junk
            where = args.model or f"run {args.run}'s model.ts"
            raise ValueError(f"{where} is not a TorchScript model (the run's model.ts; its model.pt holds the "
                             f"weights only): {(str(exc).strip().splitlines() or [type(exc).__name__])[0]}") from None


def measure(model: torch.nn.Module, remote: RemoteDataset, count: int | None) -> Measured:
    started = time.perf_counter()
    samples = correct = 0
    with torch.no_grad():
        for batch in remote.iter(limit=count):
            assert batch.labels is not None
            correct += int((model(batch.x).argmax(dim=1) == batch.labels).sum())
            samples += batch.x.shape[0]
    return Measured(samples, correct, remote.bytes_received, time.perf_counter() - started)


def main(args: argparse.Namespace) -> int:
    # Made first (they check their page size), then the model is downloaded. The whole samples come from the run's
    # own split: a data set without a test part is split by the run's seed.
    remotes = [(label, RemoteDataset(args.server, args.token, args.dataset, args.run, page=args.page,
                                     dtype=args.dtype, compress=args.compress, whole=whole))
               for label, whole in ([("masked", False)] if args.skip_full else [("masked", False), ("full", True)])]
    model = load_model(args)
    rows = [(label, measure(model, remote, args.count)) for label, remote in remotes]
    print("| data | samples | accuracy | bytes received | bytes/sample | seconds |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, m in rows:
        print(f"| {label} | {m.samples} | {m.accuracy:.4f} | {m.bytes_received} | "
              f"{m.bytes_received / max(m.samples, 1):.1f} | {m.seconds:.3f} |")
    if len(rows) == 2:
        print(f"masked/full bytes: {rows[0][1].bytes_received / max(rows[1][1].bytes_received, 1):.4f}")
    return 0
