"""Adam for the masks, stepped with one fused call.

The masks are a few small tensors, so their optimiser step is all per-call overhead: `Optimizer.step`
spends most of its time in Python (hooks, profiler records, grouping tensors by device) around a
fused kernel that takes microseconds. `MaskAdam` keeps a `torch.optim.Adam(fused=True)` for the
state (so checkpoints hold the same `state_dict` as before and a run resumes bit for bit) and, once
that state exists, calls the very kernels its `step` would call, with the same arguments.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


class MaskAdam:
    """`torch.optim.Adam(params, lr=lr, fused=True)` whose `step` also clears the gradients.

    Clearing them after the step (rather than in `zero_grad` before the next backward) lets the next
    backward hand its gradient buffers over as they are; nothing else reads them in between.
    """

    def __init__(self, params: Iterable[torch.nn.Parameter], *, lr: float) -> None:
        self.adam = torch.optim.Adam(params, lr=lr, fused=True)
        self.params = [p for group in self.adam.param_groups for p in group["params"]]
        self._state_lists: tuple[list[torch.Tensor], ...] | None = None  # (steps, exp_avgs, exp_avg_sqs)

    @torch.no_grad()
    def step(self) -> None:
        grads = [p.grad for p in self.params]
        if not self.adam.state or any(g is None for g in grads):
            self.adam.step()  # the first step creates the state as Adam does
            self._state_lists = None
        else:
            if self._state_lists is None:  # the state's tensors are updated in place: look them up once
                states = [self.adam.state[p] for p in self.params]
                self._state_lists = tuple([s[key] for s in states] for key in ("step", "exp_avg", "exp_avg_sq"))
            steps, exp_avgs, exp_avg_sqs = self._state_lists
            group = self.adam.param_groups[0]
            torch._foreach_add_(steps, 1)
            torch._fused_adam_(self.params, grads, exp_avgs, exp_avg_sqs, [], steps,  # type: ignore[arg-type]
                               amsgrad=False, lr=group["lr"], beta1=group["betas"][0], beta2=group["betas"][1],
                               weight_decay=group["weight_decay"], eps=group["eps"], maximize=False)
        for p in self.params:
            p.grad = None

    def state_dict(self) -> dict[str, Any]:
        return self.adam.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.adam.load_state_dict(state)
        self._state_lists = None
