"""The swap check that ends selection: single swaps of a kept element for a dropped one, where a network trained
briefly on the swapped mask reaches a lower validation loss.

Why: a gradient cannot tell near-copies apart. When two inputs carry the same information (a clean channel and a
noisy copy of it), the network learns to use both, each one's gradient is as large as the other's, and which copy
survives the rising lambda is chance (2 of 10 seeds found the clean one in the quality benchmark's channel task).
So each round
1. screens every (kept, dropped) pair, the dropped among the `candidates` closest to being kept, by the
   validation loss of the network as it is with the two exchanged (one validation pass each, no training);
2. trains a copy of the network for `TRIAL_EPOCHS` on each of the `FINALISTS` best screened masks and on the
   current one (the same batches for all), and keeps the swap whose validation loss beats the current mask's by
   more than `TOLERANCE`; a swap never takes an element dearer than the one it drops, so Q never grows.
The network itself is left as it is: finalize trains it on the mask that comes out.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..masks.chain import AnyMask, MaskChain
from ..masks.stages import ChannelXor, PixelXor
from .steps import Splits, evaluate_split, network_step

TOLERANCE = 0.005  # a relative improvement of the validation loss smaller than this is noise, not a better mask
FINALISTS, TRIAL_EPOCHS = 3, 1


def swap_check(chain: AnyMask, model: nn.Module, splits: Splits, *, candidates: int, rounds: int, lr: float,
               seed: int) -> list[tuple[int, int]]:
    """Up to `rounds` swaps in the last select stage (a two-class one); returns them as (dropped, taken) flat
    indices into the stage's selection, in the order they were made."""
    if not chain.select_stages:  # a dynamic mask: no one set of elements to swap in
        return []
    stage = chain.select_stages[-1]
    if candidates < 1 or rounds < 1 or isinstance(stage, (ChannelXor, PixelXor)):
        return []
    flat = stage.logits.data.view(-1, 2)  # (elements, select/drop)
    prices = stage.weights.reshape(-1)

    def tuned_loss() -> float:
        """Validation loss of a copy of the network trained briefly on the current mask (same batches each call)."""
        trial = copy.deepcopy(model)
        optimizer = torch.optim.Adam(trial.parameters(), lr=lr)
        generator = torch.Generator(device=splits.device).manual_seed(seed)
        loss_fn = nn.CrossEntropyLoss()
        for _ in range(TRIAL_EPOCHS):
            trial.train()
            for x, y in splits.fit_batches(generator):
                network_step(trial, chain, loss_fn, x, y, optimizer)
        return evaluate_split(trial, chain, splits)[1]

    swaps: list[tuple[int, int]] = []
    for _ in range(rounds):
        screened = sorted(_screen(chain, model, splits, flat, prices, candidates))[:FINALISTS]
        if not screened:
            break
        best, found = tuned_loss() * (1 - TOLERANCE), None
        for _, pair in screened:
            _exchange(flat, *pair)
            loss = tuned_loss()
            _exchange(flat, *pair)
            if loss < best:
                best, found = loss, pair
        if found is None:
            break
        _exchange(flat, *found)
        swaps.append(found)
    return swaps


@torch.no_grad()
def _screen(chain: MaskChain, model: nn.Module, splits: Splits, flat: torch.Tensor, prices: torch.Tensor,
            candidates: int) -> list[tuple[float, tuple[int, int]]]:
    """(validation loss of the untouched network, (kept, dropped)) for every allowed exchange."""
    margin = flat[:, 0] - flat[:, 1]
    kept = torch.nonzero(margin >= 0).flatten().tolist()
    dropped = torch.nonzero(margin < 0).flatten()
    pool = dropped[torch.argsort(margin[dropped], descending=True)[:candidates]].tolist()
    scores = []
    for out in kept:
        for taken in pool:
            if prices[taken] <= prices[out]:
                _exchange(flat, out, taken)
                scores.append((evaluate_split(model, chain, splits)[1], (out, taken)))
                _exchange(flat, out, taken)
    return scores


def _exchange(flat: torch.Tensor, a: int, b: int) -> None:
    """Swap two elements' logits: the kept one is dropped with the other's margin, and the other kept."""
    flat[[a, b]] = flat[[b, a]]
