"""Selection masks: which channels or values of the input are transferred.

Each mask holds logits with a trailing class dimension; for "any" masks class 0 means *select*
and class 1 *drop*, as in the paper's initialisation `m = (1 + eps, 0 + eps)` (Sec. 3.2.1).
A mask turns its logits into a {0,1} weight of the input's shape `(C, H, W)` (with the
straight-through gradient) and prices it: the cost of every selected element summed, where an
element's default cost is its share of the input values, so the cost is the transferred fraction.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from .gumbel import discrete, straight_through

SELECT = 0


class SelectionMask(nn.Module):
    """Base class: subclasses set the logits' element shape and how it broadcasts to the input."""

    mask_type: str = ""

    def __init__(self, input_shape: tuple[int, int, int], element_shape: tuple[int, ...], *, init_sigma: float,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.input_shape = tuple(int(s) for s in input_shape)
        init = torch.zeros(*element_shape, 2)
        init[..., SELECT] = 1.0
        noise = torch.randn(init.shape, generator=generator) * init_sigma
        self.logits = nn.Parameter(init + noise)
        values_per_element = float(np.prod(self.input_shape)) / float(np.prod(element_shape))
        total = float(np.prod(self.input_shape))
        self.register_buffer("costs", torch.full(element_shape, values_per_element / total))

    def expand(self, selected: torch.Tensor) -> torch.Tensor:
        """Broadcast a per-element weight to the input's shape `(C, H, W)`."""
        raise NotImplementedError

    def sample(self, *, tau: float, explore: bool, generator: torch.Generator | None = None) -> torch.Tensor:
        """Per-element selection weights, discrete forward and soft backward: shape of `costs`."""
        one_hot = straight_through(self.logits, tau=tau, explore=explore, generator=generator)
        return one_hot[..., SELECT]

    def cost(self, selected: torch.Tensor) -> torch.Tensor:
        """Q: the summed cost of the selected elements (the transferred fraction by default)."""
        return (selected * self.costs).sum()

    def mask_input(self, x: torch.Tensor, selected: torch.Tensor) -> torch.Tensor:
        """Zero the input values that are not selected; `x` is `(B, C, H, W)`."""
        return x * self.expand(selected).unsqueeze(0)

    @torch.no_grad()
    def selected(self) -> np.ndarray:
        """The exported discrete mask (no noise), uint8 in the contract's shape."""
        return discrete(self.logits)[..., SELECT].to(torch.uint8).cpu().numpy()

    @torch.no_grad()
    def fraction(self) -> float:
        """Share of input values that the discrete mask transfers."""
        chosen = discrete(self.logits)[..., SELECT]
        return float(self.cost(chosen).item())


class ChannelAnyMask(SelectionMask):
    """`channel-any`: keep or drop whole channels; logits `[C, 2]`."""

    mask_type = "channel-any"

    def __init__(self, input_shape: tuple[int, int, int], **kwargs: object) -> None:
        super().__init__(input_shape, (input_shape[0],), **kwargs)  # type: ignore[arg-type]

    def expand(self, selected: torch.Tensor) -> torch.Tensor:
        return selected[:, None, None].expand(self.input_shape)


class PixelAnyMask(SelectionMask):
    """`pixel-any`: keep or drop every input value on its own; logits `[C, H, W, 2]`."""

    mask_type = "pixel-any"

    def __init__(self, input_shape: tuple[int, int, int], **kwargs: object) -> None:
        super().__init__(input_shape, tuple(input_shape), **kwargs)  # type: ignore[arg-type]

    def expand(self, selected: torch.Tensor) -> torch.Tensor:
        return selected


MASKS: dict[str, Callable[..., SelectionMask]] = {
    ChannelAnyMask.mask_type: ChannelAnyMask,
    PixelAnyMask.mask_type: PixelAnyMask,
}


def create_mask(mask_type: str, input_shape: tuple[int, int, int], *, init_sigma: float = 0.01,
                generator: torch.Generator | None = None) -> SelectionMask:
    """Build a mask by its contract name."""
    try:
        factory = MASKS[mask_type]
    except KeyError:
        raise ValueError(f"unknown mask type {mask_type!r}; choose one of {', '.join(MASKS)}") from None
    return factory(input_shape, init_sigma=init_sigma, generator=generator)
