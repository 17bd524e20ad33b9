"""The selection-quality protocol of `benchmarks/quality.py`: data, folds, the retrain network, the statistics.

- Data: a whole data set (its training and test splits together), flattened to (N, F) in [0, 1].
- Folds: repeated stratified k-fold (5 folds x 2 repeats, `FOLDS`, `REPEATS`): 10 pairs of a training part
  (80 %) and a test part (20 %), the same for every selector. A selector sees only the training part.
- Retrain: for each (fold, selection) the same network is trained from scratch on the training part with
  only the selected features kept (the rest set to 0, computed by leaving them out), and scored on the test
  part: an MLP F-128-128-C, Adam lr 1e-3, batch 128, at most `RETRAIN_EPOCHS` epochs, early stopping with
  patience `RETRAIN_PATIENCE` on a stratified 15 % of the training part, the best validation epoch's weights
  kept; its initialisation and batch order are seeded by the fold.
- Statistics: the difference of two selectors per fold, its mean and the Nadeau-Bengio corrected resampled t
  (Nadeau & Bengio 2003, "Inference for the generalization error", Machine Learning 52): variance
  ``(1/J + n_test/n_train) * s^2`` over the J folds, J - 1 degrees of freedom; a 95 % interval and a two-sided
  p-value, Holm-adjusted across the peers a selector is compared with.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats
from sklearn.model_selection import RepeatedStratifiedKFold, train_test_split
from torch import nn

from masksel_core.data.builtins import load_dataset

FOLDS, REPEATS = 5, 2
RETRAIN_EPOCHS, RETRAIN_PATIENCE, RETRAIN_BATCH = 100, 10, 128
#: Budgets per data set: mnist5k's 39 is about 5 % of its 784 pixels (the paper's regime).
BUDGETS = {"mnist5k": (10, 20, 39, 78), "digits": (4, 8, 16)}


@dataclass(frozen=True)
class Fold:
    index: int
    train: np.ndarray  # indices into the whole data set
    test: np.ndarray


def load(name: str) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int]]:
    """(x (N, F) float32, y (N,) int64, the image shape (C, H, W)) of a whole built-in data set."""
    data = load_dataset(name)
    x = torch.cat([data.x_train, data.x_test]).numpy()
    y = torch.cat([data.y_train, data.y_test]).numpy()
    return x.reshape(len(x), -1).astype(np.float32), y.astype(np.int64), data.input_shape


def folds(y: np.ndarray, *, seed: int = 0) -> list[Fold]:
    """The protocol's `FOLDS` x `REPEATS` stratified folds: the same for every selector."""
    splitter = RepeatedStratifiedKFold(n_splits=FOLDS, n_repeats=REPEATS, random_state=seed)
    return [Fold(i, train, test) for i, (train, test) in enumerate(splitter.split(np.zeros(len(y)), y))]


def retrain_accuracy(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                     keep: Sequence[int], seed: int) -> float:
    """Test accuracy of the protocol's network trained from scratch on the features `keep` (the rest zeroed)."""
    columns = sorted({int(i) for i in keep})
    fit, val = train_test_split(np.arange(len(y_train)), test_size=0.15, stratify=y_train, random_state=seed)
    x_fit, y_fit = torch.as_tensor(x_train[fit][:, columns]), torch.as_tensor(y_train[fit])
    x_val, y_val = torch.as_tensor(x_train[val][:, columns]), torch.as_tensor(y_train[val])
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    classes = int(max(y_train.max(), y_test.max())) + 1
    model = nn.Sequential(nn.Linear(x_train.shape[1], 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(),
                          nn.Linear(128, classes))
    model[0] = _kept_columns(model[0], columns)
    fit_best(model, x_fit, y_fit, x_val, y_val, generator)
    return _accuracy(model, torch.as_tensor(x_test[:, columns]), torch.as_tensor(y_test))


def fit_best(model: nn.Module, x_fit: torch.Tensor, y_fit: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor,
             generator: torch.Generator) -> nn.Module:
    """Train `model` (Adam lr 1e-3, batches of `RETRAIN_BATCH`) until validation accuracy has not improved for
    `RETRAIN_PATIENCE` epochs (at most `RETRAIN_EPOCHS`); it ends with its best validation epoch's weights."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    best, best_state, since = -1.0, copy.deepcopy(model.state_dict()), 0
    for _ in range(RETRAIN_EPOCHS):
        model.train()
        for batch in torch.randperm(len(y_fit), generator=generator).split(RETRAIN_BATCH):
            loss = nn.functional.cross_entropy(model(x_fit[batch]), y_fit[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        accuracy = _accuracy(model, x_val, y_val)
        if accuracy > best:
            best, best_state, since = accuracy, copy.deepcopy(model.state_dict()), 0
        else:
            since += 1
            if since >= RETRAIN_PATIENCE:
                break
    model.load_state_dict(best_state)
    return model


def _kept_columns(layer: nn.Linear, columns: list[int]) -> nn.Linear:
    """The first layer cut down to the kept features' columns of its initial weights. The same network as the
    full one fed zeros elsewhere: a zeroed feature's weights get zero gradients, which Adam turns into zero
    steps, so they never matter; without them the first layer costs k instead of F columns (mnist5k: 784)."""
    kept = torch.nn.utils.skip_init(nn.Linear, len(columns), layer.out_features)  # its weights are copied
    with torch.no_grad():
        kept.weight.copy_(layer.weight[:, columns])
        kept.bias.copy_(layer.bias)
    return kept


@torch.no_grad()
def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    return float((model(x).argmax(dim=1) == y).float().mean())


@dataclass(frozen=True)
class Comparison:
    """A's accuracy minus B's over the folds: mean, corrected 95 % interval, two-sided p-value."""

    mean: float
    low: float
    high: float
    p: float

    @property
    def verdict(self) -> str:
        return "ahead" if self.low > 0 else "behind" if self.high < 0 else "level"


def compare(a: Sequence[float], b: Sequence[float], *, test_share: float = 1 / FOLDS) -> Comparison:
    """The Nadeau-Bengio corrected resampled t of the paired differences `a - b` (one per fold)."""
    diffs = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    folds_count = len(diffs)
    mean = float(diffs.mean())
    variance = float(diffs.var(ddof=1)) if folds_count > 1 else 0.0
    error = math.sqrt((1 / folds_count + test_share / (1 - test_share)) * variance)
    if error == 0.0:
        return Comparison(mean, mean, mean, 1.0 if mean == 0 else 0.0)
    t_value = mean / error
    p_value = float(2 * stats.t.sf(abs(t_value), folds_count - 1))
    half = float(stats.t.ppf(0.975, folds_count - 1)) * error
    return Comparison(mean, mean - half, mean + half, p_value)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values (same order as given)."""
    order = np.argsort(p_values)
    adjusted = [0.0] * len(p_values)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def area(budgets: Sequence[int], accuracies: Sequence[float]) -> float:
    """Mean accuracy over the budget range, as the trapezoid area under accuracy against log(budget) divided by
    the range's width: budgets that double count alike (10 -> 20 as much as 39 -> 78)."""
    logs = np.log(np.asarray(budgets, dtype=np.float64))
    if len(logs) == 1:
        return float(accuracies[0])
    return float(np.trapezoid(accuracies, logs) / (logs[-1] - logs[0]))
