"""masksel as a selector of `benchmarks/quality.py`: one run per budget, as a user runs it.

For a budget of k elements (pixels, or channels given as ``groups``) one `masksel_core.train` run with the
defaults and ``target_fraction = k / elements``: warm-up, selection until at most k elements are left,
finalize. The run's final mask is the selection, and its written network (the model a user downloads) is
scored on the test part too, without a retrain (``peers.Answers.joint``). The run sees the training part only
and holds out its own validation share from it.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from benchmarks import peers
from masksel_core import TensorDataset, TrainConfig, train

DEFAULTS: dict[str, Any] = {"model": "mlp", "epochs": 300, "device": "cpu"}
# The ablation (`benchmarks/quality.py --ablation`): one change each against the defaults.
ABLATION: dict[str, dict[str, Any]] = {
    "masksel[paper]": {"model_lr": 1e-4, "lambda_factor": 1.1, "lambda_monitor": "total", "lambda_threshold": 0.0,
                       "lambda_threshold_mode": "abs"},
    "masksel[later-code]": {"discretization": "deterministic", "lambda_monitor": "val_mask_loss",
                            "lambda_threshold": 0.0025, "lambda_threshold_mode": "abs", "init_logit": 3.0},
    "masksel[no-swap-check]": {"swap_candidates": 0},
    "masksel[no-warm-up]": {"warmup_epochs": 0},
    "masksel[no-finalize]": {"finalize_epochs": 0},
    # Several selections, each its own seed, and the one whose written model scores best on the run's own
    # validation share (the fold's training part only): less luck, at `best_of` times the time.
    "masksel[best-of-3]": {"best_of": 3},
    # A slower selection: lambda raised by 1.1 instead of 1.25 when Q lags its path, and twice the epochs (the
    # path to the target twice as long): at 4 of 64 pixels each pixel dropped is a larger part of the decision.
    "masksel[slow-pace]": {"lambda_factor": 1.1, "epochs": 600},
}
BEST_OF_STRIDE = 7919  # the seeds of a budget's several selections: seed, seed + stride, ...


def as_images(x: np.ndarray, groups: peers.Groups) -> tuple[torch.Tensor, str]:
    """Pixels as one square channel, or each group as a channel of its own: `(N, C, H, W)` and the mask type."""
    if groups is None:
        side = int(round(np.sqrt(x.shape[1])))
        return torch.as_tensor(x.reshape(len(x), 1, side, side)), "pixel-any"
    grouped = peers._grouped(x, groups)  # (N, G, D)
    return grouped.reshape(len(x), grouped.shape[1], 1, grouped.shape[2]), "channel-any"


def run_budget(images: torch.Tensor, y: np.ndarray, k: int, mask_type: str, seed: int,
               **options: Any) -> tuple[list[int], torch.nn.Module, torch.Tensor]:
    """One run to at most k elements: (chosen element indices, the written network, its input's keep map)."""
    labels = torch.as_tensor(y, dtype=torch.long)
    # The run's own test split is never looked at here: two samples keep `train` from scoring anything large.
    data = TensorDataset("fold", images, labels, images[:2], labels[:2], int(labels.max()) + 1)
    elements = images.shape[1] if mask_type == "channel-any" else int(np.prod(images.shape[1:]))
    best_of = options.pop("best_of", 1)
    results = [train(TrainConfig.from_dict({**DEFAULTS, **options, "mask_type": mask_type, "target_fraction":
                                            k / elements, "seed": seed + BEST_OF_STRIDE * i}), data)
               for i in range(best_of)]
    result = max(results, key=lambda r: r.records[-1].val_accuracy)  # the first of equals
    stage = result.mask.select_stages[-1]
    margin = (stage.logits[..., 0] - stage.logits[..., 1]).detach().reshape(-1)
    chosen = np.flatnonzero(result.selected.reshape(-1)).tolist()
    if len(chosen) > k:  # the epochs ran out first: the k most firmly selected
        chosen = sorted(torch.argsort(margin, descending=True)[:k].tolist())
    keep = stage.keep_map().detach().cpu()
    return chosen, result.model.eval(), keep


def joint_predictor(model: torch.nn.Module, keep: torch.Tensor) -> Callable[[np.ndarray], np.ndarray]:
    """``x (N, F) -> labels`` from the written network, its input multiplied by ``keep`` (one sample's shape)."""

    @torch.no_grad()
    def predict(x: np.ndarray) -> np.ndarray:
        return model(torch.as_tensor(x, dtype=torch.float32).reshape(len(x), *keep.shape) * keep).argmax(dim=1).numpy()

    return predict


@peers.register("masksel")
@peers.all_budgets
def masksel(x: np.ndarray, y: np.ndarray, budgets: Sequence[int], seed: int, groups: peers.Groups = None,
            **options: Any) -> peers.Answers:
    images, mask_type = as_images(x, groups)
    chosen, joint = {}, {}
    for k in budgets:
        chosen[k], model, keep = run_budget(images, y, k, mask_type, seed, **options)
        if groups is None:
            joint[k] = joint_predictor(model, keep)
    return peers.Answers(chosen, joint)


def register_ablation() -> list[str]:
    """Add the ablation's variants to the registry; returns their names."""
    for name, options in ABLATION.items():
        def variant(x: np.ndarray, y: np.ndarray, budgets: Sequence[int], seed: int, groups: peers.Groups = None,
                    _options: dict[str, Any] = options) -> peers.Answers:
            return masksel(x, y, budgets, seed, groups, **_options)

        peers.register(name)(peers.all_budgets(variant))
    return list(ABLATION)
