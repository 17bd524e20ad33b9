"""Selection masks: which channels, values, cells or versions of the input are transferred.

A mask is a chain of stages (`chain.MaskChain`). Each stage maps a batch `x` of shape `(B, C, H, W)`
and a *cost map* `(C, H, W)` (the relative price of transferring each value, summing to 1 for the
raw input) to a new batch and cost map:

- select stages (`channel-any`, `pixel-any`, `block-any`, `channel-xor`, `pixel-xor`) zero what
  they do not select and zero its cost;
- `merge` sums groups of channels (the versions an `extend` made) back into one channel each.

`Q` is the sum of the final cost map, so for a plain mask it is the transferred fraction of input
values and for a chain such as extend -> channel-xor -> merge -> pixel-any it is the product of the
costs (paper Sec. 4.4): each kept value costs its share times its chosen version's price.

Select stages hold logits with a class dimension last. For "any" masks class 0 means *select* and
class 1 *drop*, initialised `(init_logit, 0) + eps` as the paper's `m = (1 + eps, 0 + eps)`.
Every stage is a plain `nn.Module` whose forward autograd differentiates: a new mask type is one
`sample` (the selection in its exported shape) and one `expand` (how it broadcasts to `(C, H, W)`).
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from .gumbel import straight_through, straight_through_select

SELECT = 0
Shape = tuple[int, int, int]


class Stage(nn.Module):
    """One step of a mask chain; `input_shape` and `output_shape` are `(C, H, W)`."""

    mask_type = ""

    def __init__(self, input_shape: Shape) -> None:
        super().__init__()
        self.input_shape: Shape = tuple(int(s) for s in input_shape)  # type: ignore[assignment]

    @property
    def output_shape(self) -> Shape:
        return self.input_shape

    def forward(self, x: torch.Tensor, cost: torch.Tensor, *, tau: float, explore: bool,  # type: ignore[override]
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def describe(self) -> dict[str, object]:
        return {"mask_type": self.mask_type}


def element_costs(mask_type: str, costs: np.ndarray | torch.Tensor | None, shape: Sequence[int]) -> torch.Tensor:
    """Per-element prices of a mask's selection (all 1 when none are given), checked: its shape (or a flat list of
    as many, in the selection's order: what a form's text field holds), finite, >= 0."""
    weights = torch.ones(tuple(shape)) if costs is None else torch.as_tensor(costs, dtype=torch.float32)
    if weights.dim() == 1 and weights.numel() == math.prod(shape):
        weights = weights.reshape(tuple(shape))
    if tuple(weights.shape) != tuple(shape):
        raise ValueError(f"{mask_type} costs must have shape {list(shape)}, got {list(weights.shape)}")
    if not torch.isfinite(weights).all() or (weights < 0).any():
        raise ValueError(f"{mask_type} costs must be finite and non-negative")
    return weights


class SelectStage(Stage):
    """A stage with learned logits; subclasses say how the selection broadcasts to `(C, H, W)`."""

    def __init__(self, input_shape: Shape, element_shape: Sequence[int], classes: int, *, init_sigma: float,
                 init_logit: float, costs: np.ndarray | torch.Tensor | None, rescale: bool,
                 generator: torch.Generator | None) -> None:
        super().__init__(input_shape)
        init = torch.zeros(*element_shape, classes)
        init[..., SELECT] = init_logit
        self.logits = nn.Parameter(init + torch.randn(init.shape, generator=generator) * init_sigma)
        self.register_buffer("weights", element_costs(self.mask_type, costs, self.weight_shape))
        self.rescale = rescale
        self.held: torch.Tensor | None = None  # a selection that replaces the sampled one (`holding`)

    @property
    def weight_shape(self) -> tuple[int, ...]:
        """Shape of the per-element costs, the same as the exported selection."""
        return tuple(self.logits.shape[:-1])

    def sample(self, *, tau: float, explore: bool, generator: torch.Generator | None = None) -> torch.Tensor:
        """Selection weights in the exported shape: discrete forward, soft backward."""
        return straight_through_select(self.logits, tau=tau, explore=explore, generator=generator)

    def expand(self, selected: torch.Tensor) -> torch.Tensor:
        """Broadcast a selection (or per-element values) to `(C, H, W)`."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, cost: torch.Tensor, *, tau: float, explore: bool,  # type: ignore[override]
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        chosen = self.held if self.held is not None else self.sample(tau=tau, explore=explore, generator=generator)
        selected = self.expand(chosen)  # (C, H, W)
        masked = x * selected  # (B, C, H, W) * (C, H, W)
        if self.rescale:
            # As dropout does: keep the input's scale when only a share of it is kept.
            masked = masked / selected.detach().mean().clamp_min(1e-6)
        return masked, cost * selected * self.expand(self.weights)

    @contextmanager
    def holding(self, selection: torch.Tensor) -> Iterator[None]:
        """Pass `selection` (the exported shape) instead of sampling, inside the block: with a leaf tensor that
        requires grad, the loss's gradient with respect to each element's selection, which the swap check's screen
        ranks exchanges by."""
        self.held = selection
        try:
            yield
        finally:
            self.held = None

    @torch.no_grad()
    def selected(self) -> np.ndarray:
        """The discrete selection (no noise), uint8, in the contract's shape."""
        return self.sample(tau=1.0, explore=False).round().to(torch.uint8).cpu().numpy()

    @torch.no_grad()
    def keep_map(self) -> torch.Tensor:
        """The discrete selection broadcast to `(C, H, W)`, as 0/1 floats where the stage lives."""
        return self.expand(self.sample(tau=1.0, explore=False)).round()

    def describe(self) -> dict[str, object]:
        return {"mask_type": self.mask_type, "selected": self.selected().tolist()}

    @torch.no_grad()
    def prefer(self, indices: Sequence[int], init_logit: float) -> None:
        """Start with only these elements selected (flat indices into the exported selection).

        Called right after construction: the small random part of the initialisation is kept.
        """
        flat = self.logits.reshape(-1, 2)
        count = flat.shape[0]
        beyond = [i for i in indices if i >= count]
        if beyond:
            raise ValueError(f"{self.mask_type} has {count} elements; init_selected index out of range: {beyond[0]} "
                             f"(the indices run from 0 to {count - 1})")
        chosen = torch.zeros(count, dtype=torch.bool)
        chosen[list(indices)] = True
        noise = flat - torch.tensor([init_logit, 0.0])
        flat[:, SELECT] = torch.where(chosen, init_logit, 0.0)
        flat[:, 1] = torch.where(chosen, 0.0, init_logit)
        flat += noise


class ChannelAny(SelectStage):
    """`channel-any`: keep or drop whole channels; logits `[C, 2]`."""

    mask_type = "channel-any"

    def __init__(self, input_shape: Shape, **kwargs: object) -> None:
        super().__init__(input_shape, (input_shape[0],), 2, **kwargs)  # type: ignore[arg-type]

    def expand(self, selected: torch.Tensor) -> torch.Tensor:
        return selected[:, None, None].expand(self.input_shape)


class PixelAny(SelectStage):
    """`pixel-any`: keep or drop every input value on its own; logits `[C, H, W, 2]`."""

    mask_type = "pixel-any"

    def __init__(self, input_shape: Shape, **kwargs: object) -> None:
        super().__init__(input_shape, input_shape, 2, **kwargs)  # type: ignore[arg-type]

    def expand(self, selected: torch.Tensor) -> torch.Tensor:
        return selected


def cell_index(size: int, cells: int) -> torch.Tensor:
    """For each of `size` positions, the cell (0..cells-1) it falls in: as even as possible (8 in 3 is 3, 3, 2)."""
    return torch.div(torch.arange(size) * cells, size, rounding_mode="floor")


class BlockAny(SelectStage):
    """`block-any`: keep or drop rectangular cells of a `GH x GW` grid per channel; logits `[C, GH, GW, 2]`."""

    mask_type = "block-any"

    def __init__(self, input_shape: Shape, *, grid: tuple[int, int] = (3, 3), **kwargs: object) -> None:
        gh, gw = grid
        if gh > input_shape[1] or gw > input_shape[2]:
            raise ValueError(f"block grid {gh}x{gw} is finer than the {input_shape[1]}x{input_shape[2]} input")
        super().__init__(input_shape, (input_shape[0], gh, gw), 2, **kwargs)  # type: ignore[arg-type]
        self.grid = (gh, gw)
        self.register_buffer("row_cell", cell_index(input_shape[1], gh))
        self.register_buffer("col_cell", cell_index(input_shape[2], gw))

    def expand(self, selected: torch.Tensor) -> torch.Tensor:
        return selected[:, self.row_cell][:, :, self.col_cell]

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "grid": list(self.grid)}


class ChannelXor(SelectStage):
    """`channel-xor`: exactly one channel per group is kept; logits `[G, V]` for `C = G * V` channels.

    One group (the default) is the paper's channel-xor; after an `extend` with V versions per
    channel, one group per original channel picks one version of each.
    """

    mask_type = "channel-xor"

    def __init__(self, input_shape: Shape, *, groups: int = 1, init_logit: float = 1.0, **kwargs: object) -> None:
        channels = input_shape[0]
        if groups < 1 or channels % groups:
            raise ValueError(f"channel-xor: {channels} channels do not split into {groups} groups")
        self.groups, self.versions = groups, channels // groups
        super().__init__(input_shape, (groups,), self.versions, init_logit=0.0, **kwargs)  # type: ignore[arg-type]
        with torch.no_grad():
            self.logits[:, 0] += init_logit  # favour the first version of each group (JPEG: the best quality)

    @property
    def weight_shape(self) -> tuple[int, ...]:
        return (self.input_shape[0],)

    def sample(self, *, tau: float, explore: bool, generator: torch.Generator | None = None) -> torch.Tensor:
        one_hot = straight_through(self.logits, tau=tau, explore=explore, generator=generator)  # (G, V)
        return one_hot.reshape(-1)

    def expand(self, selected: torch.Tensor) -> torch.Tensor:
        return selected[:, None, None].expand(self.input_shape)

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "groups": self.groups}

    def prefer(self, indices: Sequence[int], init_logit: float) -> None:
        """Favour version `indices[g]` in group g (e.g. only the best JPEG quality at first)."""
        favour(self.mask_type, self.logits, indices, init_logit)


class PixelXor(SelectStage):
    """`pixel-xor`: exactly one channel per pixel is kept; logits `[H, W, C]`, exported as `[C, H, W]`."""

    mask_type = "pixel-xor"

    def __init__(self, input_shape: Shape, *, init_logit: float = 1.0, **kwargs: object) -> None:
        c, h, w = input_shape
        super().__init__(input_shape, (h, w), c, init_logit=0.0, **kwargs)  # type: ignore[arg-type]
        with torch.no_grad():
            self.logits[..., 0] += init_logit  # favour the first channel, as the paper's example does

    @property
    def weight_shape(self) -> tuple[int, ...]:
        return self.input_shape

    def sample(self, *, tau: float, explore: bool, generator: torch.Generator | None = None) -> torch.Tensor:
        one_hot = straight_through(self.logits, tau=tau, explore=explore, generator=generator)  # (H, W, C)
        return one_hot.permute(2, 0, 1)

    def expand(self, selected: torch.Tensor) -> torch.Tensor:
        return selected

    def prefer(self, indices: Sequence[int], init_logit: float) -> None:
        """Favour channel `indices[p]` at pixel p (row-major over H x W)."""
        favour(self.mask_type, self.logits.view(-1, self.logits.shape[-1]), indices, init_logit)


@torch.no_grad()
def favour(mask_type: str, logits: torch.Tensor, indices: Sequence[int], init_logit: float) -> None:
    """One-of-K logits `(G, K)` made at construction (choice 0 favoured by `init_logit`): favour `indices[g]`."""
    groups, choices = logits.shape
    if len(indices) != groups or any(i >= choices for i in indices):
        raise ValueError(f"{mask_type} init_selected needs one index below {choices} per group ({groups} groups)")
    logits[:, 0] -= init_logit  # undo the default preference
    logits[torch.arange(groups), torch.as_tensor(list(indices))] += init_logit


class Merge(Stage):
    """`merge` (sum): folds `G * V` channels back to `G`, e.g. the picked version of each channel."""

    mask_type = "merge"

    def __init__(self, input_shape: Shape, *, groups: int) -> None:
        super().__init__(input_shape)
        if input_shape[0] % groups:
            raise ValueError(f"merge: {input_shape[0]} channels do not split into {groups} groups")
        self.groups = groups

    @property
    def output_shape(self) -> Shape:
        return (self.groups, self.input_shape[1], self.input_shape[2])

    def forward(self, x: torch.Tensor, cost: torch.Tensor, *, tau: float, explore: bool,  # type: ignore[override]
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        b, c, h, w = x.shape
        merged = x.reshape(b, self.groups, c // self.groups, h, w).sum(dim=2)
        return merged, cost.reshape(self.groups, c // self.groups, h, w).sum(dim=1)

    def describe(self) -> dict[str, object]:
        return {"mask_type": "merge", "groups": self.groups}


SELECT_STAGES: dict[str, type[SelectStage]] = {
    cls.mask_type: cls for cls in (ChannelAny, PixelAny, BlockAny, ChannelXor, PixelXor)
}
