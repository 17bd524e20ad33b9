"""Using the budget a user asked for: after lambda's last raise overshot the target, keep again the dropped
elements closest to being kept, as long as the mask stays within the target.

Why: lambda rises by a factor, and near the target one raise can drop far more than needed (digits, 16 of 64
pixels asked for: runs ended with 12 to 16; one with 9 of them for a 16-pixel target). The elements dropped last
are the ones whose logits are closest to the threshold; taking them back in that order, each only if Q stays
at most the target, fills the budget to `FLOOR` of it or more where the prices allow. Then the swap check and
finalize run on the filled mask as on any other.

A dynamic mask has no one set of elements to take back: its selection is the mask network's logits against 0 for
every input. Its fill raises one `offset` on all of them, the largest whose Q on the validation inputs stays at
most the target (Q only grows with the offset, so a bisection finds it): per input, the cells closest to being
kept come back first, as the static fill's do.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .stages import ChannelXor, PixelXor, SelectStage

if TYPE_CHECKING:
    from .chain import MaskChain
    from .dynamic import DynamicMask

FLOOR = 0.9  # a mask below this share of its target has budget left to fill


def two_class_stage(chain: MaskChain | DynamicMask) -> SelectStage | None:
    """The last select stage, where each element is kept or dropped on its own: what the swap check and the budget's
    fill change. None for a dynamic mask (no one set of elements) and a one-of-K stage (nothing to add or swap)."""
    stages = chain.select_stages
    if not stages or isinstance(stages[-1], (ChannelXor, PixelXor)):
        return None
    return stages[-1]


def dropped_by_margin(flat: torch.Tensor) -> torch.Tensor:
    """Flat indices of the dropped elements of (elements, select/drop) logits, the closest to being kept first."""
    margin = flat[:, 0] - flat[:, 1]
    dropped = torch.nonzero(margin < 0).flatten()
    return dropped[torch.argsort(margin[dropped], descending=True, stable=True)]


def fill_elements(chain: MaskChain, target: float) -> list[int]:
    """Keep dropped elements of the last select stage again, largest margin first, each only if Q stays at most
    `target`, until Q is at least `FLOOR * target`; returns their flat indices, in the order taken."""
    stage = two_class_stage(chain)
    if stage is None or chain.fraction() >= FLOOR * target:
        return []
    flat = stage.logits.data.view(-1, 2)  # (elements, select/drop)
    added: list[int] = []
    for element in dropped_by_margin(flat).tolist():
        flat[element] = flat[element].flip(0)  # kept, by as much as it was dropped
        fraction = chain.fraction()
        if fraction > target + 1e-9:
            flat[element] = flat[element].flip(0)  # too dear for what is left of the budget
            continue
        added.append(element)
        if fraction >= FLOOR * target:
            break
    return added


OFFSET_STEPS = 40  # bisection steps: the offset to within 2**-40 of its range
OFFSET_LIMIT = 64.0  # a logit offset past this keeps every cell the network does not reject outright


@torch.no_grad()
def fill_offset(mask: DynamicMask, inputs: torch.Tensor, target: float) -> float:
    """Raise `mask.offset` to the largest value whose Q on `inputs` stays at most `target`, when Q is below
    `FLOOR * target`; returns the offset (0 when there was nothing to fill)."""
    if mask.fraction(inputs) >= FLOOR * target:
        return float(mask.offset)
    low, high = 0.0, 1.0
    while high < OFFSET_LIMIT and _fraction_at(mask, inputs, high) <= target:
        low, high = high, high * 2
    if high >= OFFSET_LIMIT and _fraction_at(mask, inputs, high) <= target:
        low = high
    else:
        for _ in range(OFFSET_STEPS):
            middle = (low + high) / 2
            low, high = (middle, high) if _fraction_at(mask, inputs, middle) <= target else (low, middle)
    mask.offset.fill_(low)
    return float(mask.offset)


def _fraction_at(mask: DynamicMask, inputs: torch.Tensor, offset: float) -> float:
    mask.offset.fill_(offset)
    return mask.fraction(inputs)
