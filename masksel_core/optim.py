"""Adam for the masks, stepped with as few calls as possible.

The masks are a few small tensors, so their optimiser step is all per-call overhead: `Optimizer.step`
spends most of its time in Python (hooks, profiler records, grouping tensors by device) around a
fused kernel that takes microseconds. `MaskAdam` keeps a `torch.optim.Adam(fused=True)` for the
state (so checkpoints hold the same `state_dict` as before and a run resumes bit for bit) and, once
that state exists, steps it on the CPU with one compiled call per mask (`adam_kernel.adam_step`,
equal to torch's fused kernel bit for bit), elsewhere with the very kernels Adam's `step` would call.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from . import adam_kernel, kernels


class MaskAdam:
    """`torch.optim.Adam(params, lr=lr, fused=True)` whose `step` also clears the gradients.

    Clearing them after the step (rather than in `zero_grad` before the next backward) lets the next
    backward hand its gradient buffers over as they are; nothing else reads them in between.
    """

    def __init__(self, params: Iterable[torch.nn.Parameter], *, lr: float) -> None:
        self.adam = torch.optim.Adam(params, lr=lr, fused=True)
        self.params = [p for group in self.adam.param_groups for p in group["params"]]
        self._state_lists: tuple[list[torch.Tensor], ...] | None = None  # (steps, exp_avgs, exp_avg_sqs)
        # Per parameter (its data pointer, then param, exp_avg, exp_avg_sq and step as flat arrays sharing their
        # memory) where the compiled step applies; () where it does not; None until looked at.
        self._arrays: list[tuple] | tuple[()] | None = None
        self._index = {id(p): i for i, p in enumerate(self.params)}  # a parameter's place in `params`

    @torch.no_grad()
    def step(self) -> None:
        grads = [p.grad for p in self.params]
        if len(self.adam.state) < len(self.params) or any(g is None for g in grads):
            self.adam.step()  # the first step creates the state as Adam does
            self._state_lists = self._arrays = None
        else:
            if self._arrays is None:
                self._arrays = self._compiled_arrays()
            if self._arrays:
                self._compiled_step(grads)
            else:
                self._fused_step(grads)
        for p in self.params:
            p.grad = None

    def _fused_step(self, grads: list[torch.Tensor]) -> None:
        if self._state_lists is None:  # the state's tensors are updated in place: look them up once
            states = [self.adam.state[p] for p in self.params]
            self._state_lists = tuple([s[key] for s in states] for key in ("step", "exp_avg", "exp_avg_sq"))
        steps, exp_avgs, exp_avg_sqs = self._state_lists
        group = self.adam.param_groups[0]
        torch._foreach_add_(steps, 1)
        torch._fused_adam_(self.params, grads, exp_avgs, exp_avg_sqs, [], steps,  # type: ignore[arg-type]
                           amsgrad=False, lr=group["lr"], beta1=group["betas"][0], beta2=group["betas"][1],
                           weight_decay=group["weight_decay"], eps=group["eps"], maximize=False)

    def _compiled_step(self, grads: list[torch.Tensor]) -> None:
        arrays = self._arrays
        assert arrays
        for p, grad, entry in zip(self.params, grads, arrays, strict=True):
            if (p.data_ptr() != entry[0] or grad.dtype != torch.float32 or grad.device.type != "cpu"
                    or not grad.is_contiguous()):
                self._arrays = ()  # moved, replaced or an odd gradient: torch's step from now on
                return self._fused_step(grads)
        group = self.adam.param_groups[0]
        if not _compiled_options(group):  # changed since the arrays were looked up
            self._arrays = ()
            return self._fused_step(grads)
        lr, (beta1, beta2), eps = float(group["lr"]), group["betas"], group["eps"]
        for grad, (_, param, exp_avg, exp_avg_sq, step) in zip(grads, arrays, strict=True):
            adam_kernel.adam_step(param, grad.numpy().reshape(-1), exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps,
                                  adam_kernel.VECTOR_WIDTH)
        return None

    def _compiled_arrays(self) -> list[tuple] | tuple[()]:
        """The arrays `_compiled_step` works on, or () where torch's step must run: not on the CPU in float32,
        no compiled kernels or none that match torch's on this CPU, or options they do not implement."""
        if (not kernels.ENABLED or adam_kernel.VECTOR_WIDTH is None or len(self.adam.param_groups) != 1
                or not _compiled_options(self.adam.param_groups[0])):
            return ()
        arrays = []
        for p in self.params:
            state = self.adam.state.get(p)
            if state is None or p.device.type != "cpu":
                return ()
            tensors = (p, state["exp_avg"], state["exp_avg_sq"], state["step"])
            if any(t.dtype != torch.float32 or t.device.type != "cpu" or not t.is_contiguous() for t in tensors):
                return ()
            arrays.append((p.data_ptr(), *(t.detach().numpy().reshape(-1) for t in tensors)))
        return arrays

    def compiled_state(self, param: torch.nn.Parameter) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """`(exp_avg, exp_avg_sq, step)` of `param` as flat arrays, for a caller that computes the gradient in
        a compiled kernel and steps with `adam_kernel.adam_step` in the same call (the training step's plan);
        None where this optimiser's own step must run (torch's, or before its state exists)."""
        if self._arrays is None and self.adam.state:
            self._arrays = self._compiled_arrays()
        index = self._index.get(id(param)) if self._arrays else None
        entry = self._arrays[index] if index is not None else None
        if entry is None or entry[0] != param.data_ptr():
            return None
        return entry[2], entry[3], entry[4]

    def compiled_hyperparameters(self) -> tuple[float, float, float, float, int] | None:
        """`(lr, beta1, beta2, eps, vector width)` for `adam_kernel.adam_step`; None (take `step()`) where the
        options were changed since to ones it does not implement."""
        group = self.adam.param_groups[0]
        if not _compiled_options(group):
            self._arrays = ()
            return None
        return float(group["lr"]), group["betas"][0], group["betas"][1], group["eps"], adam_kernel.VECTOR_WIDTH

    def state_dict(self) -> dict[str, Any]:
        return self.adam.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.adam.load_state_dict(state)
        self._state_lists = self._arrays = None


def _compiled_options(group: dict[str, Any]) -> bool:
    """Whether `adam_kernel.adam_step` implements this parameter group's options (plain Adam, beta1 > 0.5)."""
    return (group["weight_decay"] == 0 and not group["amsgrad"] and not group["maximize"] and group["betas"][0] > 0.5
            and not isinstance(group["lr"], torch.Tensor))
