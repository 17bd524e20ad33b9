from __future__ import annotations

import pytest
import torch

from masksel_core.masks import MASKS, create_mask

SHAPE = (3, 4, 5)
EXPECTED_SELECTED_SHAPE = {"channel-any": (3,), "pixel-any": (3, 4, 5)}


@pytest.mark.parametrize("mask_type", sorted(MASKS))
def test_a_new_mask_selects_everything(mask_type: str) -> None:
    mask = create_mask(mask_type, SHAPE, init_sigma=0.01)
    assert mask.selected().shape == EXPECTED_SELECTED_SHAPE[mask_type]
    assert mask.selected().dtype.name == "uint8"
    assert mask.selected().all()
    assert mask.fraction() == pytest.approx(1.0)


@pytest.mark.parametrize("mask_type", sorted(MASKS))
def test_the_cost_of_a_discrete_mask_is_the_transferred_fraction(mask_type: str) -> None:
    mask = create_mask(mask_type, SHAPE)
    with torch.no_grad():
        mask.logits[..., 1] = torch.randn(mask.logits.shape[:-1], generator=torch.Generator().manual_seed(3)) + 1
    selected = mask.sample(tau=1.0, explore=False)
    expanded = mask.expand(selected)
    assert expanded.shape == SHAPE
    assert mask.cost(selected).item() == pytest.approx(expanded.float().mean().item())
    assert mask.fraction() == pytest.approx(expanded.float().mean().item())


@pytest.mark.parametrize("mask_type", sorted(MASKS))
def test_dropped_values_are_zero_and_gradients_reach_the_logits(mask_type: str) -> None:
    mask = create_mask(mask_type, SHAPE)
    with torch.no_grad():
        mask.logits[0, ..., 0] = -5.0  # drop the first channel (or its values)
    x = torch.rand(2, *SHAPE) + 0.5
    selected = mask.sample(tau=1.0, explore=False)
    out = mask.mask_input(x, selected)
    assert torch.all(out[:, 0] == 0)
    assert torch.allclose(out[:, 1:], x[:, 1:])  # straight-through keeps kept values (to rounding)
    (out.sum() + mask.cost(selected)).backward()
    assert mask.logits.grad is not None and mask.logits.grad.abs().sum() > 0


def test_unknown_mask_type_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="unknown mask type 'pixel-all'"):
        create_mask("pixel-all", SHAPE)
