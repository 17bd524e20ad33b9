"""Dynamic masks: a selection per input, chosen by a mask network on the server, sent as the selected cells
(their indices or a bitmap, whichever is smaller) and their values."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import masksel_core
from masksel_core import ConfigError, TrainConfig
from masksel_core.cli import main
from masksel_core.data.synthetic import MOVING_PATTERNS
from masksel_core.export import write_outputs
from masksel_core.masks.dynamic import BIAS, DynamicMask, bitmap_bytes, count_bytes, index_bytes
from masksel_core.transfer.packing import (
    TransferError,
    TransferPlan,
    pack,
    plan_from_chain,
    plan_from_mask_document,
    unpack,
)

SHAPE = (2, 12, 10)


def brightness_mask(spec: str = "dynamic-pixel-any", **options: object) -> DynamicMask:
    """A linear mask network set by hand: a cell is kept where its own input is bright (above 0.5)."""
    mask = DynamicMask(spec, SHAPE, mask_net="linear", **options)  # type: ignore[arg-type]
    assert mask.cell_shape == SHAPE
    with torch.no_grad():
        mask.net.linear.weight.copy_(torch.eye(int(np.prod(SHAPE))) * 20)
        mask.net.linear.bias.fill_(-10 - BIAS)
        mask.net.scale.fill_(1.0)
    return mask


RAW = float(np.prod(SHAPE) * 4)


def selection(kept: torch.Tensor, cells: tuple[int, ...] = SHAPE) -> np.ndarray:
    """Each sample's bytes that say which cells it sends, counted here from the format: its count (one byte for
    240 cells), then one byte per cell's index or the 30-byte bitmap, whichever is fewer."""
    counts = kept.flatten(1).sum(dim=1).numpy()
    return count_bytes(cells) + np.minimum(counts * index_bytes(cells), bitmap_bytes(cells))


def test_every_input_gets_its_own_cells_and_q_counts_values_and_selection() -> None:
    x = torch.rand(6, *SHAPE, generator=torch.Generator().manual_seed(0))
    x[0] = torch.where(x[0] > 0.97, x[0], 0.0)  # a sparse sample: its few cells' indices cost less than a bitmap
    mask = brightness_mask()
    masked, q = mask(x)
    kept = (x > 0.5).float()
    assert torch.equal(masked, x * kept)  # each sample its own selection
    assert not torch.equal(kept[0], kept[1])
    headers = selection(kept)
    assert 1 < headers[0] < 1 + bitmap_bytes(SHAPE) and (headers[1:] == 1 + bitmap_bytes(SHAPE)).all()
    expected = float((kept.mean(dim=(1, 2, 3)).numpy() + headers / RAW).mean())
    assert float(q.detach()) == pytest.approx(expected, rel=1e-6)
    assert mask.fraction(x) == pytest.approx(expected, rel=1e-6)
    assert mask.frequency(x) == pytest.approx(kept.mean(dim=0).numpy())
    assert np.array_equal(mask.selected(x), (kept.mean(dim=0) >= 0.5).numpy().astype(np.uint8))


def test_a_fresh_mask_sends_everything_and_its_gradient_reaches_the_mask_network() -> None:
    mask = DynamicMask("dynamic-block-any", SHAPE, grid=(3, 2), server_view=(6, 5))
    x = torch.rand(4, *SHAPE)
    assert mask.mask_net == "hybrid"  # a 6x5 view: small
    assert mask.fraction(x) == pytest.approx(1 + (1 + bitmap_bytes((2, 3, 2))) / RAW)  # count, bitmap of 12 cells
    masked, q = mask(x)
    assert torch.equal(masked, x)
    (masked.sum() + q).backward()  # straight-through: the rounding passes the sigmoid's gradient
    scale = mask.net.linear.scale  # the hybrid's linear map: its scale starts at 0 and must be able to grow
    assert scale.grad is not None and float(scale.grad.abs()) > 0
    with pytest.raises(ValueError, match="give the ones to measure it on"):
        mask.fraction()


def test_auto_picks_the_linear_map_up_to_28x28_and_options_are_checked() -> None:
    assert DynamicMask("dynamic-pixel-any", (1, 28, 28)).mask_net == "hybrid"
    assert DynamicMask("dynamic-pixel-any", (3, 32, 32)).mask_net == "convatt"
    assert DynamicMask("dynamic-pixel-any", (3, 32, 32), server_view=(8, 8)).mask_net == "hybrid"
    with pytest.raises(ValueError, match="server view 20x4 must be between"):
        DynamicMask("dynamic-pixel-any", SHAPE, server_view=(20, 4))
    with pytest.raises(ConfigError, match="stands alone"):
        TrainConfig(mask_type="jpeg-xor+dynamic-pixel-any")
    with pytest.raises(ConfigError, match="server_view applies to dynamic masks only"):
        TrainConfig(mask_type="pixel-any", server_view=(4, 4))
    with pytest.raises(ConfigError, match="rescale is not available with dynamic masks"):
        TrainConfig(mask_type="dynamic-pixel-any", rescale=True)
    with pytest.raises(ConfigError, match="mask_net must be one of"):
        TrainConfig(mask_type="dynamic-pixel-any", mask_net="transformer")
    config = TrainConfig.from_dict({"mask_type": "dynamic-block-any", "server_view": "7x6", "mask_net": "convatt"})
    assert config.server_view == (7, 6) and TrainConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("spec", ["dynamic-pixel-any", "dynamic-block-any"])
def test_a_payload_holds_each_samples_selection_and_its_selected_values(spec: str) -> None:
    x = torch.rand(5, *SHAPE, generator=torch.Generator().manual_seed(1))
    x[1] = torch.where(x[1] > 0.95, x[1], 0.0)  # sends its cells' indices, the others their bitmaps
    mask = brightness_mask() if spec == "dynamic-pixel-any" else DynamicMask(spec, SHAPE, grid=(4, 3))
    if spec == "dynamic-block-any":  # a random network: cells differ per sample
        with torch.no_grad():
            for parameter in mask.net.parameters():
                parameter.copy_(torch.randn(parameter.shape, generator=torch.Generator().manual_seed(2)) * 3)
    plan = plan_from_chain(mask)
    cells = mask.hard_cells(x)
    payload = pack(x, plan, cells=cells)
    masked, _ = mask(x)
    received = unpack(payload, plan)
    assert torch.equal(received.x, masked)  # the network's input, exactly
    empty = len(pack(x[:0], plan, cells=cells[:0]))
    kept = int(mask.expand(cells).sum())
    assert len(payload) - empty == int(selection(cells, plan.cell_shape).sum()) + 4 * kept
    assert (len(payload) - empty) / (5 * RAW) == pytest.approx(mask.fraction(x), abs=1e-9)  # Q is what is sent
    document = {"mask_type": spec, "input_shape": list(SHAPE), "selected": [], "fraction": 0.5,
                "dynamic": mask.describe()}
    assert plan_from_mask_document(json.loads(json.dumps(document))).plan_id == plan.plan_id
    with pytest.raises(ValueError, match="give cells of shape"):
        pack(x, plan)
    with pytest.raises(TransferError, match="truncated"):
        unpack(payload[:-3], plan)
    other = DynamicMask(spec, SHAPE, grid=(4, 3), mask_net="linear")
    if spec == "dynamic-pixel-any":
        assert plan_from_chain(other).plan_id != plan.plan_id  # another network: its payloads are refused
        with pytest.raises(TransferError, match="packed for mask"):
            unpack(payload, plan_from_chain(other))


def test_a_sparse_selection_of_784_cells_sends_two_byte_indices_and_damage_is_named() -> None:
    """28x28 pixels: a 98-byte bitmap, or 2 bytes per cell kept; a sample keeping 25 cells sends 2 + 50 bytes to
    say which, one keeping 300 sends 2 + 98."""
    shape = (1, 28, 28)
    mask = DynamicMask("dynamic-pixel-any", shape, mask_net="linear")
    plan = plan_from_chain(mask)
    cells = torch.zeros(2, *shape)
    cells.view(2, -1)[0, torch.randperm(784, generator=torch.Generator().manual_seed(0))[:25]] = 1
    cells.view(2, -1)[1, :300] = 1
    x = torch.rand(2, *shape, generator=torch.Generator().manual_seed(1))
    payload = pack(x, plan, cells=cells)
    body = len(payload) - len(pack(x[:0], plan, cells=cells[:0]))
    assert body == (2 + 50 + 4 * 25) + (2 + 98 + 4 * 300)
    assert torch.equal(unpack(payload, plan).x, x * cells)
    assert float(mask._shares(cells)[0]) == pytest.approx((25 * 4 + 52) / (784 * 4))  # Q prices what is sent

    start = len(payload) - body  # the body: two u16 counts, the first sample's indices, the second's bitmap

    def damaged(offset: int, value: bytes) -> bytes:
        return payload[:start + offset] + value + payload[start + offset + len(value):]

    with pytest.raises(TransferError, match="more than the mask's 784 cells"):
        unpack(damaged(0, (785).to_bytes(2, "little")), plan)
    with pytest.raises(TransferError, match="names a cell beyond the mask's 784"):
        unpack(damaged(4, (900).to_bytes(2, "little")), plan)
    with pytest.raises(TransferError, match="does not hold the count of cells it announces"):
        unpack(damaged(2, (299).to_bytes(2, "little")), plan)
    assert payload[4] == 2  # the format with indices; a reader of the bitmap-only format 1 refuses it, as this one
    with pytest.raises(TransferError, match="format 1 is not supported"):  # refuses a dynamic payload of format 1
        unpack(payload[:4] + bytes([1]) + payload[5:])
    with pytest.raises(ValueError, match=r"cell grid \[65535, 3\] must lie within its input \[28, 28\]"):
        TransferPlan("dynamic", plan.keep, (65535, 3), digest=plan.digest)


def test_a_trained_run_writes_both_halves_and_they_rebuild_its_predictions(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    data = masksel_core.load_dataset("digits")
    config = TrainConfig(mask_type="dynamic-block-any", grid=(4, 4), model="mlp", epochs=6, warmup_epochs=4,
                         finalize_epochs=2, device="cpu", lambda_init=1.0)
    result = masksel_core.train(config, data)
    for record in result.records:  # every epoch: how often each cell is sent, and the gallery's own cells
        assert record.frequency.shape == (1, 4, 4) and record.gallery.shape == (8, 1, 4, 4)
        assert np.array_equal(record.selected, (record.frequency >= 0.5).astype(np.uint8))
    gallery = masksel_core.gallery_inputs(data, config)
    assert gallery.shape == (8, 1, 8, 8)
    assert np.array_equal(result.records[-1].gallery, result.mask.hard_cells(gallery).to(torch.uint8).numpy())
    paths = write_outputs(result, tmp_path)
    assert {"mask_net.ts", "model.ts", "mask.json", "transfer.json"} <= set(paths)
    document = json.loads(paths["mask.json"].read_text())
    assert document["dynamic"]["cells"] == [1, 4, 4] and document["dynamic"]["mask_net"] == "hybrid"
    assert np.asarray(document["dynamic"]["frequency"]).shape == (1, 4, 4)
    server, client = torch.jit.load(paths["mask_net.ts"]), torch.jit.load(paths["model.ts"])
    x, plan = data.x_test[:200], plan_from_mask_document(document)
    received = unpack(pack(x, plan, cells=server(x)), plan)
    with torch.no_grad():
        direct = result.model.eval()(result.mask(x)[0]).argmax(dim=1)
        assert torch.equal(client(received.x).argmax(dim=1), direct)
    transfer = json.loads(paths["transfer.json"].read_text())
    assert transfer["kind"] == "dynamic" and transfer["value_fraction"] < 1.0
    # Q is measured on validation inputs; the bytes packed on the test set are what it predicted.
    assert transfer["fraction_of_raw"] == pytest.approx(transfer["value_fraction"], rel=0.02)


def test_the_cli_trains_a_dynamic_mask(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", "--data", "digits", "--mask", "dynamic-pixel-any", "--model", "mlp", "--epochs", "2",
                 "--warmup-epochs", "1", "--finalize-epochs", "1", "--server-view", "4x4", "--mask-net", "linear",
                 "--device", "cpu", "--out", str(tmp_path), "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "config.json").read_text())["server_view"] == [4, 4]
    assert (tmp_path / "mask_net.ts").is_file()
    assert main(["train", "--data", "digits", "--mask", "dynamic-pixel-any", "--model", "mlp", "--epochs", "1",
                 "--server-view", "four", "--out", str(tmp_path / "bad")]) == 2
    assert "server view must look like 3x3" in capsys.readouterr().err


def test_the_moving_object_is_anywhere_and_says_the_class() -> None:
    data = masksel_core.load_dataset("synthetic-moving", seed=3)
    again = masksel_core.load_dataset("synthetic-moving", seed=3)
    assert torch.equal(data.x_train, again.x_train) and data.input_shape == (1, 28, 28)
    known = masksel_core.data.builtins.builtin_summary("synthetic-moving")
    assert data.summary() == known | {"name": "synthetic-moving"}
    x, y = data.x_train.numpy()[:, 0], data.y_train.numpy()
    assert np.bincount(y).tolist() == [600] * 4
    places = []
    for image, label in zip(x[:200], y[:200], strict=True):
        bright = np.argwhere(image > 0.5)  # the pattern alone: the noise stays below 0.35
        top, left = bright.min(axis=0)
        patch = image[top:top + 5, left:left + 5] > 0.5
        assert np.array_equal(patch, MOVING_PATTERNS[label] > 0)
        places.append((top, left))
    assert len(set(places)) > 100  # spread over the image


@pytest.mark.slow
def test_on_the_moving_object_a_dynamic_mask_keeps_accuracy_at_a_tenth_of_the_bytes() -> None:
    """With the default mask network: a user need not know that the object moves."""
    torch.set_num_threads(1)
    data = masksel_core.load_dataset("synthetic-moving")
    config = TrainConfig(mask_type="dynamic-pixel-any", model="lenet5", epochs=60, warmup_epochs=40,
                         finalize_epochs=30, target_fraction=0.12, device="cpu")
    result = masksel_core.train(config, data)
    assert result.transfer["fraction_of_raw"] <= 0.15, result.transfer
    assert result.test_accuracy >= 0.9, (result.test_accuracy, result.warnings)
    assert not result.warnings
