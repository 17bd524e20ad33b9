from __future__ import annotations

import numpy as np
import pytest
import torch

from masksel_core.masks.chain import MASK_NAMES, build_chain, split_spec
from masksel_core.masks.stages import SELECT_STAGES

SHAPE = (3, 8, 6)
EXPORTED_SHAPE = {"channel-any": (3,), "channel-xor": (3,), "pixel-any": (3, 8, 6), "pixel-xor": (3, 8, 6),
                  "block-any": (3, 3, 3)}


def randomise(chain, seed: int = 3) -> None:  # type: ignore[no-untyped-def]
    with torch.no_grad():
        for stage in chain.select_stages:
            stage.logits.copy_(torch.randn(stage.logits.shape, generator=torch.Generator().manual_seed(seed)) * 2)


@pytest.mark.parametrize("mask_type", sorted(SELECT_STAGES))
def test_each_mask_exports_its_contract_shape_as_uint8(mask_type: str) -> None:
    chain = build_chain(mask_type, SHAPE)
    randomise(chain)
    selected = chain.selected()
    assert selected.shape == EXPORTED_SHAPE[mask_type] and selected.dtype == np.uint8
    assert set(np.unique(selected)) <= {0, 1}


def test_a_new_any_mask_selects_everything() -> None:
    for mask_type in ("channel-any", "pixel-any", "block-any"):
        chain = build_chain(mask_type, SHAPE)
        assert chain.selected().all() and chain.fraction() == pytest.approx(1.0)


def test_xor_masks_keep_exactly_one() -> None:
    channel = build_chain("channel-xor", SHAPE)
    randomise(channel)
    assert channel.selected().sum() == 1 and channel.fraction() == pytest.approx(1 / 3)
    pixel = build_chain("pixel-xor", SHAPE)
    randomise(pixel)
    assert (pixel.selected().sum(axis=0) == 1).all() and pixel.fraction() == pytest.approx(1 / 3)


@pytest.mark.parametrize("mask_type", sorted(SELECT_STAGES))
def test_masked_input_and_cost_follow_the_discrete_mask(mask_type: str) -> None:
    chain = build_chain(mask_type, SHAPE)
    randomise(chain, seed=7)
    x = torch.rand(2, *SHAPE) + 0.5
    masked, q = chain(x, tau=1.0, explore=False)
    kept = (masked.detach() != 0).float()  # (B, C, H, W): which values got through
    assert torch.equal(kept[0], kept[1])
    assert q.item() == pytest.approx(kept[0].mean().item(), abs=1e-6)  # Q is the transferred fraction
    assert chain.fraction() == pytest.approx(q.item(), abs=1e-6)
    assert torch.allclose(masked[kept.bool()], x[kept.bool()])


def test_block_cells_broadcast_to_rectangles() -> None:
    chain = build_chain("block-any", (1, 8, 6), grid=(3, 2))
    with torch.no_grad():
        chain.select_stages[0].logits[0, 1, 0, 0] = -5.0  # drop the middle-left cell
    masked, _ = chain(torch.ones(1, 1, 8, 6), tau=1.0, explore=False)
    dropped = (masked[0, 0] == 0).nonzero().tolist()
    assert sorted({r for r, _ in dropped}) == [3, 4, 5] and sorted({c for _, c in dropped}) == [0, 1, 2]


@pytest.mark.parametrize("mask_type", sorted(SELECT_STAGES) + ["jpeg-xor+pixel-any", "thumb-xor+block-any"])
def test_the_straight_through_gradient_reaches_every_logit_stage(mask_type: str) -> None:
    chain = build_chain(mask_type, SHAPE)
    x = torch.rand(2, *chain.stage_input_shape)
    masked, q = chain(x, tau=1.0, explore=True, generator=torch.Generator().manual_seed(0))
    (masked.sum() + q).backward()
    for stage in chain.select_stages:
        assert stage.logits.grad is not None and stage.logits.grad.abs().sum() > 0


def test_per_element_costs_price_the_selection() -> None:
    chain = build_chain("channel-any", SHAPE, costs=np.array([2.0, 1.0, 0.0]))
    with torch.no_grad():
        chain.select_stages[0].logits[2, 0] = -5.0  # drop the free channel
    assert chain.fraction() == pytest.approx((2.0 + 1.0) / 3)
    with pytest.raises(ValueError, match="costs must have shape"):
        build_chain("pixel-any", SHAPE, costs=np.ones(3))
    # As many prices as elements, flat (a form's text field), are read in the selection's order.
    flat = np.arange(np.prod(SHAPE), dtype=np.float32)
    pixels = build_chain("pixel-any", SHAPE, costs=flat)
    assert pixels.select_stages[0].weights.reshape(-1).tolist() == flat.tolist()


def test_initial_preference_selects_only_the_given_elements() -> None:
    chain = build_chain("channel-any", SHAPE)
    chain.select_stages[0].prefer([1], 1.0)
    assert chain.selected().tolist() == [0, 1, 0]
    xor = build_chain("jpeg-xor", (2, 8, 8))
    assert xor.selected().reshape(2, 5).argmax(axis=1).tolist() == [0, 0]  # the best quality first
    xor.select_stages[0].prefer([4, 2], 1.0)
    assert xor.selected().reshape(2, 5).argmax(axis=1).tolist() == [4, 2]


def test_pixel_xor_can_favour_a_channel_per_pixel() -> None:
    chain = build_chain("pixel-xor", (3, 2, 2))
    chain.select_stages[0].prefer([2, 0, 1, 2], 1.0)
    assert chain.selected().argmax(axis=0).reshape(-1).tolist() == [2, 0, 1, 2]
    with pytest.raises(ValueError, match="one index below 3 per group"):
        chain.select_stages[0].prefer([3, 0, 0, 0], 1.0)


def test_a_jpeg_chain_costs_the_product_of_version_and_pixel_prices() -> None:
    chain = build_chain("jpeg-xor+pixel-any", (1, 4, 4))
    with torch.no_grad():
        xor, pixels = chain.select_stages
        xor.logits.copy_(torch.tensor([[0.0, 0.0, 5.0, 0.0, 0.0]]))  # quality 50
        pixels.logits[0, :2, :, 0] = -5.0  # drop the top half
    assert chain.fraction() == pytest.approx(0.5 * 0.5)
    assert chain.output_shape == (1, 4, 4) and chain.stage_input_shape == (5, 4, 4)


def test_specs_are_checked_by_name() -> None:
    assert split_spec("jpeg-xor+pixel-any") == ["jpeg-xor", "pixel-any"]
    for bad, needle in (("pixel-all", "unknown mask type 'pixel-all'"), ("pixel-any+jpeg-xor", "must come first"),
                        ("", "non-empty")):
        with pytest.raises(ValueError, match=needle):
            split_spec(bad)
    assert set(SELECT_STAGES) <= set(MASK_NAMES)


def test_static_and_dynamic_masks_answer_the_same_questions() -> None:
    """Training and export ask any mask the same things; a static one answers without reading the inputs."""
    from masksel_core.masks.dynamic import DynamicMask

    x = torch.rand(20, 3, 8, 6, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(20) % 4
    static = build_chain("channel-any+pixel-any", SHAPE)
    randomise(static)
    snapshot = static.epoch_snapshot(x, labels)
    assert list(snapshot) == ["selected"] and np.array_equal(snapshot["selected"], static.selected())
    assert np.array_equal(static.frequency(x), static.selected().astype(np.float32))
    assert [s["mask_type"] for s in static.document_fields(x)["stages"]] == ["channel-any", "pixel-any"]
    assert build_chain("pixel-any", SHAPE).document_fields() == {}
    keep, scale = static.client_keep()
    channels = static.select_stages[0].selected().astype(bool)
    assert keep.shape == SHAPE and not keep[~channels].any()  # a dropped channel's pixels are never kept
    assert static.server_half() is None and not static.per_input

    dynamic = DynamicMask("dynamic-block-any", SHAPE, grid=(2, 2), mask_net="linear")
    with torch.no_grad():
        dynamic.net.linear.weight.normal_(generator=torch.Generator().manual_seed(1))
        dynamic.net.scale.fill_(1.0)
    snapshot = dynamic.epoch_snapshot(x, labels)
    assert np.array_equal(snapshot["selected"], (snapshot["frequency"] >= 0.5).astype(np.uint8))
    assert snapshot["gallery"].shape[1:] == (3, 2, 2) and 0 < snapshot["frequency"].mean() < 1
    assert dynamic.document_fields(x)["dynamic"]["frequency"] == np.round(snapshot["frequency"], 4).tolist()
    assert torch.equal(dynamic.server_half()(x), dynamic.hard_cells(x))
    assert torch.equal(dynamic.client_keep()[0], torch.ones(SHAPE)) and dynamic.per_input
    with pytest.raises(ValueError, match="depends on the inputs"):
        dynamic.frequency()
