from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import torch

from masksel_core import TrainConfig, load_digits, train
from masksel_core.export import mask_png, torchscript_bytes
from masksel_core.training.train import prepare_inputs

FAST = {"model_lr": 1e-3, "batch_size": 64, "seed": 2, "epochs": 2, "device": "cpu", "warmup_epochs": 2,
        "finalize_epochs": 1}  # GPU export: test_gpu.py


@pytest.mark.parametrize(("mask_type", "model"), [("pixel-any", "mlp"), ("pixel-xor", "lenet5"),
                                                  ("block-any", "lenet5"), ("jpeg-xor+pixel-any", "mlp")])
def test_the_torchscript_model_predicts_like_the_trained_one(mask_type: str, model: str) -> None:
    data = load_digits()
    result = train(TrainConfig(mask_type=mask_type, model=model, lambda_init=1.0, **FAST), data)
    scripted = torch.jit.load(io.BytesIO(torchscript_bytes(result)))
    x = prepare_inputs(result.mask, data).x_test[:200]
    with torch.no_grad():
        masked, _ = result.mask(x, tau=1.0, explore=False)
        expected = result.model(masked)
        # Extend chains: the network-with-mask takes what a client rebuilds, the merged picked versions.
        given = _picked(result, x) if result.mask.extend is not None else x
        got = scripted(given)
    assert torch.allclose(got, expected, atol=1e-5)
    assert torch.equal(got.argmax(dim=1), expected.argmax(dim=1))


def _picked(result, x: torch.Tensor) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """Extend chains: the merged versions chosen by the xor stage, before the later select stages."""
    xor, merge = result.mask.stages[0], result.mask.stages[1]
    chosen, _ = xor(x, result.mask.base_cost, tau=1.0, explore=False)
    merged, _ = merge(chosen, result.mask.base_cost, tau=1.0, explore=False)
    return merged


def read_png(payload: bytes) -> np.ndarray:
    assert payload[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", payload[16:24])
    start = payload.index(b"IDAT") + 4
    length = struct.unpack(">I", payload[start - 8:start - 4])[0]
    raw = zlib.decompress(payload[start:start + length])
    rows = [raw[i * (width * 3 + 1) + 1:(i + 1) * (width * 3 + 1)] for i in range(height)]
    return np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(height, width, 3)


def test_the_mask_picture_shows_kept_cells_in_green() -> None:
    selected = np.zeros((2, 3, 4), dtype=np.uint8)
    selected[1, 2, 3] = 1
    image = read_png(mask_png(selected, cell=2))
    assert image.shape == (6, (4 * 2) * 2 + 2, 3)
    green = np.all(image == [22, 163, 74], axis=-1)
    assert green.sum() == 4 and green[4:6, 16:18].all()
    strip = read_png(mask_png(np.array([1, 0, 1], dtype=np.uint8), cell=3))
    assert strip.shape == (3, 3 * 3 + 2 * 3, 3)
