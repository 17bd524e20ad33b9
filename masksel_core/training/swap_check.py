"""The swap check that ends selection: single swaps of a kept element for a dropped one, where a network trained
briefly on the swapped mask reaches a lower validation loss.

Why: a gradient cannot tell near-copies apart. When two inputs carry the same information (a clean channel and a
noisy copy of it), the network learns to use both, each one's gradient is as large as the other's, and which copy
survives the rising lambda is chance (2 of 10 seeds found the clean one in the quality benchmark's channel task).
So each round
1. screens the (kept, dropped) pairs, the dropped among the `candidates` closest to being kept: where there are at
   most `SHORTLIST` pairs, each is scored by the validation loss of the network as it is with the two exchanged
   (one validation pass each, no training); with more, by the first-order change of that loss (one pass with
   backward gives the loss's gradient with respect to every element's selection, and exchanging kept k for
   dropped d changes the loss by about g[d] - g[k]);
2. trains a copy of the network for `trial_steps` on each of the `FINALISTS` best screened masks and on the
   current one (the same batches for all), and keeps the swap whose validation loss beats the current mask's by
   more than `TOLERANCE`; a swap never takes an element dearer than the one it drops, so Q never grows.
So a round costs a fixed number of passes, whatever the number of kept elements: a screen of every pair cost one
validation pass per pair (800 kept pixels x 4 candidates: 3,200 passes, 250 selection epochs' time). A trial is
`TRIAL_SHARE` of an epoch's batches, at least `TRIAL_MIN_STEPS` (all of them on small data, where an epoch is a few
batches and the trials are what tells a clean channel from its noisy copy).
The network itself is left as it is: finalize trains it on the mask that comes out.
"""
from __future__ import annotations

import copy
import itertools
import math

import torch
from torch import nn

from ..masks.budget import dropped_by_margin, two_class_stage
from ..masks.chain import AnyMask, MaskChain
from ..masks.stages import SelectStage
from .precision import autocast
from .steps import Splits, adam, evaluate_split, network_step

TOLERANCE = 0.005  # a relative improvement of the validation loss smaller than this is noise, not a better mask
SHORTLIST, FINALISTS = 8, 3
TRIAL_SHARE, TRIAL_MIN_STEPS = 0.05, 8


def swap_check(chain: AnyMask, model: nn.Module, splits: Splits, *, candidates: int, rounds: int, lr: float,
               seed: int, dtype: torch.dtype | None = None) -> list[tuple[int, int]]:
    """Up to `rounds` swaps in the last select stage (a two-class one); returns them as (dropped, taken) flat
    indices into the stage's selection, in the order they were made. The network runs in `dtype` (the run's)."""
    stage = two_class_stage(chain)
    if stage is None or candidates < 1 or rounds < 1:
        return []
    flat = stage.logits.data.view(-1, 2)  # (elements, select/drop)
    prices = stage.weights.reshape(-1)
    steps = trial_steps(splits.num_fit, splits.batch_size)
    tuned: dict[bytes, float] = {}  # by kept set: a round's current mask is the last round's winning trial

    def tuned_loss() -> float:
        """Validation loss of a copy of the network trained briefly on the current mask (same batches each call)."""
        key = (flat[:, 0] >= flat[:, 1]).cpu().numpy().tobytes()
        if key not in tuned:
            trial = copy.deepcopy(model)
            optimizer = adam(trial.parameters(), lr)
            generator = torch.Generator(device=splits.device).manual_seed(seed)
            loss_fn = nn.CrossEntropyLoss()
            trial.train()
            batches = splits.fit_batches(generator)
            try:
                for x, y in itertools.islice(batches, steps):
                    network_step(trial, chain, loss_fn, x, y, optimizer, dtype)
            finally:
                batches.close()  # a streamed split's readers stop here, whatever stopped the trial
            tuned[key] = evaluate_split(trial, chain, splits, dtype)[1]
        return tuned[key]

    swaps: list[tuple[int, int]] = []
    for _ in range(rounds):
        screened = sorted(_screen(chain, model, splits, stage, flat, prices, candidates, dtype))[:FINALISTS]
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


def trial_steps(num_fit: int, batch_size: int) -> int:
    """Batches a trial trains for: `TRIAL_SHARE` of an epoch, at least `TRIAL_MIN_STEPS`, at most an epoch."""
    epoch = max(1, math.ceil(num_fit / batch_size))
    return min(epoch, max(TRIAL_MIN_STEPS, math.ceil(TRIAL_SHARE * epoch)))


def _screen(chain: MaskChain, model: nn.Module, splits: Splits, stage: SelectStage, flat: torch.Tensor,
            prices: torch.Tensor, candidates: int, dtype: torch.dtype | None) -> list[tuple[float, tuple[int, int]]]:
    """(score, (kept, dropped)) of the allowed exchanges, lower is better: with at most `SHORTLIST` of them the
    validation loss of the untouched network after each; with more, the first-order change of that loss of the
    `FINALISTS` best (the trials decide among them, as among the exact scores)."""
    kept = torch.nonzero(flat[:, 0] >= flat[:, 1]).flatten()
    pool = dropped_by_margin(flat)[:candidates]
    allowed = prices[pool][None, :] <= prices[kept][:, None]  # (kept, pool): never a dearer element
    if int(allowed.sum()) > SHORTLIST:
        gradient = selection_gradient(chain, model, splits, stage, dtype).reshape(-1)
        change = gradient[pool][None, :] - gradient[kept][:, None]  # first-order change of the loss per exchange
        change = change.masked_fill(~allowed, math.inf).reshape(-1)
        order = torch.argsort(change, stable=True)[:FINALISTS].tolist()
        return [(float(change[i]), (int(kept[i // len(pool)]), int(pool[i % len(pool)]))) for i in order]
    scores = []
    with torch.no_grad():
        for row, column in torch.nonzero(allowed).tolist():
            out, taken = int(kept[row]), int(pool[column])
            _exchange(flat, out, taken)
            scores.append((evaluate_split(model, chain, splits, dtype)[1], (out, taken)))
            _exchange(flat, out, taken)
    return scores


def selection_gradient(chain: MaskChain, model: nn.Module, splits: Splits, stage: SelectStage,
                       dtype: torch.dtype | None = None) -> torch.Tensor:
    """The validation loss's gradient with respect to each element's selection (the stage's exported shape), at
    the noise-free mask: one pass with backward, the network's own gradients untouched."""
    model.eval()
    with torch.no_grad():
        selection = stage.sample(tau=1.0, explore=False)
    selection = selection.detach().clone().requires_grad_(True)
    total = torch.zeros_like(selection)
    with stage.holding(selection):
        for x, y in splits.val_batches():
            masked, _ = chain(x, tau=1.0, explore=False)
            with autocast(x.device, dtype):
                logits = model(masked)
            loss = nn.functional.cross_entropy(logits.float(), y, reduction="sum")
            total += torch.autograd.grad(loss, selection)[0]
    return total


def _exchange(flat: torch.Tensor, a: int, b: int) -> None:
    """Swap two elements' logits: the kept one is dropped with the other's margin, and the other kept."""
    flat[[a, b]] = flat[[b, a]]
