"""The swap check that ends selection: it trades a near-copy for the cleaner original, and nothing else."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from masksel_core import build_chain, create_model
from masksel_core.training.steps import Splits
from masksel_core.training.swap_check import (
    FINALISTS,
    SHORTLIST,
    TRIAL_MIN_STEPS,
    TRIAL_SHARE,
    selection_gradient,
    swap_check,
    trial_steps,
)


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


class CountingSplits(Splits):
    """Splits that count the validation passes made over them."""

    passes = 0

    def val_batches(self):  # type: ignore[no-untyped-def]
        self.passes += 1
        return super().val_batches()


def _wide_setup() -> tuple[object, torch.nn.Module, CountingSplits]:
    """24 values: 0 carries the class, 1 is a noisy copy, the rest noise; 1..12 kept, 0 dropped. The network was
    trained on every value, so it knows what 0 is worth."""
    rng = np.random.default_rng(1)

    def values(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = rng.integers(0, 2, size=n)
        x = rng.normal(size=(n, 24))
        x[:, 0] = (labels * 2.0 - 1.0) + rng.normal(0.0, 0.3, size=n)
        x[:, 1] = x[:, 0] + rng.normal(0.0, 2.0, size=n)
        return torch.as_tensor(x[:, None, None, :], dtype=torch.float32), torch.as_tensor(labels)

    (x_fit, y_fit), (x_val, y_val) = values(512), values(256)
    torch.manual_seed(0)
    model = create_model("mlp", (1, 1, 24), 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(100):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x_fit), y_fit).backward()
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    chain = build_chain("pixel-any", (1, 1, 24))
    with torch.no_grad():
        margins = torch.full((24,), -2.0)
        margins[1:13], margins[0] = 1.0, -0.5
        chain.select_stages[0].logits.copy_(torch.stack([margins, torch.zeros(24)], dim=1).view(1, 1, 24, 2))
    return chain, model, CountingSplits(x_fit, y_fit, x_val, y_val, batch_size=16)


def test_many_kept_elements_are_screened_in_a_bounded_number_of_passes() -> None:
    chain, model, splits = _wide_setup()
    rounds = 2
    swaps = swap_check(chain, model, splits, candidates=2, rounds=rounds, lr=1e-2, seed=0)
    assert (swaps[0][1] if swaps else None) == 0  # the clean value is taken in the first round
    assert chain.selected().reshape(-1)[0] == 1 and chain.selected().sum() == 12  # Q unchanged
    # 12 kept x 2 candidates = 24 pairs, more than SHORTLIST: each round a gradient pass ranks them and at most 4
    # trials (the 3 best and the current mask) decide, none of the exact screen's passes
    assert 24 > SHORTLIST and splits.passes <= rounds * (1 + FINALISTS + 1)


def test_the_first_order_screen_ranks_the_clean_value_first() -> None:
    chain, model, splits = _wide_setup()
    gradient = selection_gradient(chain, model, splits, chain.select_stages[0]).reshape(-1)
    assert int(torch.argmin(gradient[[0, *range(13, 24)]])) == 0  # of the dropped, 0 lowers the loss most
    assert not any(p.grad is not None for p in model.parameters())  # the network's gradients untouched


def test_a_trial_is_a_bounded_share_of_an_epoch() -> None:
    assert trial_steps(1000, 128) == 8  # small data: the whole epoch
    assert trial_steps(10_000, 128) == TRIAL_MIN_STEPS  # 79 batches
    assert trial_steps(1_000_000, 100) == int(TRIAL_SHARE * 10_000)
