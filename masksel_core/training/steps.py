"""One training step and one evaluation, written once for every phase of a run.

A step is what any PyTorch training step is: mask the batch, compute the task loss and Q,
`(task + lambda * Q).backward()`, step the network's and the masks' `torch.optim` optimisers.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..masks.chain import AnyMask
from .precision import autocast

EVAL_BATCH, EVAL_BYTES = 1024, 16 * 1024**2


def eval_batch(sample_shape: tuple[int, ...] | torch.Size) -> int:
    """Samples per evaluation batch: EVAL_BATCH, fewer for large inputs (at most about EVAL_BYTES of float32
    inputs, whose activations in a convolutional network are many times that)."""
    return max(16, min(EVAL_BATCH, EVAL_BYTES // (4 * math.prod(sample_shape))))


def adam(parameters: Iterable[nn.Parameter], lr: float, **options: bool) -> torch.optim.Adam:
    """`torch.optim.Adam` with its fused kernel, on the CPU as on a GPU. Why: the default on a CPU steps each tensor
    in several passes; the fused step is one. Measured on 2 cores, one torch thread, the step of an MLP of 5.7
    million parameters (36x35x35 inputs): 27.3 ms by default, 12.4 with `foreach`, 3.7 fused; the results agree to
    1e-8 (docs/design.md, "Fused Adam")."""
    return torch.optim.Adam(parameters, lr=lr, fused=True, **options)


@dataclass
class Splits:
    """The batches a run trains on and the validation part that decides for it (never the test split), in memory.

    `training.streamed.StreamedSplits` offers the same methods for a data set read from a store."""

    x_fit: torch.Tensor
    y_fit: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    batch_size: int = 128

    @property
    def device(self) -> torch.device:
        return self.x_fit.device

    @property
    def num_fit(self) -> int:
        return len(self.y_fit)

    @property
    def probe(self) -> torch.Tensor:
        """The validation inputs a dynamic mask's share and gallery are measured on: all of them."""
        return self.x_val

    @property
    def probe_labels(self) -> torch.Tensor:
        return self.y_val

    def fit_batches(self, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for idx in batches(self.num_fit, batch_size=self.batch_size, generator=generator, device=self.device):
            yield self.x_fit[idx], self.y_fit[idx]

    def val_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        step = eval_batch(self.x_val.shape[1:])
        for start in range(0, self.x_val.shape[0], step):
            yield self.x_val[start:start + step], self.y_val[start:start + step]

    def close(self) -> None:
        """Nothing to release in memory (a streamed split removes its local copy)."""


def batches(count: int, batch_size: int, *, generator: torch.Generator, device: torch.device | str = "cpu"
            ) -> Iterator[torch.Tensor]:
    """One epoch's shuffled batch indices; a last batch of one is left out (it breaks BatchNorm and says little),
    unless every batch is of one."""
    for idx in torch.randperm(count, device=device, generator=generator).split(batch_size):
        if len(idx) > 1 or batch_size == 1:
            yield idx


def masked_step(model: nn.Module, chain: AnyMask, loss_fn: nn.Module, x: torch.Tensor, y: torch.Tensor,
                optimizers: Sequence[torch.optim.Optimizer], *, lam: float, tau: float, explore: bool,
                generator: torch.Generator | None, dtype: torch.dtype | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of Algorithm 1's inner loop on `L = task + lam * Q`; returns `(task, Q)`, detached. The forward
    pass runs under autocast in `dtype` (None: fp32), the backward and the optimisers' steps outside it."""
    with autocast(x.device, dtype):
        masked, q = chain(x, tau=tau, explore=explore, generator=generator)  # (B, C, H, W), ()
        task = loss_fn(model(masked), y)
    for optimizer in optimizers:
        optimizer.zero_grad(set_to_none=True)
    (task + lam * q).backward()
    for optimizer in optimizers:
        optimizer.step()
    return task.detach(), q.detach()


def network_step(model: nn.Module, chain: AnyMask, loss_fn: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 optimizer: torch.optim.Optimizer, dtype: torch.dtype | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of the network alone on the batch as the chain's noise-free mask passes it."""
    with torch.no_grad():
        masked, q = chain(x, tau=1.0, explore=False)
    with autocast(x.device, dtype):
        task = loss_fn(model(masked), y)
    optimizer.zero_grad(set_to_none=True)
    task.backward()
    optimizer.step()
    return task.detach(), q


@torch.no_grad()
def evaluate(model: nn.Module, chain: AnyMask, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Accuracy and mean task loss through the discrete, noise-free mask, in float32 (the model as written)."""
    step = eval_batch(x.shape[1:])
    return evaluate_batches(model, chain, ((x[s:s + step], y[s:s + step]) for s in range(0, x.shape[0], step)),
                            device=x.device)


def evaluate_split(model: nn.Module, chain: AnyMask, splits: Splits, dtype: torch.dtype | None = None
                   ) -> tuple[float, float]:
    """`evaluate` on a run's validation split, wherever it lies, in the run's precision."""
    return evaluate_batches(model, chain, splits.val_batches(), device=splits.device, dtype=dtype)


@torch.no_grad()
def evaluate_batches(model: nn.Module, chain: AnyMask, parts: Iterable[tuple[torch.Tensor, torch.Tensor]], *,
                     device: torch.device, dtype: torch.dtype | None = None) -> tuple[float, float]:
    """`evaluate` over batches (a split in memory, or one read from a store)."""
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=device)
    loss = torch.zeros((), device=device)
    count = 0
    for x, y in parts:
        masked, _ = chain(x, tau=1.0, explore=False)
        with autocast(device, dtype):
            logits = model(masked).float()
        correct += (logits.argmax(dim=1) == y).sum()
        loss += nn.functional.cross_entropy(logits, y, reduction="sum")
        count += x.shape[0]
    count = max(count, 1)
    return int(correct) / count, float(loss) / count
