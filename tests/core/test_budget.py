"""Using the budget: after lambda overshot the target, the dropped elements closest to being kept come back."""
from __future__ import annotations

import pytest
import torch

from masksel_core import TrainConfig, build_chain, load_dataset, train
from masksel_core.masks.budget import FLOOR
from masksel_core.masks.dynamic import BIAS, DynamicMask, ServerMask


def _chain(kept: int, costs: list[float] | None = None):  # type: ignore[no-untyped-def]
    chain = build_chain("pixel-any", (1, 1, 16), costs=None if costs is None else torch.tensor(costs).view(1, 1, 16))
    margins = torch.linspace(-1.6, -0.1, 16)  # element 15 is the closest to being kept
    margins[:kept] = 1.0
    with torch.no_grad():
        chain.select_stages[0].logits.copy_(torch.stack([margins, torch.zeros(16)], dim=1).view(1, 1, 16, 2))
    return chain


def test_the_closest_dropped_elements_come_back_up_to_the_target() -> None:
    chain = _chain(kept=4)
    added = chain.fill_budget(0.5)  # 8 of 16 asked for, 4 kept
    assert added == [15, 14, 13, 12] and chain.fraction() == pytest.approx(0.5)
    assert chain.fill_budget(0.5) == []  # nothing left to fill


def test_filling_stops_at_the_floor_and_skips_what_is_too_dear() -> None:
    chain = _chain(kept=4, costs=[1.0] * 15 + [20.0])  # element 15 alone would cost 20 of the 16 values' price
    added = chain.fill_budget(0.5)
    assert added == [14, 13, 12, 11]  # 15 skipped; 7 of 16 is under the floor (0.45), 8 of 16 is not
    assert FLOOR * 0.5 <= chain.fraction() <= 0.5 + 1e-9


def test_xor_masks_are_left_alone() -> None:
    assert build_chain("channel-xor", (3, 1, 4)).fill_budget(0.5) == []


def test_a_run_whose_lambda_overshoots_ends_inside_its_budget() -> None:
    """lambda tripled at each raise: from all 64 pixels to 4 in one epoch for a target of 16; the run ends with 15
    or 16."""
    config = TrainConfig(mask_type="pixel-any", model="mlp", epochs=30, target_fraction=0.25, lambda_init=1.0,
                         lambda_factor=3.0, lambda_patience=0, warmup_epochs=2, finalize_epochs=2, seed=1)
    result = train(config, load_dataset("digits"))
    assert result.stopped_because == "target_fraction" and result.refilled, result.summary()
    assert FLOOR * 0.25 <= result.fraction <= 0.25
    assert result.summary()["refilled"] == result.refilled


def _bright_mask() -> DynamicMask:
    """A linear mask network set by hand: each pixel's logit is its own brightness times 20 minus 10, so a pixel is
    kept above 0.5 and an offset lowers that threshold for every input alike."""
    mask = DynamicMask("dynamic-pixel-any", (1, 8, 8), mask_net="linear")
    with torch.no_grad():
        mask.net.linear.weight.copy_(torch.eye(64) * 20)
        mask.net.linear.bias.fill_(-10 - BIAS)
        mask.net.scale.fill_(1.0)
    return mask


def test_a_dynamic_mask_below_its_target_keeps_the_cells_closest_to_being_kept() -> None:
    x = torch.rand(300, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    mask = _bright_mask()
    before, digest = mask.hard_cells(x), mask.digest()
    assert mask.fraction(x) == pytest.approx(0.5 + 9 / 256, abs=0.03)  # with its count and 8-byte bitmap
    target = 0.8
    assert mask.fill_budget(target, x) == []  # no one element to name: one offset moved for every input
    offset = float(mask.offset)
    assert offset > 0 and FLOOR * target <= mask.fraction(x) <= target
    after = mask.hard_cells(x)
    assert bool((after >= before).all())  # nothing kept before is dropped
    # The cells added are the brightest of those dropped, for every input: one threshold moved for all.
    threshold = 0.5 - offset / 20
    assert float((after != (x >= threshold).float()).float().mean()) < 1e-3  # rounding at the threshold aside
    assert mask.digest() != digest and mask.describe()["offset"] == pytest.approx(offset, abs=1e-6)
    server = ServerMask(mask)  # what the server runs keeps the same cells
    assert torch.equal(server(x), after)
    mask.fill_budget(target, x)
    assert float(mask.offset) == offset  # at the target already: nothing to move
    with pytest.raises(ValueError, match="depends on the inputs"):
        mask.fill_budget(target)


def test_a_dynamic_mask_saved_without_an_offset_loads_with_none() -> None:
    mask = _bright_mask()
    state = {k: v for k, v in mask.state_dict().items() if k != "offset"}
    fresh = DynamicMask("dynamic-pixel-any", (1, 8, 8), mask_net="linear")
    fresh.offset.fill_(2.0)
    fresh.load_state_dict(state)
    assert float(fresh.offset) == 0.0


def test_a_dynamic_run_whose_lambda_overshoots_ends_inside_its_budget() -> None:
    config = TrainConfig(mask_type="dynamic-pixel-any", model="mlp", epochs=30, target_fraction=0.4, lambda_init=1.0,
                         lambda_factor=3.0, lambda_patience=0, warmup_epochs=2, finalize_epochs=2, seed=1)
    result = train(config, load_dataset("digits"))
    assert result.stopped_because == "target_fraction", result.summary()
    assert FLOOR * 0.4 <= result.fraction <= 0.4 + 1e-9
    assert float(result.mask.offset) > 0
