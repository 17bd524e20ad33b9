"""Training on a CUDA device: data, masks and network on the GPU, results usable on a CPU.

Skipped with a visible reason where no CUDA device exists (the CI machines). Run them on a GPU
machine with `pytest tests/core/test_gpu.py`.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch

from masksel_core import TrainConfig, load_dataset, train
from masksel_core.export import torchscript_bytes, write_outputs
from masksel_core.training.precision import resolve_precision
from masksel_core.training.swap_check import swap_check
from masksel_core.training.train import build, prepare_inputs
from tests.core.test_swap_check import FINALISTS, CountingSplits, _wide_setup

FAST = {"model_lr": 3e-3, "lambda_init": 0.01, "warmup_epochs": 3, "finalize_epochs": 2}
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none on this machine)")


def test_training_on_the_gpu_learns_and_keeps_everything_on_the_device() -> None:
    data = load_dataset("digits")
    result = train(TrainConfig(mask_type="pixel-any", model="lenet5", epochs=6, device="cuda", seed=3, **FAST), data)
    assert next(result.model.parameters()).device.type == "cuda"
    assert next(result.mask.parameters()).device.type == "cuda"
    assert result.records[-1].val_accuracy > 0.8
    assert result.records[-1].selected.shape == (1, 8, 8)


def test_gpu_resume_continues_the_same_run(tmp_path: Path) -> None:
    """Resuming on the GPU gives the same masks and nearly the same metrics (cuDNN may reorder sums)."""
    data = load_dataset("digits")
    config = TrainConfig(mask_type="block-any", model="mlp", epochs=4, device="cuda", seed=5, **FAST)
    whole = train(config, data)

    class Interrupt(Exception):
        pass

    def die(record: object) -> None:
        if record.epoch == 5:  # type: ignore[attr-defined]
            raise Interrupt

    with pytest.raises(Interrupt):
        train(config, data, on_epoch=die, checkpoint_dir=tmp_path)
    resumed = train(config, data, checkpoint_dir=tmp_path)
    assert [r.epoch for r in resumed.records] == [r.epoch for r in whole.records]
    for a, b in zip(whole.records, resumed.records, strict=True):
        assert a.val_accuracy == pytest.approx(b.val_accuracy, abs=0.02)
        assert a.fraction == pytest.approx(b.fraction, abs=0.05)


def test_a_gpu_trained_torchscript_model_predicts_on_the_cpu(tmp_path: Path) -> None:
    data = load_dataset("digits")
    result = train(TrainConfig(mask_type="pixel-any", model="lenet5", epochs=4, device="cuda", seed=1, **FAST), data)
    script = torch.jit.load(io.BytesIO(torchscript_bytes(result)), map_location="cpu")
    x = data.x_test[:200]
    with torch.no_grad():
        cpu_pred = script(x).argmax(dim=1)
        masked, _ = result.mask(x.cuda(), tau=1.0, explore=False)
        gpu_pred = result.model(masked).argmax(dim=1).cpu()
    assert (cpu_pred == gpu_pred).float().mean() > 0.99
    written = write_outputs(result, tmp_path)
    assert np.load(written["mask.npy"]).shape == (1, 8, 8)


def test_jpeg_versions_are_made_once_then_train_on_the_gpu() -> None:
    data = load_dataset("digits")
    config = TrainConfig(mask_type="jpeg-xor", model="lenet5", epochs=3, device="cuda", **FAST)
    chain, _ = build(config, data.input_shape, data.num_classes)
    prepared = prepare_inputs(chain, data).to(torch.device("cuda"))
    assert prepared.x_train.device.type == "cuda" and prepared.x_train.shape[1] > data.x_train.shape[1]
    result = train(config, data)
    assert result.records[-1].val_accuracy > 0.5


@pytest.mark.parametrize("model", ["resnet18", "allconvnet"])
def test_large_models_run_a_masked_step_on_the_gpu(model: str) -> None:
    data = load_dataset("synthetic-remote")
    small = type(data)(data.name, data.x_train[:256], data.y_train[:256], data.x_test[:128], data.y_test[:128],
                       data.num_classes, list(data.channel_names))
    result = train(TrainConfig(mask_type="channel-any", model=model, epochs=1, device="cuda", warmup_epochs=1,
                               finalize_epochs=1), small)
    assert 0.0 < result.records[0].fraction <= 1.0


@pytest.mark.parametrize("spec", ["pixel-any", "block-any", "pixel-xor", "jpeg-xor+pixel-any"])
def test_the_masks_gradients_on_the_gpu_are_those_on_the_cpu(spec: str) -> None:
    """The same chain, batch and loss (fixation: no noise) on both devices: the same values and gradients."""
    from masksel_core.masks.chain import build_chain

    grads = []
    for device in ("cpu", "cuda"):
        chain = build_chain(spec, (3, 8, 6), init_logit=0.4, generator=torch.Generator().manual_seed(1)).to(device)
        x = torch.rand(5, *chain.stage_input_shape, generator=torch.Generator().manual_seed(2)).to(device) + 0.1
        weights = torch.randn(5, *chain.output_shape, generator=torch.Generator().manual_seed(3)).to(device)
        masked, q = chain(x, tau=0.6, explore=False)
        ((masked * weights).sum() + 0.7 * q).backward()
        grads.append([stage.logits.grad.cpu() for stage in chain.select_stages])
    for cpu, cuda in zip(*grads, strict=True):
        torch.testing.assert_close(cuda, cpu, rtol=1e-4, atol=1e-5)


def test_auto_precision_is_bf16_on_the_gpu_and_the_written_network_is_float32() -> None:
    """auto: bf16 autocast for the network (channels_last for convolutions), the masks in float32 throughout."""
    assert resolve_precision("auto", torch.device("cuda")) == (torch.bfloat16 if torch.cuda.is_bf16_supported()
                                                               else None)
    data = load_dataset("digits")
    result = train(TrainConfig(mask_type="pixel-any", model="lenet5", epochs=6, device="cuda", seed=3, **FAST), data)
    assert result.records[-1].val_accuracy > 0.8
    assert all(p.dtype == torch.float32 and p.is_contiguous() for p in result.model.parameters())
    assert all(p.dtype == torch.float32 for p in result.mask.parameters())


def test_the_swap_check_on_the_gpu_trades_a_noisy_copy_in_a_bounded_number_of_passes() -> None:
    chain, model, splits = _wide_setup()
    gpu = CountingSplits(*(t.cuda() for t in (splits.x_fit, splits.y_fit, splits.x_val, splits.y_val)),
                         batch_size=splits.batch_size)
    swaps = swap_check(chain.cuda(), model.cuda(), gpu, candidates=2, rounds=2, lr=1e-2, seed=0,
                       dtype=torch.bfloat16)
    assert swaps and swaps[0][1] == 0
    assert gpu.passes <= 2 * (1 + FINALISTS + 1)
