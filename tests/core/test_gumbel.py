from __future__ import annotations

import pytest
import torch

from masksel_core.masks.gumbel import straight_through, straight_through_select


def test_forward_is_the_one_hot_argmax_without_noise() -> None:
    logits = torch.tensor([[2.0, 1.0], [-1.0, 0.5], [0.0, 3.0]])
    out = straight_through(logits, tau=1.0, explore=False)
    assert torch.equal(out.detach(), torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]))


@pytest.mark.parametrize("tau", [0.1, 1.0, 10.0])
def test_backward_is_the_gradient_of_the_tempered_softmax(tau: float) -> None:
    logits = torch.randn(5, 3, generator=torch.Generator().manual_seed(1))
    weights = torch.randn(5, 3, generator=torch.Generator().manual_seed(2))
    a = logits.clone().requires_grad_(True)
    (straight_through(a, tau=tau, explore=False) * weights).sum().backward()
    b = logits.clone().requires_grad_(True)
    (torch.softmax(b / tau, dim=-1) * weights).sum().backward()
    assert torch.allclose(a.grad, b.grad, atol=1e-6)


def test_exploration_samples_each_class_as_often_as_its_softmax_probability() -> None:
    """The Gumbel-max trick: argmax(logits + g) is a sample of softmax(logits)."""
    logits = torch.tensor([1.0, 0.0]).expand(20000, 2).contiguous()
    out = straight_through(logits, tau=1.0, explore=True, generator=torch.Generator().manual_seed(0))
    share = out.detach()[:, 0].mean().item()
    assert share == pytest.approx(torch.sigmoid(torch.tensor(1.0)).item(), abs=0.015)


def test_exploration_is_reproducible_with_a_seeded_generator() -> None:
    logits = torch.zeros(100, 2)
    first = straight_through(logits, tau=1.0, explore=True, generator=torch.Generator().manual_seed(5))
    second = straight_through(logits, tau=1.0, explore=True, generator=torch.Generator().manual_seed(5))
    assert torch.equal(first, second)
    assert 0 < first.detach()[:, 0].sum() < 100


@pytest.mark.parametrize("tau", [0.5, 10.0])
def test_the_two_class_shortcut_matches_the_softmax_estimator(tau: float) -> None:
    logits = torch.randn(50, 2, generator=torch.Generator().manual_seed(4))
    weights = torch.randn(50, generator=torch.Generator().manual_seed(5))
    a = logits.clone().requires_grad_(True)
    fast = straight_through_select(a, tau=tau, explore=False)
    (fast * weights).sum().backward()
    b = logits.clone().requires_grad_(True)
    slow = straight_through(b, tau=tau, explore=False)[..., 0]
    (slow * weights).sum().backward()
    # The shortcut's forward is exactly 0 or 1; the softmax form carries rounding of `hard + soft - soft`.
    assert set(fast.detach().unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(fast.detach(), slow.detach(), rtol=0, atol=1e-6)
    assert torch.allclose(a.grad, b.grad, atol=1e-6)


def test_the_two_class_shortcut_explores_with_the_softmax_probability() -> None:
    logits = torch.tensor([1.0, 0.0]).expand(20000, 2).contiguous()
    out = straight_through_select(logits, tau=1.0, explore=True, generator=torch.Generator().manual_seed(0))
    assert out.detach().mean().item() == pytest.approx(torch.sigmoid(torch.tensor(1.0)).item(), abs=0.015)
