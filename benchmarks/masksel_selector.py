"""masksel as a selector in the method benchmark: one lambda path answers every budget.

One `masksel_core.train` run with a `pixel-any` mask (or `channel-any` over groups) raises lambda
until few elements are left; every epoch's discrete mask is kept. Elements are ranked by how long
they survived along the path (the last epoch in which they were selected, then how many epochs
they were selected in), like the order in which a lasso path drops features, and a budget of k
takes the k that survived longest. No refit per budget. Validation for lambda's plateau rule is a
held-out part of the *training* split; the benchmark's test split is never seen.

For each budget the network is also kept as it was when the path first had at most k pixels, so the
benchmark can report masksel's own jointly trained accuracy on its k pixels without the retrain.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch import nn

from benchmarks import peers
from masksel_core import TensorDataset, TrainConfig, train
from masksel_core.train import EpochRecord

# Chosen with the ablation in benchmarks/quality.py (see docs/benchmarks.md): lambda stepped on the
# validation Q (the authors' later code) so the path goes from every pixel down to a few, and logits
# initialised at 3 (also theirs: all selected, firmly), which helped at 8 and 16 pixels.
DEFAULTS: dict[str, Any] = {
    "model": "mlp", "epochs": 300, "model_lr": 1e-3, "batch_size": 64, "mask_lr": 0.05,
    "lambda_init": 0.05, "lambda_factor": 1.3, "lambda_patience": 0, "device": "cpu",
    "lambda_monitor": "val_mask_loss", "lambda_threshold": 0.005, "init_logit": 3.0,
}
# The ablation (`benchmarks/quality.py --ablation`): one change each against DEFAULTS.
ABLATION: dict[str, dict[str, Any]] = {
    "masksel[no-noise]": {"discretization": "deterministic"},
    "masksel[gamma=0]": {"gamma": 0.0},
    "masksel[gamma=1]": {"gamma": 1.0},
    "masksel[monitor=total]": {"lambda_monitor": "total", "lambda_threshold": 0.0},
    "masksel[factor=1.15]": {"lambda_factor": 1.15},
    "masksel[tau=1]": {"tau_init": 1.0, "tau_min": 0.5},
    "masksel[rescale]": {"rescale": True},
    "masksel[init=1]": {"init_logit": 1.0},
    "masksel[gamma=0+init=1]": {"gamma": 0.0, "init_logit": 1.0},
    "masksel[paper]": {"epochs": 80, "lambda_init": 0.1, "lambda_factor": 1.1, "lambda_patience": 2,
                       "mask_lr": 0.01, "model_lr": 1e-4, "batch_size": 128, "lambda_monitor": "total",
                       "lambda_threshold": 0.0},
}


def path_records(x: np.ndarray, y: np.ndarray, seed: int, groups: peers.Groups = None,
                 snapshot_at: Sequence[int] = (), **options: Any) -> tuple[list[np.ndarray], dict[int, nn.Module]]:
    """The discrete mask of every epoch (flat, one entry per element) of one training run, and for each
    count in ``snapshot_at`` a copy of the jointly trained network at the first epoch with at most that
    many elements selected (or at the last epoch, where the path never got there)."""
    if groups is None:
        side = int(round(np.sqrt(x.shape[1])))
        images, mask_type = x.reshape(len(x), 1, side, side), "pixel-any"
    else:
        grouped = peers._grouped(x, groups).numpy()  # (N, G, D)
        images, mask_type = grouped.reshape(len(x), grouped.shape[1], 1, grouped.shape[2]), "channel-any"
    fit, val = train_test_split(np.arange(len(y)), test_size=0.15, stratify=y, random_state=seed)
    data = TensorDataset("benchmark", torch.as_tensor(images[fit]), torch.as_tensor(y[fit]),
                         torch.as_tensor(images[val]), torch.as_tensor(y[val]), int(y.max()) + 1,
                         [f"c{i}" for i in range(images.shape[1])])
    config = TrainConfig.from_dict({**DEFAULTS, **options, "mask_type": mask_type, "seed": seed})
    snapshots: dict[int, nn.Module] = {}

    def keep(record: EpochRecord, model: nn.Module, _chain: object) -> None:
        for k in snapshot_at:
            if k not in snapshots and int(record.selected.sum()) <= k:
                snapshots[k] = copy.deepcopy(model).eval()

    result = train(config, data, inspect=keep if snapshot_at else None)
    for k in snapshot_at:
        snapshots.setdefault(k, copy.deepcopy(result.model).eval())
    return [record.selected.reshape(-1).astype(bool) for record in result.records], snapshots


def joint_predictor(model: nn.Module, chosen: Sequence[int], n_pixels: int) -> Callable[[np.ndarray], np.ndarray]:
    """``x (N, n_pixels) -> labels`` from the jointly trained network with only ``chosen`` pixels kept."""
    keep = torch.zeros(n_pixels)
    keep[torch.as_tensor(list(chosen), dtype=torch.long)] = 1.0
    side = int(round(n_pixels ** 0.5))

    @torch.no_grad()
    def predict(x: np.ndarray) -> np.ndarray:
        masked = torch.as_tensor(x, dtype=torch.float32) * keep
        return model(masked.reshape(len(x), 1, side, side)).argmax(dim=1).numpy()

    return predict


def survival_ranking(masks: Sequence[np.ndarray]) -> list[int]:
    """Elements ordered by the last epoch they were selected in, then by how often they were selected."""
    stacked = np.stack(masks)  # (epochs, elements)
    epochs = np.arange(1, len(masks) + 1)[:, None]
    last = (stacked * epochs).max(axis=0)
    count = stacked.sum(axis=0)
    return [int(i) for i in np.lexsort((np.arange(stacked.shape[1]), -count, -last))]


@peers.register("masksel")
@peers.all_budgets
def masksel(x: np.ndarray, y: np.ndarray, budgets: Sequence[int], seed: int, groups: peers.Groups = None,
            **options: Any) -> dict[int, list[int]]:
    masks, snapshots = path_records(x, y, seed, groups, snapshot_at=() if groups else budgets, **options)
    ranking = survival_ranking(masks)
    chosen = {k: ranking[:k] for k in budgets}
    return peers.Answers(chosen, {k: joint_predictor(snapshots[k], chosen[k], x.shape[1]) for k in snapshots})


def register_ablation() -> list[str]:
    """Add the ablation's variants to the registry; returns their names."""
    for name, options in ABLATION.items():
        def variant(x: np.ndarray, y: np.ndarray, budgets: Sequence[int], seed: int, groups: peers.Groups = None,
                    _options: dict[str, Any] = options) -> dict[int, list[int]]:
            return masksel(x, y, budgets, seed, groups, **_options)

        peers.register(name)(peers.all_budgets(variant))
    return list(ABLATION)
