"""The input-gradient tap gives PyTorch's gradients, steps aside where it cannot, and leaves no trace."""
from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn

from masksel_core import TrainConfig, load_dataset, train
from masksel_core.input_grad import InputGradTap

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
    tapped = copy.deepcopy(reference)
    tap = InputGradTap(tapped, (channels, *size), CPU)
    assert tap.active
    x = torch.randn(7, channels, *size)
    xi = x.clone().requires_grad_(True)
    reference(xi).pow(2).sum().backward()
    tap.expect(x)  # the tapped network's batch needs no gradient: the tap computes it
    tapped(x).pow(2).sum().backward()
    torch.testing.assert_close(tap.input_grad(), xi.grad, rtol=1e-4, atol=1e-4)
    for got, expected in zip(tapped.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(got.grad, expected.grad, rtol=1e-5, atol=1e-6)


def test_it_stays_inactive_where_it_does_not_apply() -> None:
    strided = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2))
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    for model, shape in ((strided, (1, 6, 6)), (mlp, (1, 2, 2))):
        assert not InputGradTap(model, shape, CPU).active
        assert all("forward" not in m.__dict__ for m in model.modules())
    on_gpu = nn.Sequential(nn.Conv2d(1, 4, 3))
    assert not InputGradTap(on_gpu, (1, 6, 6), torch.device("cuda")).active
    assert "forward" not in on_gpu[0].__dict__


class _Doubling(nn.Module):
    """Changes its input before the first convolution sees it: the tap's gradient would be wrong."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x * 2)


def test_a_network_that_transforms_its_input_first_is_found_by_the_probe() -> None:
    model = _Doubling()
    tap = InputGradTap(model, (1, 5, 5), CPU)
    assert not tap.active and "forward" not in model.conv.__dict__


class _Twice(nn.Module):
    """Calls its first convolution on the input twice (the tap would keep only one output's gradient)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + 0.5 * self.conv(x)


class _Skip(nn.Module):
    """Also adds its input to the convolution's output (a skip connection)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + x


@pytest.mark.parametrize("model", [_Twice(), _Skip(), nn.Sequential(nn.Conv2d(1, 2, 3, padding=1),
                                                                   nn.ReLU(inplace=True))],
                         ids=["conv-twice", "skip", "inplace-relu"])
def test_the_probe_turns_the_tap_off_where_its_gradient_would_be_wrong(model: nn.Module) -> None:
    tap = InputGradTap(model, (1, 5, 5), CPU)
    assert not tap.active and all("forward" not in m.__dict__ for m in model.modules())


def test_a_frozen_first_convolution_leaves_the_gradient_to_autograd() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Flatten())
    model[0].requires_grad_(False)
    assert not InputGradTap(model, (1, 5, 5), CPU).active


def test_the_probe_leaves_batch_norm_the_training_mode_gradients_and_the_random_stream_alone() -> None:
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3)).train()
    before = copy.deepcopy(model[1].state_dict())
    rng = torch.random.get_rng_state()
    assert InputGradTap(model, (1, 5, 5), CPU).active
    assert model.training and all(p.grad is None for p in model.parameters())
    assert torch.equal(torch.random.get_rng_state(), rng)
    for key, value in before.items():
        assert torch.equal(model[1].state_dict()[key], value)


def test_a_batch_the_convolution_never_saw_is_an_error_not_a_silent_zero() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Flatten())
    tap = InputGradTap(model, (1, 4, 4), CPU)
    tap.expect(torch.rand(2, 1, 4, 4))
    model(torch.rand(2, 1, 4, 4)).sum().backward()  # another tensor
    with pytest.raises(RuntimeError, match="did not see the expected batch"):
        tap.input_grad()


def test_remove_gives_back_a_plain_module_that_scripts() -> None:
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Flatten())
    tap = InputGradTap(model, (1, 5, 5), CPU)
    assert "forward" in model[0].__dict__
    tap.remove()
    assert "forward" not in model[0].__dict__ and not tap.active
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(model), buffer)


def test_training_uses_it_and_the_result_is_a_plain_network() -> None:
    result = train(TrainConfig(mask_type="pixel-any", model="lenet5", epochs=2, model_lr=1e-3, seed=2),
                   load_dataset("digits"))
    assert all("forward" not in m.__dict__ for m in result.model.modules())
    assert result.records[-1].val_accuracy > 0.3
