"""masksel as a selector in the method benchmark: one lambda path answers every budget.

One `masksel_core.train` run with a `pixel-any` mask (or `channel-any` over groups) raises lambda
until few elements are left; every epoch's discrete mask is kept. Elements are ranked by how long
they survived along the path (the last epoch in which they were selected, then how many epochs
they were selected in), like the order in which a lasso path drops features, and a budget of k
takes the k that survived longest; then a short swap check with the path's own network (`swap_refine`:
the k against the next few of the ranking, a few epochs of fine-tuning each) settles near-ties between
copies of the same information. One path for every budget, no new path per budget. Validation for lambda's
plateau rule and for the swaps is a held-out part of the *training* split; the test split is never seen.

For each budget the network is also kept as it was when the path first had at most k pixels, so the
benchmark can report masksel's own jointly trained accuracy on its k pixels without the retrain.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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
    "lambda_monitor": "val_mask_loss", "lambda_threshold": 0.005, "lambda_threshold_mode": "abs", "init_logit": 3.0,
    "target_fraction": 0.0,  # the path is over once nothing is selected (about epoch 80 of 300 on digits)
    "finalize_epochs": 0,  # each budget's network is the path's own at that budget (and the swap check's)
}
# The swap refinement of each budget's set (see swap_refine).
SWAP_CANDIDATES, SWAP_EPOCHS, SWAP_ROUNDS = 8, 2, 3
# The ablation (`benchmarks/quality.py --ablation`): one change each against DEFAULTS.
ABLATION: dict[str, dict[str, Any]] = {
    "masksel[no-swap]": {"swap": False},
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
                       "lambda_threshold": 0.0, "warmup_epochs": 0},
}


@dataclass
class Path:
    """One training run: every epoch's discrete mask (flat, one entry per element), the jointly trained
    network at the first epoch with at most k elements for each k asked for (or at the last epoch, where the
    path never got there), and the data it trained on (``x_train`` = fitting part, ``x_test`` = validation)."""

    masks: list[np.ndarray]
    snapshots: dict[int, nn.Module]
    data: TensorDataset
    by_channel: bool  # elements are whole channels (groups) rather than pixels

    def input_mask(self, chosen: Sequence[int]) -> torch.Tensor:
        """1 where the network's input comes from a chosen element, else 0 (shape of one sample)."""
        shape = self.data.input_shape
        keep = torch.zeros(shape[0] if self.by_channel else int(np.prod(shape)))
        keep[torch.as_tensor(list(chosen), dtype=torch.long)] = 1.0
        return keep[:, None, None].expand(shape) if self.by_channel else keep.reshape(shape)


def path_records(x: np.ndarray, y: np.ndarray, seed: int, groups: peers.Groups = None,
                 snapshot_at: Sequence[int] = (), **options: Any) -> Path:
    """Train one lambda path on ``x`` (pixels, or channels = ``groups``) and keep what the selector needs."""
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
    masks = [record.selected.reshape(-1).astype(bool) for record in result.records if record.phase == "select"]
    return Path(masks, snapshots, data, by_channel=groups is not None)


def swap_refine(path: Path, k: int, ranking: Sequence[int], seed: int, *, candidates: int = SWAP_CANDIDATES,
                epochs: int = SWAP_EPOCHS, rounds: int = SWAP_ROUNDS, lr: float = 1e-3) -> list[int]:
    """The path's k best, improved by single swaps with the next ``candidates`` of the ranking.

    Each trial set fine-tunes a copy of the network the path had at k elements for ``epochs`` epochs on the
    fitting part and is scored by its validation loss; the best swap is kept if it lowers the loss, up to
    ``rounds`` times. Why: the path drops one of several near-copies of the same information by chance (the
    channel task's clean top half against its two noisy copies); a joint network warm-started at k elements
    tells them apart in a few epochs. The benchmark's test split is never seen.
    """
    chosen = list(ranking[:k])
    pool = [int(i) for i in ranking[k:k + candidates]]
    if not pool:
        return chosen
    data, start = path.data, path.snapshots[k]
    generator = torch.Generator().manual_seed(seed)

    def loss_of(trial: list[int]) -> float:
        keep = path.input_mask(trial)
        model = copy.deepcopy(start).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        for _ in range(epochs):
            for batch in torch.randperm(len(data.y_train), generator=generator).split(DEFAULTS["batch_size"]):
                loss = nn.functional.cross_entropy(model(data.x_train[batch] * keep), data.y_train[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        model.eval()
        with torch.no_grad():
            return float(nn.functional.cross_entropy(model(data.x_test * keep), data.y_test))

    best = loss_of(chosen)
    for _ in range(rounds):
        trials = [[c if e == out else e for e in chosen] for out in chosen for c in pool if c not in chosen]
        scored = min(((loss_of(trial), index) for index, trial in enumerate(trials)), default=None)
        if scored is None or scored[0] >= best:
            break
        best, chosen = scored[0], trials[scored[1]]
    return chosen


def joint_predictor(model: nn.Module, keep: torch.Tensor) -> Callable[[np.ndarray], np.ndarray]:
    """``x (N, F) -> labels`` from the jointly trained network, its input multiplied by ``keep`` (one sample's
    shape, e.g. ``Path.input_mask(chosen)``)."""

    @torch.no_grad()
    def predict(x: np.ndarray) -> np.ndarray:
        return model(torch.as_tensor(x, dtype=torch.float32).reshape(len(x), *keep.shape) * keep).argmax(dim=1).numpy()

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
    swap = options.pop("swap", True)
    path = path_records(x, y, seed, groups, snapshot_at=budgets, **options)
    ranking = survival_ranking(path.masks)
    chosen = {k: swap_refine(path, k, ranking, seed) if swap else ranking[:k] for k in budgets}
    joint = {} if groups else {k: joint_predictor(path.snapshots[k], path.input_mask(chosen[k])) for k in budgets}
    return peers.Answers(chosen, joint)


def register_ablation() -> list[str]:
    """Add the ablation's variants to the registry; returns their names."""
    for name, options in ABLATION.items():
        def variant(x: np.ndarray, y: np.ndarray, budgets: Sequence[int], seed: int, groups: peers.Groups = None,
                    _options: dict[str, Any] = options) -> dict[int, list[int]]:
            return masksel(x, y, budgets, seed, groups, **_options)

        peers.register(name)(peers.all_budgets(variant))
    return list(ABLATION)
