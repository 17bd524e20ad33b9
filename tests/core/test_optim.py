"""The masks' optimiser steps exactly as `torch.optim.Adam(fused=True)` does, and saves the same state.

On the CPU it steps with its own compiled kernel (`adam_kernel`) where torch's vector width is known; the tests
run it and torch's fused step side by side (`compiled` on and off) and compare every bit."""
from __future__ import annotations

import copy

import pytest
import torch

from masksel_core import adam_kernel, kernels
from masksel_core.optim import MaskAdam


def _grads(step: int, shapes: list[tuple[int, ...]]) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(step)
    return [torch.randn(shape, generator=g) for shape in shapes]


@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("device", [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                  reason="needs a CUDA device (none on this machine)")),
])
def test_it_gives_adams_parameters_and_state_bit_for_bit(device: str, compiled: bool,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kernels, "ENABLED", compiled and kernels.ENABLED)
    # Sizes with and without a scalar tail after the vector body (8 or 16 floats), and one over a cache line.
    shapes = [(3, 2), (4, 5, 2), (1, 8, 8, 2), (13,), (500, 2)]
    ours = [torch.nn.Parameter(torch.randn(s, generator=torch.Generator().manual_seed(1)).to(device))
            for s in shapes]
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    mask_adam, adam = MaskAdam(ours, lr=0.01), torch.optim.Adam(theirs, lr=0.01, fused=True)
    for step in range(12):
        for params in (ours, theirs):
            for p, g in zip(params, _grads(step, shapes), strict=True):
                p.grad = g.to(device)
        mask_adam.step()
        adam.step()
        adam.zero_grad(set_to_none=True)
        assert all(p.grad is None for p in ours)
        for a, b in zip(ours, theirs, strict=True):
            assert torch.equal(a, b)
    assert str(mask_adam.state_dict()) == str(adam.state_dict())
    uses_kernel = compiled and device == "cpu" and kernels.ENABLED and adam_kernel.VECTOR_WIDTH is not None
    assert bool(mask_adam._arrays) is uses_kernel


def test_options_the_kernel_lacks_take_torchs_step() -> None:
    p = torch.nn.Parameter(torch.zeros(4, 2))
    opt = MaskAdam([p], lr=0.1)
    opt.adam.param_groups[0]["weight_decay"] = 0.01
    for _ in range(2):
        p.grad = torch.ones(4, 2)
        opt.step()
    assert opt._arrays == ()


def test_a_loaded_state_continues_as_the_saved_one_would() -> None:
    p = torch.nn.Parameter(torch.zeros(4, 2))
    first = MaskAdam([p], lr=0.1)
    p.grad = torch.ones(4, 2)
    first.step()
    q = torch.nn.Parameter(p.detach().clone())
    second = MaskAdam([q], lr=0.1)
    second.load_state_dict(copy.deepcopy(first.state_dict()))  # as a checkpoint file gives it back
    for opt, param in ((first, p), (second, q)):
        param.grad = torch.full((4, 2), -0.5)
        opt.step()
    assert torch.equal(p, q)


def test_options_changed_later_switch_to_torchs_step() -> None:
    """Weight decay set after the compiled step took over: the next steps are torch's, weight decay included."""
    p = torch.nn.Parameter(torch.ones(4, 2))
    reference = torch.nn.Parameter(p.detach().clone())
    ours, theirs = MaskAdam([p], lr=0.1), torch.optim.Adam([reference], lr=0.1, fused=True)
    for step in range(4):
        if step == 2:
            for opt in (ours.adam, theirs):
                opt.param_groups[0]["weight_decay"] = 0.5
        for param in (p, reference):
            param.grad = torch.full((4, 2), 0.25)
        ours.step()
        theirs.step()
        assert torch.equal(p, reference)
    assert ours._arrays == ()
