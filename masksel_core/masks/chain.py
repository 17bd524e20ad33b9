"""Mask specs and chains: from `"pixel-any"` or `"jpeg-xor+pixel-any"` to a `MaskChain`.

Spec grammar (CLI `--mask`, REST `mask_type`, `TrainConfig.mask_type`): stages joined by `+`.
- a select mask: `channel-any`, `channel-xor`, `pixel-any`, `pixel-xor`, `block-any`;
- `jpeg-xor`: extend every channel to JPEG versions (qualities 90, 70, 50, 30, 10), pick one
  version per channel (channel-xor, one group per channel) and merge them back;
- `thumb-xor`: the same with thumbnails at scales 1, 1/2, 1/4;
- `jpeg-xor` and `thumb-xor` may only come first, and be followed by more select masks, e.g.
  `jpeg-xor+pixel-any` (the paper's Sec. 4.4 chain extend -> channel-xor -> merge -> pixel-any);
- `dynamic-pixel-any`, `dynamic-block-any`: a selection per input (`dynamic`), alone.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from .budget import fill_elements
from .dynamic import DYNAMIC_MASKS, DynamicMask
from .operators import DEFAULT_JPEG_QUALITIES, DEFAULT_THUMB_SCALES, Extend
from .stages import SELECT_STAGES, ChannelXor, Merge, SelectStage, Shape, Stage

EXTEND_SPECS = {"jpeg-xor": ("jpeg", DEFAULT_JPEG_QUALITIES), "thumb-xor": ("thumb", DEFAULT_THUMB_SCALES)}
MASK_NAMES = (*SELECT_STAGES, *EXTEND_SPECS, *DYNAMIC_MASKS)
CHANNEL_MASKS = ("channel-any", "channel-xor")


def split_spec(spec: str) -> list[str]:
    """The parts of a spec, checked: known names, extends first and at most once."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError("mask type must be a non-empty string")
    parts = [part.strip() for part in spec.split("+")]
    for i, part in enumerate(parts):
        if part not in MASK_NAMES:
            raise ValueError(f"unknown mask type {part!r}; choose one of {', '.join(MASK_NAMES)} "
                             "(chain them with +, e.g. jpeg-xor+pixel-any)")
        if part in EXTEND_SPECS and i > 0:
            raise ValueError(f"{part} must come first in a chain, got {spec!r}")
        if part in DYNAMIC_MASKS and len(parts) > 1:
            raise ValueError(f"{part} selects per input and stands alone, not in a chain: got {spec!r}")
    return parts


def spec_problem(spec: str, input_shape: Sequence[int]) -> str:
    """Why a (valid) spec makes no sense for inputs of `input_shape`, or "": a channel mask on one channel can
    only keep everything or nothing."""
    if int(input_shape[0]) == 1 and any(part in CHANNEL_MASKS for part in split_spec(spec)):
        return (f"{spec} selects whole channels, and this data has a single channel: the mask could only keep "
                "all of it or nothing; choose pixel-any or block-any")
    return ""


def default_mask_type(input_shape: Sequence[int]) -> str:
    """The mask a new run gets when none is asked for: channels where there are several, else pixels."""
    return "channel-any" if int(input_shape[0]) > 1 else "pixel-any"


class MaskChain(nn.Module):
    """Stages applied in order to a batch; `Q` is the sum of the final cost map.

    Its methods are a `DynamicMask`'s too (fraction, selected, frequency, fill_budget, epoch_snapshot,
    document_fields, server_half, client_keep), so training and export never ask which kind they hold; where a
    dynamic mask measures on the inputs given, a static one keeps the same elements of every input and reads none.
    """

    per_input = False  # the same selection for every input (see `DynamicMask.per_input`)
    empty_share = 0.0  # nothing rides along with a sample to say what it sends (see `DynamicMask.empty_share`)

    def __init__(self, spec: str, input_shape: Shape, stages: Sequence[Stage], extend: Extend | None) -> None:
        super().__init__()
        self.spec = spec
        self.input_shape: Shape = tuple(int(s) for s in input_shape)  # type: ignore[assignment]
        self.extend = extend
        self.stages = nn.ModuleList(stages)
        self.register_buffer("base_cost", self._base_cost(extend.version_costs() if extend else torch.ones(1)))

    def _base_cost(self, prices: torch.Tensor) -> torch.Tensor:
        """(C*V, H, W): each value's price as a share of the raw input. `prices` is one per version (V,), the
        same for every channel, or one per channel and version (C, V)."""
        c, h, w = self.input_shape
        flat = prices.float().repeat(c) if prices.dim() == 1 else prices.float().reshape(-1)
        return (flat[:, None, None].expand(len(flat), h, w) / float(c * h * w)).contiguous()

    def set_version_costs(self, prices: torch.Tensor) -> None:
        """Price the extend versions anew (e.g. by their measured bytes), so Q counts those prices: one price
        per version (V,) or one per channel and version (C, V)."""
        if self.extend is None:
            raise ValueError("version costs need an extend chain")
        v, c = self.extend.versions, self.input_shape[0]
        if tuple(prices.shape) not in ((v,), (c, v)):
            raise ValueError(f"version costs must have shape ({v},) or ({c}, {v}), got {tuple(prices.shape)}")
        self.base_cost.copy_(self._base_cost(prices).to(self.base_cost.device))

    def version_costs(self) -> torch.Tensor:
        """The extend versions' prices in use, as `set_version_costs` takes them: (V,) where every channel
        pays the same (the paper's proxy), else (C, V) (measured bytes per channel)."""
        c, h, w = self.input_shape
        prices = (self.base_cost[:, 0, 0].detach().cpu() * float(c * h * w)).reshape(c, -1)
        return prices[0].clone() if bool((prices == prices[0]).all()) else prices

    @property
    def stage_input_shape(self) -> Shape:
        """`(C', H, W)` of what the stages take: the input after `extend` (C * V channels), else the input."""
        return tuple(self.base_cost.shape)  # type: ignore[return-value]

    @property
    def output_shape(self) -> Shape:
        return self.stages[-1].output_shape if len(self.stages) else self.stage_input_shape

    @property
    def select_stages(self) -> list[SelectStage]:
        return [s for s in self.stages if isinstance(s, SelectStage)]

    def forward(self, x: torch.Tensor, *, tau: float, explore: bool,  # type: ignore[override]
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """`x` is the (already extended) batch `(B, C', H, W)`; returns the masked batch and Q, in float32 whatever
        the caller's autocast (only the network runs in a run's lower precision)."""
        cost = self.base_cost
        with torch.autocast(x.device.type, enabled=False):
            for stage in self.stages:
                x, cost = stage(x, cost, tau=tau, explore=explore, generator=generator)
        return x, cost.sum()

    def freeze(self) -> None:
        """Stop learning the masks: what `finalize` trains the network behind."""
        self.requires_grad_(False)

    @torch.no_grad()
    def fraction(self, x: torch.Tensor | None = None) -> float:
        """Q of the discrete (noise-free) mask: the transferred share, priced. Summed in float64, so that a
        target is met or not the same on every CPU and GPU (a float32 sum of 3 channels' 1/10 is 0.30000001).
        The same for every input: `x` is taken, as a dynamic mask's (`DynamicMask.fraction`), and not read."""
        cost = self._exact_base_cost()
        dummy = torch.zeros(1, *self.stage_input_shape, device=cost.device)
        for stage in self.stages:
            dummy, cost = stage(dummy, cost, tau=1.0, explore=False)
        return round(float(cost.double().sum()), 9)

    def _exact_base_cost(self) -> torch.Tensor:
        """`base_cost` in float64, each price recovered to 6 significant digits first: float32 holds a share of
        1/72 as 1/72 + 1e-10, and 72 of them summed to 1.000000007, so a mask that keeps everything was priced
        above 1 and a target of 1.0 was never reached. Prices (1, q/100, measured bytes) need no more digits."""
        n = float(math.prod(self.input_shape))
        prices = self.base_cost.double() * n
        scale = torch.pow(10.0, 5 - torch.floor(torch.log10(prices.abs().clamp_min(1e-300))))
        return torch.round(prices * scale) / scale / n

    def selected(self, x: torch.Tensor | None = None) -> np.ndarray:
        """The last select stage's discrete mask, in the contract's shape for its type (`x`: as `fraction`)."""
        return self.select_stages[-1].selected()

    def frequency(self, x: torch.Tensor | None = None) -> np.ndarray:
        """How often each element is kept: always or never (`x`: as `fraction`)."""
        return self.selected().astype(np.float32)

    def fill_budget(self, target: float, x: torch.Tensor | None = None) -> list[int]:
        """Spend what lambda's last raise left of the budget `target` (`budget.fill_elements`); returns the flat
        indices of the elements kept again (`x`: as `fraction`)."""
        return fill_elements(self, target)

    def epoch_snapshot(self, x: torch.Tensor | None = None,
                       labels: torch.Tensor | None = None) -> dict[str, np.ndarray]:
        """An epoch record's picture of the mask: its one selection (`x`, `labels`: as `fraction`)."""
        return {"selected": self.selected()}

    def document_fields(self, x: torch.Tensor | None = None) -> dict[str, object]:
        """What `mask.json` adds for this mask: every stage, where there is more than one select stage or an
        extend."""
        return {"stages": self.describe()} if "+" in self.spec or self.extend is not None else {}

    def server_half(self) -> nn.Module | None:
        """None: a static mask sends the same elements of every input, so the server needs no network to choose."""
        return None

    @torch.no_grad()
    def client_keep(self) -> tuple[torch.Tensor, float]:
        """The discrete mask of the stages that act on the network's input, as one 0/1 tensor, and its scale. After
        an extend, the input is the merged picked versions (what a client rebuilds): the stages after the merge."""
        stages = list(self.stages)
        merges = [i for i, stage in enumerate(stages) if isinstance(stage, Merge)]
        keep = torch.ones(self.output_shape, device=self.base_cost.device)
        scale = 1.0
        for stage in stages[merges[-1] + 1:] if merges else stages:
            if isinstance(stage, SelectStage):
                selected = stage.keep_map()
                keep = keep * selected
                if stage.rescale:
                    scale /= max(float(selected.mean()), 1e-6)
        return keep.detach().cpu(), scale

    def describe(self) -> list[dict[str, object]]:
        """Every stage, for `mask.json` of chains."""
        out: list[dict[str, object]] = []
        if self.extend is not None:
            out.append({"mask_type": "extend", "kind": self.extend.kind, "levels": list(self.extend.levels),
                        "costs": self.version_costs().tolist()})
        out.extend(stage.describe() for stage in self.stages)
        return out


AnyMask = MaskChain | DynamicMask  # what the training loop runs: a static chain or a per-input mask


def build_chain(spec: str, input_shape: Shape, *, grid: tuple[int, int] = (3, 3), init_sigma: float = 0.01,
                init_logit: float = 1.0, rescale: bool = False, costs: np.ndarray | None = None,
                generator: torch.Generator | None = None) -> MaskChain:
    """Build the chain a spec names for inputs of `input_shape` `(C, H, W)`.

    `costs` (relative per-element prices, default 1) applies to a single select mask.
    """
    parts = split_spec(spec)
    if costs is not None and len(parts) != 1:
        raise ValueError("per-element costs can be given for a single mask only")
    extend = None
    stages: list[Stage] = []
    shape: Shape = tuple(int(s) for s in input_shape)  # type: ignore[assignment]
    common = {"init_sigma": init_sigma, "rescale": rescale, "generator": generator}
    for part in parts:
        if part in EXTEND_SPECS:
            kind, levels = EXTEND_SPECS[part]
            extend = Extend(kind, levels)
            channels = shape[0]
            shape = (channels * extend.versions, shape[1], shape[2])
            xor = ChannelXor(shape, groups=channels, init_logit=init_logit, costs=None, **common)
            stages += [xor, Merge(shape, groups=channels)]
            shape = stages[-1].output_shape
            continue
        extra = {"grid": grid} if part == "block-any" else {}
        stage = SELECT_STAGES[part](shape, init_logit=init_logit, costs=costs, **extra, **common)
        stages.append(stage)
        shape = stage.output_shape
    return MaskChain(spec, input_shape, stages, extend)
