"""Using the budget: after lambda overshot the target, the dropped elements closest to being kept come back."""
from __future__ import annotations

import pytest
import torch

from masksel_core import TrainConfig, build_chain, load_dataset, train
from masksel_core.training.budget import FLOOR, fill_budget


def _chain(kept: int, costs: list[float] | None = None):  # type: ignore[no-untyped-def]
    chain = build_chain("pixel-any", (1, 1, 16), costs=None if costs is None else torch.tensor(costs).view(1, 1, 16))
    margins = torch.linspace(-1.6, -0.1, 16)  # element 15 is the closest to being kept
    margins[:kept] = 1.0
    with torch.no_grad():
        chain.select_stages[0].logits.copy_(torch.stack([margins, torch.zeros(16)], dim=1).view(1, 1, 16, 2))
    return chain


def test_the_closest_dropped_elements_come_back_up_to_the_target() -> None:
    chain = _chain(kept=4)
    added = fill_budget(chain, target=0.5)  # 8 of 16 asked for, 4 kept
    assert added == [15, 14, 13, 12] and chain.fraction() == pytest.approx(0.5)
    assert fill_budget(chain, target=0.5) == []  # nothing left to fill


def test_filling_stops_at_the_floor_and_skips_what_is_too_dear() -> None:
    chain = _chain(kept=4, costs=[1.0] * 15 + [20.0])  # element 15 alone would cost 20 of the 16 values' price
    added = fill_budget(chain, target=0.5)
    assert added == [14, 13, 12, 11]  # 15 skipped; 7 of 16 is under the floor (0.45), 8 of 16 is not
    assert FLOOR * 0.5 <= chain.fraction() <= 0.5 + 1e-9


def test_xor_masks_are_left_alone() -> None:
    assert fill_budget(build_chain("channel-xor", (3, 1, 4)), target=0.5) == []


def test_a_run_whose_lambda_overshoots_ends_inside_its_budget() -> None:
    """lambda tripled at each raise: from all 64 pixels to 4 in one epoch for a target of 16; the run ends with 15
    or 16."""
    config = TrainConfig(mask_type="pixel-any", model="mlp", epochs=30, target_fraction=0.25, lambda_init=1.0,
                         lambda_factor=3.0, lambda_patience=0, warmup_epochs=2, finalize_epochs=2, seed=1)
    result = train(config, load_dataset("digits"))
    assert result.stopped_because == "target_fraction" and result.refilled, result.summary()
    assert FLOOR * 0.25 <= result.fraction <= 0.25
    assert result.summary()["refilled"] == result.refilled
