"""JPEG task of the method benchmark: which quality to send each channel at, priced by measured bytes.

Data: digits (the training and test parts `quality.py` gives), upscaled to 32x32 (nearest) and drawn as the
contrast of a fine checkerboard (grey 0.5 +- 0.2 * pixel: the finest detail JPEG has, so the lower the quality
the more of the class signal is quantised away), cut into four 16x32 channels: 0 = top half, 1 = bottom half, 2
and 3 = the top half plus Gaussian noise (sigma 0.1, clipped to [0, 1]). Every channel can be sent as a
grayscale JPEG at quality 90, 70, 50, 30 or 10; its price is its mean encoded size in bytes (plus the 4-byte
length that `masksel_core.transfer.packing` writes), measured per channel and quality. The noisy copies are dear (noise
costs bytes) and repeat channel 0, so a good policy spends its bytes on the two halves.

Policies, each then scored by the protocol's retrain (the same MLP on the decoded channels of its choice):
- always-q: every channel at quality q;
- 90/10 mix: as many randomly chosen channels at 90 as the byte budget allows, the rest at 10 (a policy that
  spends the same bytes without knowing which channels matter);
- masksel: one `jpeg-xor` run (extend -> channel-xor -> merge, costs from measured bytes, MLP), lambda raised
  on the validation Q; every epoch's choice is a point on one path. For a byte budget B it takes the first
  epoch whose choice costs at most B (no refit per budget).
The budgets are the bytes of always-70, always-50 and always-30: at each, masksel and the mix spend at most
as much as the uniform policy. always-90 and always-10 are the two ends (xor over these qualities cannot go
below always-10, so every policy ties there).
"""
from __future__ import annotations

import statistics
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.model_selection import train_test_split

from masksel_core import TensorDataset, TrainConfig, train
from masksel_core.masks.operators import Extend

QUALITIES = (90, 70, 50, 30, 10)
BUDGET_QUALITIES = (70, 50, 30)
N_CHANNELS = 4
SHAPE = (16, 32)
# The path: a `jpeg-xor` chain priced in bytes, lambda raised by 1.3 whenever the validation Q stalls (by an
# absolute 0.001: the priced Q of this task moves in steps of a few thousandths) until always-10 (150 epochs).
MASKSEL: dict[str, Any] = {
    "mask_type": "jpeg-xor", "extend_costs": "bytes", "model": "mlp", "epochs": 150, "device": "cpu",
    "batch_size": 64, "mask_lr": 0.05, "lambda_init": 0.05, "lambda_factor": 1.3, "lambda_patience": 0,
    "lambda_monitor": "val_mask_loss", "lambda_threshold": 0.001, "lambda_threshold_mode": "abs", "init_logit": 3.0,
    "target_fraction": 0.0, "finalize_epochs": 0,
}


# The digit is the contrast of a fine checkerboard (amplitude TEXTURE around grey 0.5): the finest detail JPEG
# has, so the lower the quality the more of the class signal is quantised away.
TEXTURE = 0.2
_CHECKER = np.where((np.arange(32)[:, None] + np.arange(32)[None, :]) % 2 == 0, 1.0, -1.0).astype(np.float32)


def jpeg_channels(x: np.ndarray, seed: int) -> np.ndarray:
    """Digits (N, 64) in [0, 1] -> the task's (N, 4, 16, 32) float32 channels; noise drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    big = F.interpolate(torch.as_tensor(x).reshape(len(x), 1, 8, 8), size=(32, 32), mode="nearest").numpy()[:, 0]
    big = 0.5 + TEXTURE * big * _CHECKER  # the digit as the contrast of a fine texture
    top, bottom = big[:, :16], big[:, 16:]
    channels = [top, bottom]
    channels += [np.clip(top + rng.normal(0.0, 0.1, size=top.shape), 0.0, 1.0) for _ in range(2)]
    return np.stack(channels, axis=1).astype(np.float32)


def versions_and_bytes(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 4, 5, 16, 32) decoded versions and (4, 5) mean bytes of each channel at each quality."""
    extend = Extend("jpeg", QUALITIES)
    tensor = torch.as_tensor(x)
    decoded = extend.apply(tensor).numpy().reshape(len(x), N_CHANNELS, len(QUALITIES), *SHAPE)
    raw = SHAPE[0] * SHAPE[1] * 4
    per_channel = extend.measured_costs(tensor, per_channel=True).numpy() * raw
    return decoded, per_channel


def assemble(decoded: np.ndarray, choice: Sequence[int]) -> np.ndarray:
    """The (N, 4 * 16 * 32) input a policy sends: channel c at quality index choice[c]."""
    picked = decoded[:, np.arange(N_CHANNELS), np.asarray(choice)]
    return picked.reshape(len(decoded), -1)


def cost(per_channel: np.ndarray, choice: Sequence[int]) -> float:
    return float(per_channel[np.arange(N_CHANNELS), np.asarray(choice)].sum())


def masksel_path(x: np.ndarray, y: np.ndarray, seed: int, **options: Any) -> list[tuple[int, ...]]:
    """The quality index per channel chosen after every epoch of one `jpeg-xor` run on the training part."""
    fit, val = train_test_split(np.arange(len(y)), test_size=0.15, stratify=y, random_state=seed)
    data = TensorDataset("jpeg-task", torch.as_tensor(x[fit]), torch.as_tensor(y[fit]), torch.as_tensor(x[val]),
                         torch.as_tensor(y[val]), int(y.max()) + 1, [f"c{i}" for i in range(N_CHANNELS)])
    config = TrainConfig.from_dict({**MASKSEL, **options, "seed": seed})
    return [tuple(int(q) for q in record.selected.reshape(N_CHANNELS, len(QUALITIES)).argmax(axis=1))
            for record in train(config, data).records if record.phase == "select"]


def mix_choice(per_channel: np.ndarray, budget: float, seed: int) -> tuple[int, ...]:
    """Random channels at 90 while the budget allows (in a random order), the rest at 10."""
    choice = [len(QUALITIES) - 1] * N_CHANNELS
    for c in np.random.default_rng(seed).permutation(N_CHANNELS):
        trial = choice.copy()
        trial[c] = 0
        if cost(per_channel, trial) <= budget:
            choice = trial
    return tuple(choice)


def run_jpeg(seeds: Sequence[int], evaluate: Any, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
             y_test: np.ndarray) -> None:
    """Print the JPEG task's table; ``evaluate(x_train, y_train, x_test, y_test, seed) -> accuracy``."""
    rows: dict[str, dict[str, list[float]]] = {}
    picks: dict[int, list[tuple[int, ...]]] = {q: [] for q in BUDGET_QUALITIES}

    def score(name: str, choice: Sequence[int], seed: int, train_x: np.ndarray, test_x: np.ndarray,
              per_channel: np.ndarray) -> None:
        row = rows.setdefault(name, {"bytes": [], "acc": []})
        row["bytes"].append(cost(per_channel, choice))
        row["acc"].append(evaluate(assemble(train_x, choice), y_train, assemble(test_x, choice), y_test, seed))

    for seed in seeds:
        channels = jpeg_channels(x_train, seed)
        train_x, fit_bytes = versions_and_bytes(channels)
        test_x, test_bytes = versions_and_bytes(jpeg_channels(x_test, 10_000 + seed))
        path = masksel_path(channels, y_train, seed)
        for position, quality in enumerate(QUALITIES):
            score(f"always-{quality}", [position] * N_CHANNELS, seed, train_x, test_x, test_bytes)
        for quality in BUDGET_QUALITIES:
            budget = cost(fit_bytes, [QUALITIES.index(quality)] * N_CHANNELS)
            chosen = next((c for c in path if cost(fit_bytes, c) <= budget), path[-1])
            picks[quality].append(chosen)
            score(f"masksel <= always-{quality}", chosen, seed, train_x, test_x, test_bytes)
            score(f"90/10 mix <= always-{quality}", mix_choice(fit_bytes, budget, seed), seed, train_x, test_x,
                  test_bytes)
        print(f"  jpeg task seed {seed}: done", file=sys.stderr, flush=True)

    print(f"\nJPEG task: 4 channels of 16x32 (top, bottom, 2 noisy copies of top), qualities "
          f"{list(QUALITIES)}, bytes per sample measured on the test split, {len(seeds)} seeds")
    print("\n| policy | bytes per sample | accuracy |")
    print("|---|---:|---:|")
    order = ["always-90"] + [f"{kind} <= always-{q}" for q in BUDGET_QUALITIES
                             for kind in ("always", "90/10 mix", "masksel")] + ["always-10"]
    for name in order:
        name = name.replace("always <= always-", "always-")
        row = rows[name]
        std = statistics.stdev(row["acc"]) if len(row["acc"]) > 1 else 0.0
        print(f"| {name} | {statistics.mean(row['bytes']):.0f} | {statistics.mean(row['acc']):.3f} ± {std:.3f} |")
    print("\nmasksel's qualities per channel (top, bottom, copy, copy), one line per seed:")
    for quality, chosen in picks.items():
        shown = "; ".join(" ".join(str(QUALITIES[i]) for i in c) for c in chosen)
        print(f"- within always-{quality}'s bytes: {shown}")
