"""Dynamic masks: a selection computed per input, on the server, from the server's own copy of the input.

A static mask keeps the same values for every input, so when the object moves it must keep every place
the object can be. A dynamic mask asks a small *mask network* `g`, run where the data lives:
- the server view `s` is the input itself, or its `adaptive_max_pool2d` to `server_view` (a cheaper `g`);
- `g(s) + BIAS` gives one logit per channel and mask cell (a pixel, or a cell of a `grid`); BIAS = 3 starts
  with about 95 % selected, so that the first epochs see the whole input; a buffer `offset` (0 while
  training) moves every threshold at once when the budget is filled after lambda overshot it;
- `round(sigmoid(logits))` with a straight-through gradient decides, without noise; cells are broadcast
  to the pixels they cover, as `block-any` does;
- Q is the batch mean of the selected share (priced per element as the static masks) plus the share of the
  bytes that say which cells each sample sends (`selection_bytes`: its count, then its cells' indices or a
  bitmap, whichever is smaller, as `transfer` packs them): Q counts bytes, not only values.
Network and mask network train together on `task + lambda * Q`; the loop is the static masks' own.

`DynamicMask` answers what the training loop asks of a `MaskChain`; where a static chain's cost is the same
for every input, its `fraction` and `selected` take the inputs they are measured on (the validation split).
"""
from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .budget import fill_offset
from .stages import Shape, cell_index, element_costs

DYNAMIC_MASKS = ("dynamic-pixel-any", "dynamic-block-any")
BIAS = 3.0
Count = TypeVar("Count", np.ndarray, torch.Tensor)
MASK_NET_NAMES = ("auto", "linear", "convatt", "hybrid")
# `auto` takes the hybrid (the linear map plus a 3x3 convolution) while the linear map's matrix stays this small
# (28x28 to 28x28 is 614,656 weights): the linear map alone learns where a fixed layout's information lies
# (mnist5k at 5 % of the bytes: 0.93, conv-attention 0.73) but stays near chance where the object moves
# (`synthetic-moving`: 0.32, conv-attention 0.99); the hybrid reaches 0.93 and 0.99. Larger inputs get
# conv-attention alone (or a smaller `server_view`, which brings the hybrid back).
LINEAR_MAX_WEIGHTS = 1_000_000
# The most a linear map asked for by name may hold: 1 GiB of float32 weights (a 3x64x64 input to its own values
# takes 151 million, 0.6 GB); beyond it the map, its gradient and Adam's moments outgrow most accelerators.
LINEAR_LIMIT = 2**28
MEASURE_BATCH = 1024
# Features of each conv-attention branch: 2 find a small object over noise as well as 16 did, and keep a lenet5
# training step within 1.5x a static mask's (16: 2.5x; docs/design.md, "Dynamic masks").
HIDDEN = 2


class LinearMaskNet(nn.Module):
    """Every value of the view to every cell's logit, times a learnable scale that starts at 0: the first
    masks are the bias alone, and the scale grows as the task asks."""

    def __init__(self, view_shape: Shape, cells: Shape) -> None:
        super().__init__()
        self.cells = cells
        self.linear = nn.Linear(math.prod(view_shape), math.prod(cells))
        self.scale = nn.Parameter(torch.zeros(()))

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return (self.linear(s.flatten(1)) * self.scale).view(-1, *self.cells)


class ConvAttMaskNet(nn.Module):
    """Two 3x3 branches (one dilated: a wider look), mixed per feature by a sigmoid gate from the pooled view,
    then a 1x1 convolution to one logit per channel and cell: the same look everywhere, so it finds an object
    wherever it is."""

    def __init__(self, view_shape: Shape, cells: Shape, hidden: int = HIDDEN) -> None:
        super().__init__()
        channels = view_shape[0]
        self.cells = cells
        self.near = nn.Conv2d(channels, hidden, 3, padding=1)
        self.wide = nn.Conv2d(channels, hidden, 3, padding=2, dilation=2)
        self.gate = nn.Linear(channels, hidden)
        # The 1x1 convolution as a linear map over the features of each pixel (as ConvNeXt writes it): on a CPU
        # this is 10x faster than nn.Conv2d's for a few features (docs/design.md, "Dynamic masks").
        self.out = nn.Linear(hidden, cells[0])
        nn.init.zeros_(self.out.weight)  # the first masks are the bias alone, as the linear map's
        nn.init.zeros_(self.out.bias)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.gate(s.mean(dim=(2, 3))))[:, :, None, None]
        features = torch.relu(gate * self.near(s) + (1 - gate) * self.wide(s))
        logits = self.out(features.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return _to_cells(logits, self.cells[1:])


class LocalMaskNet(nn.Module):
    """One 3x3 convolution (`HIDDEN` features) and a per-pixel linear map to one logit per channel and cell,
    starting at 0: what the input looks like around each place, the same everywhere."""

    def __init__(self, view_shape: Shape, cells: Shape, hidden: int = HIDDEN) -> None:
        super().__init__()
        self.cells = cells
        self.near = nn.Conv2d(view_shape[0], hidden, 3, padding=1)
        self.out = nn.Linear(hidden, cells[0])  # the 1x1 convolution as conv-attention writes it
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        logits = self.out(torch.relu(self.near(s)).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return _to_cells(logits, self.cells[1:])


class HybridMaskNet(nn.Module):
    """The linear map's logits plus a local detector's (`LocalMaskNet`), each starting at 0: where a fixed layout's
    information lies, and what an object looks like wherever it is, so one default serves both kinds of data. The
    linear map sees the whole input, so the local part needs neither conv-attention's wide branch nor its gate."""

    def __init__(self, view_shape: Shape, cells: Shape) -> None:
        super().__init__()
        self.linear = LinearMaskNet(view_shape, cells)
        self.local = LocalMaskNet(view_shape, cells)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return self.linear(s) + self.local(s)


def _to_cells(logits: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """Per-pixel logits (B, C, H, W) to the cells' grid: averaged over each cell, or interpolated onto a finer one."""
    if tuple(logits.shape[2:]) == size:
        return logits
    if logits.shape[2] >= size[0] and logits.shape[3] >= size[1]:
        return F.adaptive_avg_pool2d(logits, size)
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


MASK_NETS: dict[str, Callable[[Shape, Shape], nn.Module]] = {"linear": LinearMaskNet, "convatt": ConvAttMaskNet,
                                                            "hybrid": HybridMaskNet}


def choose_mask_net(name: str, view_shape: Shape, cells: Shape) -> str:
    """The mask network a run uses: `name`, or for `auto` the hybrid while its linear map stays small, else
    conv-attention."""
    if name != "auto":
        return name
    return "hybrid" if math.prod(view_shape) * math.prod(cells) <= LINEAR_MAX_WEIGHTS else "convatt"


def bitmap_bytes(cells: Sequence[int]) -> int:
    """Bytes of one sample's bitmap: one bit per channel and cell."""
    return -(-math.prod(cells) // 8)


def _width(largest: int) -> int:
    """Bytes of an unsigned integer up to `largest`: 1, 2 or 4."""
    return 1 if largest < 2**8 else 2 if largest < 2**16 else 4


def index_bytes(cells: Sequence[int]) -> int:
    """Bytes of one cell's index in a sample's list of selected cells."""
    return _width(math.prod(cells) - 1)


def count_bytes(cells: Sequence[int]) -> int:
    """Bytes of the count of selected cells that opens every sample's selection."""
    return _width(math.prod(cells))


def uses_indices(count: np.ndarray, cells: Sequence[int]) -> np.ndarray:
    """Whether each sample, keeping `count` cells, sends their indices (fewer bytes) rather than the bitmap."""
    return count * index_bytes(cells) < bitmap_bytes(cells)


def listed_bytes(count: Count, cells: Sequence[int]) -> Count:
    """Bytes of each sample's list of cells, for its `count` of them: the smaller of their indices and the bitmap
    (a numpy array for `transfer.packing`, a tensor for Q)."""
    return (count * index_bytes(cells)).clip(max=bitmap_bytes(cells))


def selection_bytes(count: torch.Tensor, cells: Sequence[int]) -> torch.Tensor:
    """Bytes that say which cells a sample sends, for each sample's `count` of them: the count, then its list
    (`listed_bytes`; `transfer.packing` writes exactly this). A sparse mask pays per cell kept: 28x28 pixels at
    5 % of the raw bytes keep 25 pixels where a bitmap (98 bytes) would leave 14."""
    return count_bytes(cells) + listed_bytes(count, cells)


@dataclass(frozen=True)
class DynamicLayout:
    """What a dynamic mask is for an input, checked before anything is built: its cells, the server's view, the
    mask network it gets and its cells' prices. `config_problem` asks for it where a run is submitted, so that a
    request is refused there without building a mask network of up to a gigabyte."""

    input_shape: Shape
    cell_shape: Shape
    server_view: tuple[int, int]
    mask_net: str
    weights: torch.Tensor

    @classmethod
    def of(cls, spec: str, input_shape: Shape, *, grid: tuple[int, int] = (3, 3),
           server_view: tuple[int, int] | None = None, mask_net: str = "auto",
           costs: np.ndarray | None = None) -> DynamicLayout:
        """The layout, or a ValueError naming what does not fit the input."""
        if spec not in DYNAMIC_MASKS:
            raise ValueError(f"unknown dynamic mask {spec!r}; choose one of {', '.join(DYNAMIC_MASKS)}")
        c, h, w = (int(s) for s in input_shape)
        gh, gw = (h, w) if spec == "dynamic-pixel-any" else grid
        if gh > h or gw > w:
            raise ValueError(f"block grid {gh}x{gw} is finer than the {h}x{w} input")
        vh, vw = server_view or (h, w)
        if not (1 <= vh <= h and 1 <= vw <= w):
            raise ValueError(f"server view {vh}x{vw} must be between 1x1 and the {h}x{w} input")
        chosen = choose_mask_net(mask_net, (c, vh, vw), (c, gh, gw))
        if chosen not in MASK_NETS:
            raise ValueError(f"unknown mask network {mask_net!r}; choose one of {', '.join(MASK_NET_NAMES)}")
        linear = c * vh * vw * c * gh * gw
        if chosen in ("linear", "hybrid") and linear > LINEAR_LIMIT:
            raise ValueError(f"mask_net {chosen} maps the {c}x{vh}x{vw} server view to {gh}x{gw} cells of {c} "
                             f"channel(s) with {linear:,} weights (at most {LINEAR_LIMIT:,}): choose convatt, a "
                             "smaller server_view or a coarser grid")
        return cls((c, h, w), (c, gh, gw), (vh, vw), chosen, element_costs(spec, costs, (c, gh, gw)))


class DynamicMask(nn.Module):
    """`dynamic-pixel-any` (a cell per value) or `dynamic-block-any` (a `grid` of cells per channel)."""

    extend = None  # no extend chains: a dynamic mask stands alone
    per_input = True  # what it keeps, and so Q, depends on the input: its methods measure on the inputs given

    def __init__(self, spec: str, input_shape: Shape, *, grid: tuple[int, int] = (3, 3),
                 server_view: tuple[int, int] | None = None, mask_net: str = "auto",
                 costs: np.ndarray | None = None) -> None:
        super().__init__()
        layout = DynamicLayout.of(spec, input_shape, grid=grid, server_view=server_view, mask_net=mask_net,
                                  costs=costs)
        c, h, w = layout.input_shape
        gh, gw = layout.cell_shape[1:]
        self.spec, self.input_shape, self.cell_shape = spec, layout.input_shape, layout.cell_shape
        self.server_view, self.mask_net = layout.server_view, layout.mask_net
        self.net = MASK_NETS[self.mask_net]((c, *self.server_view), self.cell_shape)
        self.register_buffer("weights", layout.weights)
        self.register_buffer("row_cell", cell_index(h, gh))
        self.register_buffer("col_cell", cell_index(w, gw))
        # What says which cells a sample sends rides along with it (`selection_bytes`): its share of the raw float32
        # input is part of Q. `empty_share` is that of a sample that keeps nothing: its count alone.
        self.raw_bytes = float(c * h * w * 4)
        self.empty_share = count_bytes(self.cell_shape) / self.raw_bytes
        # Added to every logit: raised by `fill_budget` (`budget.fill_offset`) to spend a budget that lambda's
        # last raise left unused; part of the server's mask network (`ServerMask`, `digest`).
        self.register_buffer("offset", torch.zeros(()))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        # Masks saved before the offset existed had none: theirs is 0 (as BatchNorm fills num_batches_tracked).
        state_dict.setdefault(prefix + "offset", torch.zeros(()))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # --- what the loop asks of any mask ------------------------------------------------------------

    @property
    def output_shape(self) -> Shape:
        return self.input_shape

    @property
    def stage_input_shape(self) -> Shape:
        return self.input_shape

    @property
    def stages(self) -> list[nn.Module]:
        return []

    @property
    def select_stages(self) -> list[nn.Module]:
        return []  # nothing for the swap check: the selection is not one set of elements

    def forward(self, x: torch.Tensor, *, tau: float = 1.0, explore: bool = False,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The masked batch and Q (its mean priced share, plus what says which cells were sent); `tau`,
        `explore` and `generator` are the static masks' and play no part: the rounding is deterministic."""
        cells = self.cells(x)
        return x * self.expand(cells), self._shares(cells).mean()

    def _shares(self, cells: torch.Tensor) -> torch.Tensor:
        """Each sample's Q: its cells' priced share of the values, plus its selection's bytes over the raw bytes."""
        priced = self.expand(cells * self.weights).sum(dim=(1, 2, 3)) / float(math.prod(self.input_shape))
        return priced + selection_bytes(cells.sum(dim=(1, 2, 3)), self.cell_shape) / self.raw_bytes

    def freeze(self) -> None:
        self.requires_grad_(False)

    @torch.no_grad()
    def fraction(self, x: torch.Tensor | None = None) -> float:
        """Q of the noise-free masks on the inputs `x`, summed in float64 (the same on every CPU and GPU)."""
        total = 0.0
        for part in self._parts(x):
            total += float(self._shares(self.hard_cells(part).double()).sum())
        return round(total / max(int(x.shape[0]), 1), 9)

    @torch.no_grad()
    def frequency(self, x: torch.Tensor | None = None) -> np.ndarray:
        """How often each cell is selected over the inputs `x`, (C, GH, GW) in [0, 1]."""
        counts = torch.zeros(self.cell_shape, dtype=torch.float64, device=self.weights.device)
        for part in self._parts(x):
            counts += self.hard_cells(part).double().sum(dim=0)
        return (counts / max(int(x.shape[0]), 1)).float().cpu().numpy()

    def selected(self, x: torch.Tensor | None = None) -> np.ndarray:
        """The cells selected for at least half of the inputs `x`, uint8 (C, GH, GW): the snapshot a record
        keeps where a static mask keeps its one selection."""
        return (self.frequency(x) >= 0.5).astype(np.uint8)

    def fill_budget(self, target: float, x: torch.Tensor | None = None) -> list[int]:
        """Spend what lambda's last raise left of the budget `target`, measured on the inputs `x`: one offset on
        every logit (`budget.fill_offset`). No one element is kept again, so none is named (`describe` gives the
        offset)."""
        fill_offset(self, self._inputs(x), target)
        return []

    def epoch_snapshot(self, x: torch.Tensor | None = None,
                       labels: torch.Tensor | None = None) -> dict[str, np.ndarray]:
        """An epoch record's picture of the mask on the validation inputs `x`: the cells kept for at least half of
        them, how often each cell is kept, and the cells of the gallery's few inputs (picked by `labels`)."""
        frequency = self.frequency(x)
        snapshot = {"selected": (frequency >= 0.5).astype(np.uint8), "frequency": frequency}
        if labels is not None:
            gallery = x[gallery_indices(labels)]
            snapshot["gallery"] = self.hard_cells(gallery).to(torch.uint8).cpu().numpy()
        return snapshot

    def document_fields(self, x: torch.Tensor | None = None) -> dict[str, object]:
        """What `mask.json` adds for this mask: "dynamic", with how often each cell is kept on the inputs `x`."""
        return {"dynamic": {**self.describe(), "frequency": np.round(self.frequency(x), 4).tolist()}}

    def server_half(self) -> nn.Module:
        """The module the server runs to choose each input's cells (`mask_net.ts`)."""
        return ServerMask(self)

    def client_keep(self) -> tuple[torch.Tensor, float]:
        """What the client's network multiplies its input by: all ones (it takes what the client rebuilt, zeros
        where nothing was sent)."""
        return torch.ones(self.input_shape), 1.0

    def describe(self) -> dict[str, object]:
        """What `mask.json` says of it under "dynamic": enough for a receiver to read its payloads."""
        return {"cells": list(self.cell_shape), "server_view": list(self.server_view), "mask_net": self.mask_net,
                "offset": round(float(self.offset), 6), "digest": self.digest().hex()}

    @torch.no_grad()
    def digest(self) -> bytes:
        """8 bytes naming the mask network's weights: a payload says which network chose its cells."""
        state = hashlib.sha256()
        for name, tensor in sorted(self.net.state_dict().items()):
            state.update(name.encode())
            state.update(tensor.detach().cpu().float().contiguous().numpy().tobytes())
        if float(self.offset):  # a filled budget moves the thresholds: another selection (0 keeps older digests)
            state.update(self.offset.detach().cpu().float().numpy().tobytes())
        return state.digest()[:8]

    # --- the mask itself --------------------------------------------------------------------------------

    def view(self, x: torch.Tensor) -> torch.Tensor:
        """What the server's mask network looks at: the input, or its max-pool to `server_view`."""
        return x if self.server_view == tuple(x.shape[2:]) else F.adaptive_max_pool2d(x, self.server_view)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The mask network's logit per cell, in float32 whatever the caller's autocast (a run's lower precision is
        for the task network: a cell's keep-or-drop must not depend on it)."""
        with torch.autocast(x.device.type, enabled=False):
            return self.net(self.view(x)) + (BIAS + self.offset)

    def cells(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, GH, GW) of 0/1 forward, the sigmoid's gradient backward (straight-through)."""
        soft = torch.sigmoid(self.logits(x))
        return (soft >= 0.5).to(soft.dtype) + (soft - soft.detach())  # exactly 0 or 1 forward

    @torch.no_grad()
    def hard_cells(self, x: torch.Tensor) -> torch.Tensor:
        return (self.logits(x) >= 0).to(x.dtype)

    def expand(self, cells: torch.Tensor) -> torch.Tensor:
        """(B, C, GH, GW) to (B, C, H, W): each cell over the pixels it covers."""
        if self.cell_shape == self.input_shape:
            return cells
        return cells[:, :, self.row_cell][:, :, :, self.col_cell]

    @staticmethod
    def _inputs(x: torch.Tensor | None) -> torch.Tensor:
        if x is None:
            raise ValueError("a dynamic mask's share depends on the inputs: give the ones to measure it on")
        return x

    def _parts(self, x: torch.Tensor | None) -> list[torch.Tensor]:
        return list(self._inputs(x).split(MEASURE_BATCH))


class ServerMask(nn.Module):
    """The server's half of a trained dynamic mask, for `mask_net.ts`: the full input in, each sample's selected
    cells (B, C, GH, GW) of 0/1 out, which `transfer.pack(x, plan, cells=...)` sends."""

    def __init__(self, mask: DynamicMask) -> None:
        super().__init__()
        self.net = copy.deepcopy(mask.net).cpu().eval()
        self.view_size = list(mask.server_view)
        self.pool = mask.server_view != mask.input_shape[1:]
        self.bias = BIAS + float(mask.offset)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_max_pool2d(x, self.view_size) if self.pool else x
        return (self.net(s) + self.bias >= 0).to(x.dtype)


GALLERY = 8


def gallery_indices(y_val: torch.Tensor, count: int = GALLERY) -> torch.Tensor:
    """The validation inputs whose own masks a run shows every epoch: the first of each class in turn, so
    that every class is there (as far as `count` allows); the same for every epoch and every run of a seed."""
    labels = y_val.cpu()
    order: list[int] = []
    by_class = [(labels == c).nonzero().flatten().tolist() for c in range(int(labels.max()) + 1 if len(labels) else 0)]
    for turn in range(max((len(members) for members in by_class), default=0)):
        order += [members[turn] for members in by_class if turn < len(members)]
        if len(order) >= count:
            break
    return torch.as_tensor(order[:count], dtype=torch.long, device=y_val.device)


def is_dynamic(spec: str) -> bool:
    return spec in DYNAMIC_MASKS
