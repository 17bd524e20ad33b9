"""Straight-through Gumbel discretisation (paper Eq. 1 and 2).

Forward: the one-hot argmax of `logits + g`; backward: the gradient of the tempered softmax.
`g` is Gumbel noise in an exploration step and zero in a fixation step.
"""
from __future__ import annotations

import torch


def gumbel_noise(shape: torch.Size, *, device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
    """Samples `-log(-log(U))`, with U clamped away from 0 and 1 so the logs stay finite."""
    u = torch.rand(shape, device=device, generator=generator)
    u = u.clamp(1e-10, 1.0 - 1e-7)
    return -torch.log(-torch.log(u))


class _OneHotST(torch.autograd.Function):
    """Straight-through one-hot in one autograd node: forward exactly `m_D`, backward the tempered softmax's
    Jacobian (so the masked input is exactly the selected values, with no `m_S - m_S` rounding)."""

    @staticmethod
    def forward(ctx, perturbed: torch.Tensor, tau: float) -> torch.Tensor:  # type: ignore[override]
        soft = torch.softmax(perturbed / tau, dim=-1)
        ctx.save_for_backward(soft)
        ctx.tau = tau
        return torch.zeros_like(soft).scatter_(-1, perturbed.argmax(dim=-1, keepdim=True), 1.0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        (soft,) = ctx.saved_tensors
        return soft * (grad - (grad * soft).sum(dim=-1, keepdim=True)) / ctx.tau, None


def straight_through(
    logits: torch.Tensor,
    *,
    tau: float,
    explore: bool,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One-hot over the last dimension whose value is discrete and whose gradient is soft.

    Equal to `m_D` in the forward pass, with the gradient of `m_S = softmax((logits + g) / tau)`
    in the backward pass (the paper's `m_D + m_S - m_S.detach()`, computed without its rounding).
    """
    if explore:
        perturbed = logits + gumbel_noise(logits.shape, device=logits.device, generator=generator)
    else:
        perturbed = logits
    return _OneHotST.apply(perturbed, tau)


def discrete(logits: torch.Tensor) -> torch.Tensor:
    """The noise-free one-hot decision, as the trained mask is exported (Algorithm 1, line 13)."""
    index = logits.argmax(dim=-1, keepdim=True)
    return torch.zeros_like(logits).scatter_(-1, index, 1.0)


class _SelectST(torch.autograd.Function):
    """Straight-through select in one autograd node: forward the 0/1 decision, backward the sigmoid's slope."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, noise: torch.Tensor | None, tau: float) -> torch.Tensor:  # type: ignore[override]
        diff = logits[..., 0] - logits[..., 1]
        if noise is not None:
            diff = diff + noise
        soft = torch.sigmoid(diff / tau)
        ctx.save_for_backward(soft)
        ctx.tau = tau
        return (diff >= 0).to(logits.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:  # type: ignore[override]
        (soft,) = ctx.saved_tensors
        slope = grad * soft * (1.0 - soft) / ctx.tau
        return torch.stack((slope, -slope), dim=-1), None, None


def straight_through_select(
    logits: torch.Tensor,
    *,
    tau: float,
    explore: bool,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """`straight_through(logits, ...)[..., 0]` for two classes, in fewer operations.

    With two classes the tempered softmax's first entry is `sigmoid((l0 - l1) / tau)` and the
    difference of two Gumbel samples is a logistic sample `log(u) - log(1 - u)`, so the same
    estimator needs one random draw per element instead of two, no scatter, and one autograd node
    whose backward is the sigmoid's slope (the masks' share of a training step is mostly per-op
    overhead on small inputs, so fewer ops is what makes them cheap).
    """
    noise = None
    if explore:
        shape = logits.shape[:-1]
        u = torch.rand(shape, device=logits.device, generator=generator).clamp_(1e-10, 1.0 - 1e-7)
        noise = torch.log(u) - torch.log1p(-u)
    return _SelectST.apply(logits, noise, tau)
