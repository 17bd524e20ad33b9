"""pack/unpack: only the selected parts travel, and the receiver rebuilds exactly what the network saw."""
from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch

import masksel_core
from masksel_core.export import mask_document
from masksel_core.masks.chain import build_chain
from masksel_core.transfer.packing import (
    _HEAD,
    TransferError,
    full_plan,
    pack,
    plan_from_chain,
    plan_from_mask_document,
    unpack,
)

SPECS = ["channel-any", "pixel-any", "block-any", "channel-xor", "pixel-xor", "jpeg-xor", "thumb-xor",
         "jpeg-xor+pixel-any", "thumb-xor+channel-any", "channel-any+pixel-any", "jpeg-xor+block-any"]
SHAPE = (3, 12, 10)


def trained_like_chain(spec: str, seed: int = 0):  # type: ignore[no-untyped-def]
    """A chain whose logits are random, so each stage keeps a mixed selection (as after training)."""
    chain = build_chain(spec, SHAPE, grid=(3, 2))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in chain.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 2)
    return chain


def network_input(chain, x: torch.Tensor) -> torch.Tensor:  # type: ignore[no-untyped-def]
    prepared = chain.extend.apply(x) if chain.extend is not None else x
    with torch.no_grad():
        return chain(prepared, tau=1.0, explore=False)[0]


@pytest.mark.parametrize("spec", SPECS)
def test_unpack_rebuilds_what_the_network_saw(spec: str) -> None:
    chain = trained_like_chain(spec)
    plan = plan_from_chain(chain)
    x = torch.rand(5, *SHAPE, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([3, 1, 4, 1, 5])
    got = unpack(pack(x, plan, labels=labels), plan)
    torch.testing.assert_close(got.x, network_input(chain, x), rtol=0, atol=0)
    assert got.labels.tolist() == labels.tolist()


@pytest.mark.parametrize("spec", ["channel-any", "pixel-any", "block-any", "pixel-xor", "channel-any+pixel-any"])
def test_plain_masks_send_the_kept_values_and_a_small_header(spec: str) -> None:
    chain = trained_like_chain(spec, seed=3)
    plan = plan_from_chain(chain)
    x = torch.rand(64, *SHAPE)
    payload = pack(x, plan)
    body = 64 * plan.kept_values * 4
    assert plan.kept_values / np.prod(SHAPE) == pytest.approx(chain.fraction())
    assert body <= len(payload) <= body + 100
    assert plan.predicted_bytes_per_sample() * 64 == body


def test_the_mask_json_gives_the_same_plan_as_the_chain() -> None:
    for spec in SPECS:
        chain = trained_like_chain(spec, seed=5)
        stages = chain.describe() if "+" in spec or chain.extend is not None else None
        document = json.loads(json.dumps(mask_document(spec, SHAPE, chain.selected(), chain.fraction(), stages)))
        from_doc, from_chain = plan_from_mask_document(document), plan_from_chain(chain)
        assert from_doc.plan_id == from_chain.plan_id, spec


def test_jpeg_payloads_carry_the_picked_quality_and_lower_quality_is_smaller() -> None:
    x = torch.rand(16, *SHAPE, generator=torch.Generator().manual_seed(2))
    sizes = []
    for version in range(5):
        chain = build_chain("jpeg-xor", SHAPE)
        with torch.no_grad():
            chain.stages[0].logits.zero_()
            chain.stages[0].logits[:, version] = 5.0
        plan = plan_from_chain(chain)
        assert plan.versions == (version,) * 3
        sizes.append(len(pack(x, plan)))
    assert sizes == sorted(sizes, reverse=True)  # qualities 90, 70, 50, 30, 10


def test_dropped_channels_are_not_sent_at_all() -> None:
    chain = build_chain("jpeg-xor+channel-any", SHAPE)
    with torch.no_grad():
        chain.stages[2].logits[:, 0] = torch.tensor([5.0, -5.0, -5.0])
        chain.stages[2].logits[:, 1] = 0.0
    plan = plan_from_chain(chain)
    assert plan.kept_channels() == [0]
    x = torch.rand(4, *SHAPE)
    full_jpeg = build_chain("jpeg-xor", SHAPE)
    assert len(pack(x, plan)) < len(pack(x, plan_from_chain(full_jpeg))) / 2


def test_lossy_value_types_and_compression_round_trip() -> None:
    plan = plan_from_chain(trained_like_chain("pixel-any"))
    x = torch.rand(8, *SHAPE)
    exact = unpack(pack(x, plan), plan).x
    assert torch.equal(unpack(pack(x, plan, compress=True), plan).x, exact)
    torch.testing.assert_close(unpack(pack(x, plan, dtype="float16"), plan).x, exact, atol=1e-3, rtol=0)
    torch.testing.assert_close(unpack(pack(x, plan, dtype="uint8"), plan).x, exact, atol=1 / 255, rtol=0)
    assert len(pack(x, plan, dtype="uint8")) < len(pack(x, plan, dtype="float16")) < len(pack(x, plan))


def test_corrupt_or_foreign_payloads_are_refused_with_a_reason() -> None:
    plan = plan_from_chain(trained_like_chain("pixel-any"))
    other = plan_from_chain(trained_like_chain("pixel-any", seed=9))
    payload = pack(torch.rand(3, *SHAPE), plan)
    with pytest.raises(TransferError, match="not a masksel payload"):
        unpack(b"PK\x03\x04" + payload[4:])
    with pytest.raises(TransferError, match="packed for mask"):
        unpack(payload, other)
    with pytest.raises(TransferError, match="truncated"):
        unpack(payload[:-5], plan)
    with pytest.raises(TransferError, match="format 9"):
        unpack(payload[:4] + bytes([9]) + payload[5:])
    assert payload[4] == 1  # unchanged since format 1: what older readers read (format 2 is for dynamic masks)
    damaged = bytearray(pack(torch.rand(3, *SHAPE), plan, compress=True))
    damaged[-3] ^= 0xFF
    with pytest.raises(TransferError):
        unpack(bytes(damaged), plan)
    jpeg_plan = plan_from_chain(build_chain("jpeg-xor", SHAPE))
    broken = bytearray(pack(torch.rand(2, *SHAPE), jpeg_plan))
    plan_length = struct.unpack_from("<I", broken, _HEAD.size - 4)[0]
    first_image = _HEAD.size + plan_length + 8
    struct.pack_into("<I", broken, first_image, 10**6)  # an image longer than the payload
    with pytest.raises(TransferError, match="truncated inside a JPEG"):
        unpack(bytes(broken), jpeg_plan)


def test_a_batch_of_the_wrong_shape_is_refused() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        pack(torch.rand(2, 1, 8, 8), full_plan(SHAPE))


def test_measured_version_costs_are_the_bytes_pack_sends() -> None:
    from masksel_core.masks.operators import Extend

    x = torch.rand(40, *SHAPE, generator=torch.Generator().manual_seed(7))
    chain = build_chain("jpeg-xor", SHAPE)  # qualities 90, 70, 50, 30, 10
    jpeg = chain.extend.measured_costs(x)
    assert jpeg.tolist() == sorted(jpeg.tolist(), reverse=True)
    chain.set_version_costs(jpeg)
    with torch.no_grad():
        chain.stages[0].logits.zero_()
        chain.stages[0].logits[:, 2] = 5.0  # quality 50 everywhere
    plan = plan_from_chain(chain)
    header = len(pack(x[:0], plan))
    measured = (len(pack(x, plan)) - header) / 40
    assert measured == pytest.approx(chain.fraction() * plan.raw_bytes_per_sample(), rel=1e-6)
    thumb = Extend("thumb", (1, 2, 4)).measured_costs(x)
    assert thumb.tolist() == pytest.approx([1.0, 6 * 5 / 120, 3 * 3 / 120])


def test_per_channel_costs_price_each_channel_by_its_own_bytes() -> None:
    """A noise channel's JPEG is dearer than a flat one's: Q with per-channel prices is the bytes pack sends
    for any mix of qualities, which one price per version (the mean over channels) gets wrong."""
    x = torch.rand(30, *SHAPE, generator=torch.Generator().manual_seed(3))
    x[:, 0] = 0.5  # a flat channel next to two of noise
    chain = build_chain("jpeg-xor", SHAPE)
    costs = chain.extend.measured_costs(x, per_channel=True)
    assert costs.shape == (SHAPE[0], 5) and bool((costs[0] < costs[1]).all())
    assert chain.extend.measured_costs(x).tolist() == pytest.approx(costs.mean(dim=0).tolist())
    assert chain.describe()[0]["costs"] == pytest.approx([q / 100 for q in (90, 70, 50, 30, 10)])  # the proxy
    chain.set_version_costs(costs)
    assert torch.allclose(chain.version_costs(), costs)  # mask.json says which prices the masks learned with
    assert torch.tensor(chain.describe()[0]["costs"]).shape == (SHAPE[0], 5)
    with torch.no_grad():
        chain.stages[0].logits.zero_()
        chain.stages[0].logits[0, 0] = 5.0  # the flat channel at quality 90, the noise at 10
        chain.stages[0].logits[1:, 4] = 5.0
    plan = plan_from_chain(chain)
    measured = (len(pack(x, plan)) - len(pack(x[:0], plan))) / 30
    assert measured == pytest.approx(chain.fraction() * plan.raw_bytes_per_sample(), rel=1e-6)
    with pytest.raises(ValueError, match="shape"):
        chain.set_version_costs(torch.ones(2, 5))


def test_a_byte_budget_stops_selection_and_the_result_says_it_held() -> None:
    from masksel_core import TrainConfig, load_dataset, train

    config = TrainConfig(mask_type="pixel-any", model="mlp", epochs=40, lambda_init=2.0, model_lr=1e-3,
                         batch_size=64, target_bytes=120.0, warmup_epochs=3, finalize_epochs=1, device="cpu")
    result = train(config, load_dataset("digits"))
    assert result.stopped_because == "target_bytes"
    assert result.records[-1].phase in ("finalize", "final")
    assert "transfer" not in vars(result)  # training packs nothing: the summary is measured when an output asks
    summary = result.transfer
    assert summary["samples"] == len(load_dataset("digits").y_test)
    assert summary["budget_held"] is True and summary["bytes_per_sample"] <= 120.0
    assert summary["bytes_per_sample"] == pytest.approx(result.fraction * 256)


@pytest.mark.parametrize(("options", "message"), [
    ({"target_bytes": 0.0}, "target_bytes must be in"),
    ({"target_bytes": 10.0, "target_fraction": 0.5}, "not both"),
    ({"mask_type": "jpeg-xor", "target_bytes": 10.0}, "needs extend_costs='bytes'"),
    ({"extend_costs": "megabytes"}, "extend_costs must be one of"),
])
def test_budget_options_are_checked(options: dict, message: str) -> None:
    from masksel_core import ConfigError, TrainConfig

    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        TrainConfig.from_dict(options)


def test_pre_encoded_jpegs_give_the_same_payload() -> None:
    from masksel_core.transfer.packing import encode_channel

    chain = trained_like_chain("jpeg-xor+channel-any", seed=11)
    plan = plan_from_chain(chain)
    x = torch.rand(6, *SHAPE, generator=torch.Generator().manual_seed(3))
    kept = pack(x, plan, encoded=lambda c, quality: encode_channel(x, c, quality))
    assert kept == pack(x, plan)
    with pytest.raises(ValueError, match="do not match the batch"):
        pack(x, plan, encoded=lambda c, quality: encode_channel(x[:2], c, quality))


def test_a_thumbnail_run_measures_its_transfer_at_the_end() -> None:
    """The summary packs an empty batch first (the header alone): a thumbnail body of no samples is empty."""
    config = masksel_core.TrainConfig(mask_type="thumb-xor", model="mlp", epochs=1, warmup_epochs=1,
                                      finalize_epochs=1, device="cpu")
    result = masksel_core.train(config, masksel_core.load_dataset("digits"))
    assert 0 < result.transfer["bytes_per_sample"] <= result.transfer["raw_bytes_per_sample"]
