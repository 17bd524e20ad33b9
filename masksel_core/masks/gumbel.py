"""Straight-through Gumbel discretisation (paper Eq. 1 and 2).

Forward: the one-hot argmax of `logits + g`; backward: the gradient of the tempered softmax.
`g` is Gumbel noise in an exploration step and zero in a fixation step. Both functions are plain
tensor code: autograd differentiates them, nothing here is written twice.
"""
from __future__ import annotations

import torch

_EPS = 1e-7  # keeps the logs of uniform draws finite


def straight_through(logits: torch.Tensor, *, tau: float, explore: bool,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """One-hot over the last dimension whose value is discrete and whose gradient is soft.

    Equal to `m_D` in the forward pass, with the gradient of `m_S = softmax((logits + g) / tau)` in the
    backward pass: the paper's `m_D + m_S - m_S.detach()`, written `m_D + (m_S - m_S.detach())` so that the
    bracket is exactly 0 and the masked input is exactly the selected values.
    """
    perturbed = logits
    if explore:
        uniform = torch.rand(logits.shape, device=logits.device, generator=generator).clamp_(_EPS, 1 - _EPS)
        perturbed = logits - torch.log(-torch.log(uniform))  # Gumbel noise -log(-log(U))
    soft = torch.softmax(perturbed / tau, dim=-1)
    hard = torch.zeros_like(soft).scatter_(-1, perturbed.detach().argmax(dim=-1, keepdim=True), 1.0)
    return hard + (soft - soft.detach())


def straight_through_select(logits: torch.Tensor, *, tau: float, explore: bool,
                            generator: torch.Generator | None = None) -> torch.Tensor:
    """`straight_through(logits, ...)[..., 0]` for two classes (select, drop), with one draw per element.

    With two classes the tempered softmax's first entry is `sigmoid((l0 - l1) / tau)`, and the difference
    of two Gumbel samples is one logistic sample `logit(U)`: the same estimator, half the random numbers.
    """
    diff = logits[..., 0] - logits[..., 1]
    if explore:
        uniform = torch.rand(diff.shape, device=logits.device, generator=generator)
        diff = diff + torch.logit(uniform, eps=_EPS)
    soft = torch.sigmoid(diff / tau)
    hard = (diff.detach() >= 0).to(logits.dtype)
    return hard + (soft - soft.detach())
