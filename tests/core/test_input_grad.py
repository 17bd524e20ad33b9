"""The faster first-convolution input gradient gives PyTorch's gradients and leaves no trace after training."""
from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn

from masksel_core import TrainConfig, load_dataset, train
from masksel_core.input_grad import fast_first_conv_input_grad

CPU = torch.device("cpu")


@pytest.mark.parametrize(("channels", "kernel", "padding", "bias", "size"), [
    # 9x8 with a 5x5 kernel takes the dense matrix product; the others the transposed convolution.
    (1, 5, 2, True, (9, 8)), (1, 5, 2, True, (21, 20)), (3, 3, 1, False, (9, 8)), (4, 3, 0, True, (9, 8)),
    (2, (5, 3), (1, 2), True, (9, 8)), (2, (5, 3), (1, 2), True, (6, 5)), (6, 1, 0, True, (9, 8)),
])
def test_gradients_match_pytorch(channels: int, kernel: int | tuple[int, int], padding: int | tuple[int, int],
                                 bias: bool, size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    reference = nn.Sequential(nn.Conv2d(channels, 5, kernel, padding=padding, bias=bias), nn.Tanh(), nn.Flatten())
    fast = copy.deepcopy(reference)
    fast_first_conv_input_grad(fast, CPU)
    x = torch.randn(7, channels, *size)
    grads = []
    for model in (reference, fast):
        xi = x.clone().requires_grad_(True)
        model(xi).pow(2).sum().backward()
        grads.append([xi.grad] + [p.grad for p in model.parameters()])
    for expected, got in zip(*grads, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_only_eligible_first_layers_are_changed() -> None:
    strided = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2))
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    for model in (strided, mlp):
        fast_first_conv_input_grad(model, CPU)
        assert all("forward" not in m.__dict__ for m in model.modules())
    on_gpu = nn.Sequential(nn.Conv2d(1, 4, 3))
    fast_first_conv_input_grad(on_gpu, torch.device("cuda"))
    assert "forward" not in on_gpu[0].__dict__


def test_restore_gives_back_a_plain_module_that_scripts() -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Flatten())
    restore = fast_first_conv_input_grad(model, CPU)
    assert "forward" in model[0].__dict__
    restore()
    assert "forward" not in model[0].__dict__
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(model), buffer)


def test_training_uses_it_and_the_result_is_a_plain_network() -> None:
    result = train(TrainConfig(mask_type="pixel-any", model="lenet5", epochs=2, model_lr=1e-3, seed=2),
                   load_dataset("digits"))
    assert all("forward" not in m.__dict__ for m in result.model.modules())
    assert result.records[-1].val_accuracy > 0.3
