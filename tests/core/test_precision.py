"""A run's precision: bf16 autocast for the network only, masks and Q in float32, fp32 results on the CPU unchanged."""
from __future__ import annotations

import pytest
import torch

from masksel_core import TrainConfig, build_chain, load_dataset, train
from masksel_core.config import ConfigError
from masksel_core.masks.dynamic import DynamicMask
from masksel_core.training.precision import memory_format, resolve_precision
from masksel_core.training.train import build

QUICK = {"model": "lenet5", "epochs": 2, "warmup_epochs": 1, "finalize_epochs": 1, "seed": 2}


def test_auto_is_fp32_on_the_cpu_and_bf16_is_taken_where_asked() -> None:
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) is None and resolve_precision("fp32", cpu) is None
    assert resolve_precision("bf16", cpu) is torch.bfloat16
    with pytest.raises(ConfigError, match="precision"):
        TrainConfig(precision="fp16")


def test_masks_stay_float32_under_autocast() -> None:
    x = torch.randn(4, 1, 8, 8)
    chain = build_chain("pixel-any", (1, 8, 8))
    dynamic = DynamicMask("dynamic-block-any", (1, 8, 8), grid=(4, 4))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        masked, q = chain(x, tau=1.0, explore=True)
        cells = dynamic.logits(x)
        assert torch.nn.Linear(64, 2)(x.flatten(1)).dtype == torch.bfloat16  # autocast is on for the network
    assert masked.dtype == q.dtype == cells.dtype == torch.float32


def test_auto_on_the_cpu_gives_the_fp32_run_exactly() -> None:
    data = load_dataset("digits")
    auto = train(TrainConfig(mask_type="pixel-any", **QUICK), data)
    fp32 = train(TrainConfig(mask_type="pixel-any", precision="fp32", **QUICK), data)
    assert [r.task_loss for r in auto.records] == [r.task_loss for r in fp32.records]
    assert auto.test_accuracy == fp32.test_accuracy


def test_a_bf16_run_learns_and_writes_a_float32_network() -> None:
    data = load_dataset("digits")
    result = train(TrainConfig(mask_type="pixel-any", precision="bf16", **{**QUICK, "epochs": 4}), data)
    # Learns: chance is 0.1. Four bf16 epochs end near 0.7, on either side of it with the CPU's own rounding.
    assert result.records[-1].val_accuracy > 0.5
    assert all(p.dtype == torch.float32 for p in result.model.parameters())
    assert all(p.dtype == torch.float32 for p in result.mask.parameters())
    assert all(p.is_contiguous() for p in result.model.parameters())


def test_channels_last_only_for_convolutions_on_cuda() -> None:
    _, conv = build(TrainConfig(model="lenet5"), (1, 8, 8), 10)
    _, mlp = build(TrainConfig(model="mlp"), (1, 8, 8), 10)
    assert memory_format(conv, torch.device("cuda")) == torch.channels_last
    assert memory_format(mlp, torch.device("cuda")) == torch.contiguous_format
    assert memory_format(conv, torch.device("cpu")) == torch.contiguous_format
