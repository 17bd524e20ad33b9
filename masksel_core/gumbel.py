"""Straight-through Gumbel discretisation (paper Eq. 1 and 2).

Forward: the one-hot argmax of `logits + g`; backward: the gradient of the tempered softmax.
`g` is Gumbel noise in an exploration step and zero in a fixation step.
"""
from __future__ import annotations

import torch


def exponential(shape: torch.Size, *, device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
    """`E ~ Exp(1)`: the one draw Gumbel noise is made from, here and in the compiled kernels (which take
    the same numbers and their log themselves)."""
    return torch.empty(shape, device=device).exponential_(generator=generator)


def log_exponential(shape: torch.Size, *, device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
    """`log(E)` for `E ~ Exp(1)`, so `-log(E)` is a Gumbel sample (`-log(-log(U))` with `E = -log(U)`): one
    exponential draw and one log instead of a uniform and two logs. `E` is clamped away from 0 so the log is
    finite."""
    e = exponential(shape, device=device, generator=generator)
    return e.clamp_min_(torch.finfo(e.dtype).tiny).log_()  # in place: no temporaries


def straight_through(
    logits: torch.Tensor,
    *,
    tau: float,
    explore: bool,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One-hot over the last dimension whose value is discrete and whose gradient is soft.

    Equal to `m_D` in the forward pass, with the gradient of `m_S = softmax((logits + g) / tau)`
    in the backward pass: the paper's `m_D + m_S - m_S.detach()`, written `m_D + (m_S - m_S.detach())`
    so that the bracket is exactly 0 and the masked input is exactly the selected values.
    """
    perturbed = perturb(logits, explore=explore, generator=generator)
    soft = torch.softmax(perturbed / tau, dim=-1)
    hard = torch.zeros_like(soft).scatter_(-1, perturbed.detach().argmax(dim=-1, keepdim=True), 1.0)
    return hard + (soft - soft.detach())


def perturb(logits: torch.Tensor, *, explore: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    """`logits + g`, Gumbel noise `g` in an exploration step, the logits themselves in a fixation step."""
    if not explore:
        return logits
    return logits - log_exponential(logits.shape, device=logits.device, generator=generator)


def two_class_difference(logits: torch.Tensor, *, explore: bool,
                         generator: torch.Generator | None = None) -> torch.Tensor:
    """`(l0 + g0) - (l1 + g1)` for two-class logits: the difference of two Gumbel samples is one logistic
    sample `logit(u)`, so one random draw per element."""
    diff = logits[..., 0] - logits[..., 1]
    if explore:
        u = torch.rand(diff.shape, device=logits.device, generator=generator)
        diff = diff + u.logit_(1e-7)  # clamped to [eps, 1 - eps] first, so the log stays finite
    return diff


def discrete(logits: torch.Tensor) -> torch.Tensor:
    """The noise-free one-hot decision, as the trained mask is exported (Algorithm 1, line 13)."""
    index = logits.argmax(dim=-1, keepdim=True)
    return torch.zeros_like(logits).scatter_(-1, index, 1.0)


def straight_through_select(
    logits: torch.Tensor,
    *,
    tau: float,
    explore: bool,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """`straight_through(logits, ...)[..., 0]` for two classes, in fewer operations.

    With two classes the tempered softmax's first entry is `sigmoid((l0 - l1) / tau)` and the
    difference of two Gumbel samples is a logistic sample `logit(u)`, so the same estimator needs
    one random draw per element instead of two and no softmax or scatter. The paper's
    `m_D + m_S - m_S.detach()` is written `m_D + (m_S - m_S.detach())`: the bracket is exactly 0,
    so the forward value is exactly `m_D`, and every node is one of PyTorch's own (no Python
    autograd.Function, whose per-call overhead is most of the cost on small masks; the masks' share
    of a training step is mostly per-op overhead on small inputs, so fewer ops is what makes them cheap).
    """
    diff = two_class_difference(logits, explore=explore, generator=generator)
    soft = torch.sigmoid(diff / tau)
    hard = (diff.detach() >= 0).to(logits.dtype)
    return hard + (soft - soft.detach())
