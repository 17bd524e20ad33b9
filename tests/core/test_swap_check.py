"""The swap check that ends selection: it trades a near-copy for the cleaner original, and nothing else."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from masksel_core import build_chain, create_model
from masksel_core.training.steps import Splits
from masksel_core.training.swap_check import swap_check


def _channels(n: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Channel 0 carries the class clearly, channel 1 is a noisy copy of it, channel 2 is noise."""
    labels = rng.integers(0, 2, size=n)
    clean = (labels[:, None] * 2.0 - 1.0) + rng.normal(0.0, 0.3, size=(n, 4))
    x = np.stack([clean, clean + rng.normal(0.0, 2.0, size=(n, 4)), rng.normal(size=(n, 4))], axis=1)
    return torch.as_tensor(x[:, :, None, :], dtype=torch.float32), torch.as_tensor(labels)


def _setup(kept: int) -> tuple[object, torch.nn.Module, Splits]:
    rng = np.random.default_rng(0)
    (x_fit, y_fit), (x_val, y_val) = _channels(480, rng), _channels(240, rng)
    chain = build_chain("channel-any", (3, 1, 4))
    with torch.no_grad():  # one channel kept, the others dropped with margins -0.5 and -2
        margins = torch.tensor([-0.5, -0.5, -2.0])
        margins[kept] = 1.0
        chain.select_stages[0].logits.copy_(torch.stack([margins, torch.zeros(3)], dim=1))
    torch.manual_seed(0)
    return chain, create_model("mlp", (3, 1, 4), 2), Splits(x_fit, y_fit, x_val, y_val, batch_size=16)


def test_a_noisy_copy_is_traded_for_the_clean_channel() -> None:
    chain, model, splits = _setup(kept=1)
    before = [p.clone() for p in model.parameters()]
    swaps = swap_check(chain, model, splits, candidates=2, rounds=3, lr=1e-2, seed=0)
    assert swaps == [(1, 0)] and chain.selected().tolist() == [1, 0, 0]
    assert chain.fraction() == pytest.approx(1 / 3)  # a swap never makes the mask dearer
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))  # trials train copies


def test_with_the_best_channel_kept_nothing_is_swapped() -> None:
    chain, model, splits = _setup(kept=0)
    assert swap_check(chain, model, splits, candidates=2, rounds=3, lr=1e-2, seed=0) == []
    assert chain.selected().tolist() == [1, 0, 0]


def test_xor_masks_and_zero_candidates_are_left_alone() -> None:
    _, model, splits = _setup(kept=1)
    xor = build_chain("channel-xor", (3, 1, 4))
    assert swap_check(xor, model, splits, candidates=2, rounds=3, lr=1e-2, seed=0) == []
    chain, model, splits = _setup(kept=1)
    assert swap_check(chain, model, splits, candidates=0, rounds=3, lr=1e-2, seed=0) == []
