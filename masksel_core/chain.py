"""Mask specs and chains: from `"pixel-any"` or `"jpeg-xor+pixel-any"` to a `MaskChain`.

Spec grammar (CLI `--mask`, REST `mask_type`, `TrainConfig.mask_type`): stages joined by `+`.
- a select mask: `channel-any`, `channel-xor`, `pixel-any`, `pixel-xor`, `block-any`;
- `jpeg-xor`: extend every channel to JPEG versions (qualities 90, 70, 50, 30, 10), pick one
  version per channel (channel-xor, one group per channel) and merge them back;
- `thumb-xor`: the same with thumbnails at scales 1, 1/2, 1/4;
- `jpeg-xor` and `thumb-xor` may only come first, and be followed by more select masks, e.g.
  `jpeg-xor+pixel-any` (the paper's Sec. 4.4 chain extend -> channel-xor -> merge -> pixel-any).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from . import adam_kernel, kernels
from .masks import SELECT_STAGES, ChannelXor, Merge, SelectStage, Shape, Stage, batch_array, exponential_draws
from .operators import DEFAULT_JPEG_QUALITIES, DEFAULT_THUMB_SCALES, Extend

if TYPE_CHECKING:
    from .optim import MaskAdam

EXTEND_SPECS = {"jpeg-xor": ("jpeg", DEFAULT_JPEG_QUALITIES), "thumb-xor": ("thumb", DEFAULT_THUMB_SCALES)}
MASK_NAMES = (*SELECT_STAGES, *EXTEND_SPECS)


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
    return parts


class MaskChain(nn.Module):
    """Stages applied in order to a batch; `Q` is the sum of the final cost map."""

    def __init__(self, spec: str, input_shape: Shape, stages: Sequence[Stage], extend: Extend | None) -> None:
        super().__init__()
        self.spec = spec
        self.input_shape: Shape = tuple(int(s) for s in input_shape)  # type: ignore[assignment]
        self.extend = extend
        self.stages = nn.ModuleList(stages)
        self.register_buffer("base_cost", self._base_cost(extend.version_costs() if extend else torch.ones(1)))

    def __getstate__(self) -> dict:
        """Copies and pickles leave the per-chain step plan behind (it holds this chain's stages)."""
        state = self.__dict__.copy()
        state.pop("_step_plan", None)
        return state

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
        return tuple(self.base_cost.shape)  # type: ignore[return-value]

    @property
    def output_shape(self) -> Shape:
        return self.stages[-1].output_shape if len(self.stages) else self.stage_input_shape

    @property
    def select_stages(self) -> list[SelectStage]:
        return [s for s in self.stages if isinstance(s, SelectStage)]

    def forward(self, x: torch.Tensor, *, tau: float, explore: bool,  # type: ignore[override]
                generator: torch.Generator | None = None, reference: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """`x` is the (already extended) batch `(B, C', H, W)`; returns the masked batch and Q.

        Where the masks train, the whole chain is one autograd node with a hand-written backward
        (`_FusedChain`): same values, same random draws, same gradients (to rounding) as the graph of
        the stages' own `forward`, which `reference=True` builds instead (the tests compare the two).
        """
        logits = [stage.logits for stage in self.select_stages]
        if not reference and torch.is_grad_enabled() and any(p.requires_grad for p in logits):
            return _FusedChain.apply(self, x, tau, explore, generator, *logits)
        cost = self.base_cost
        for stage in self.stages:
            x, cost = stage(x, cost, tau=tau, explore=explore, generator=generator)
        return x, cost.sum()

    def forward_manual(self, x: torch.Tensor, *, tau: float, explore: bool, generator: torch.Generator | None = None,
                       track: bool = True) -> tuple[torch.Tensor, torch.Tensor, list]:
        """The training loop's forward: `(masked, q, saved)` with no graph through the masks.

        With `track`, `masked` is a leaf that requires a gradient, so the network's backward leaves
        `dL/dmasked` in `masked.grad` (without, the caller gets it another way: `input_grad.InputGradTap`);
        `backward_manual(saved, dL/dmasked, lam)` then turns it (and `lam * Q`, whose gradient is known in
        closed form) into the logits' gradients. Same values, random draws and gradients (to rounding) as
        `forward`, without the chain's autograd nodes or a custom Function, whose fixed costs are most of
        what a masked step pays over a plain one on small inputs. `q` carries no gradient: it is for the
        logged loss, not the back-propagated one.
        """
        if not track and kernels.usable(x):
            plan = self.__dict__.get("_step_plan")
            if plan is None:
                plan = self.__dict__["_step_plan"] = _StepPlan(self)
            if plan.kind is not None:
                return plan.forward(x, tau=tau, explore=explore, generator=generator)
        with torch.no_grad():
            x, cost, saved = _forward_stages(self.stages, x, self.base_cost, tau=tau, explore=explore,
                                             generator=generator, batch_grad=False)
            q = cost.sum()
        return x.requires_grad_(track), q, saved

    def backward_manual(self, saved: list | _PlanSaved, grad_x: torch.Tensor | None, lam: float, *,
                        optimizer: MaskAdam | None = None) -> bool:
        """Accumulate into the logits' `.grad` the gradient of `L + lam * Q`, given `grad_x = dL/dmasked` of
        `forward_manual`'s `masked` (zeros where the loss does not depend on it).

        With `optimizer` (the masks' own), where the compiled kernels ran the forward and the optimiser steps
        with its compiled Adam, the gradient is not stored but applied: the optimiser's step is taken in the
        same call and True returned; False means the gradient is in `.grad` and the step is the caller's.
        """
        if grad_x is None:
            raise TypeError("backward_manual needs dL/dmasked: pass torch.zeros_like(masked) where the loss does "
                            "not depend on the masked batch")
        if (optimizer is not None and isinstance(saved, _PlanSaved)
                and saved.plan.backward_step(saved.saved, grad_x, float(lam), optimizer)):
            return True
        if isinstance(saved, _PlanSaved):
            stages, grads = saved.plan.selects, saved.plan.backward(saved.saved, grad_x, float(lam))
        else:
            stages = self.select_stages
            _, grads = _backward_stages(self.stages, saved, grad_x, float(lam), need_batch=False)
        for stage, grad in zip(stages, grads, strict=True):
            if grad is not None:
                logits = stage.logits
                logits.grad = grad if logits.grad is None else logits.grad + grad
        return False

    @torch.no_grad()
    def fraction(self) -> float:
        """Q of the discrete (noise-free) mask: the transferred share, priced."""
        cost = self.base_cost
        dummy = torch.zeros(1, *self.stage_input_shape, device=cost.device)
        for stage in self.stages:
            dummy, cost = stage(dummy, cost, tau=1.0, explore=False)
        return float(cost.sum())

    def selected(self) -> np.ndarray:
        """The last select stage's discrete mask, in the contract's shape for its type."""
        return self.select_stages[-1].selected()

    def describe(self) -> list[dict[str, object]]:
        """Every stage, for `mask.json` of chains."""
        out: list[dict[str, object]] = []
        if self.extend is not None:
            out.append({"mask_type": "extend", "kind": self.extend.kind, "levels": list(self.extend.levels),
                        "costs": self.version_costs().tolist()})
        out.extend(stage.describe() for stage in self.stages)
        return out


class _FusedChain(torch.autograd.Function):
    """A mask chain as one autograd node: `forward` runs the stages without a graph, `backward` runs their
    `backward_from` in reverse order.

    Why: the chain's arithmetic is tiny (a few values per input pixel), but as a graph it is some 15 nodes
    forward and back, and on small inputs each node's fixed cost is what a masked training step pays over a
    plain one (`benchmarks/train_overhead.py`). One node with a few fused tensor ops costs a fraction of that.
    """

    @staticmethod
    def forward(ctx, chain: MaskChain, x: torch.Tensor, tau: float, explore: bool,  # type: ignore[override]
                generator: torch.Generator | None, *logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, cost, saved = _forward_stages(chain.stages, x, chain.base_cost, tau=tau, explore=explore,
                                         generator=generator, batch_grad=ctx.needs_input_grad[1])
        ctx.chain, ctx.saved = chain, saved
        return x, cost.sum()

    @staticmethod
    def backward(ctx, grad_x: torch.Tensor, grad_q: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        saved, ctx.saved = ctx.saved, None  # free the batch-sized tensors as soon as possible
        need_batch = ctx.needs_input_grad[1]
        grad_x, grads = _backward_stages(ctx.chain.stages, saved, grad_x, grad_q, need_batch=need_batch)
        return (None, grad_x if need_batch else None, None, None, None, *grads)


class _StepPlan:
    """The training step's masks, for the chains the compiled kernels run whole (one select stage; `jpeg-xor` or
    `thumb-xor` alone; either of them followed by one two-class stage), with the dispatch decided once per chain:
    each step is then a few Python calls around one kernel call per direction. `kind` is None for other chains
    (they go through `_forward_stages`)."""

    def __init__(self, chain: MaskChain) -> None:
        self.chain, self.stages = chain, tuple(chain.stages)
        self.selects = tuple(s for s in self.stages if isinstance(s, SelectStage))
        first = self.stages[0]
        if len(self.stages) == 1 and isinstance(first, SelectStage):
            self.kind: str | None = "stage"
        elif (len(self.stages) == 2 and isinstance(first, ChannelXor) and isinstance(self.stages[1], Merge)
              and self.stages[1].groups == first.groups):
            self.kind = "merged"
        elif _is_paper_chain(self.stages):
            self.kind = "paper"
        else:
            self.kind = None

    def forward(self, x: torch.Tensor, *, tau: float, explore: bool,
                generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor, _PlanSaved]:
        cost = self.chain._buffers["base_cost"]  # the buffer itself, without `Module.__getattr__`
        if self.kind == "stage":
            out, _, q, saved = self.stages[0].forward_kernel(x, cost, tau=tau, explore=explore, generator=generator)
        elif self.kind == "merged":
            out, _, q, saved = self.stages[0].forward_merged_kernel(x, cost, tau=tau, explore=explore,
                                                                    generator=generator)
        else:
            out, _, q, saved = _forward_kernel_chain(self.stages, x, cost, tau=tau, explore=explore,
                                                     generator=generator)
            saved = saved[0].saved
        # Q as a 0-dim float32 tensor (as `cost.sum()` gives it) without a tensor operation.
        return out, torch.from_numpy(np.asarray(q, dtype=np.float32)), _PlanSaved(self, saved)

    def backward(self, saved: object, grad_x: torch.Tensor, lam: float) -> list[torch.Tensor | None]:
        if self.kind == "stage":
            return [self.stages[0].backward_kernel(saved, grad_x, lam, need_inputs=False)[2]]
        if self.kind == "merged":
            return [self.stages[0].backward_merged(saved, grad_x, lam)]
        return _backward_kernel_chain(self.stages, saved, grad_x, lam)


    def backward_step(self, saved: object, grad_x: torch.Tensor, lam: float, optimizer: MaskAdam) -> bool:
        """The logits' gradients and `optimizer`'s step on them in one compiled call, where `optimizer` holds
        exactly this chain's trainable logits, steps them with its compiled Adam and no gradient is pending;
        False, with nothing done, otherwise."""
        if len(optimizer.params) != len(self.selects):
            return False
        states = []
        for stage in self.selects:
            logits = stage.logits
            state = optimizer.compiled_state(logits) if logits.grad is None and logits.requires_grad else None
            if state is None:
                return False
            states.append(state)
        hyper = optimizer.compiled_hyperparameters()
        if hyper is None:
            return False
        if self.kind == "stage":
            self.stages[0].backward_step(saved, grad_x, lam, states[0], hyper)
        elif self.kind == "merged":
            self.stages[0].backward_merged_step(saved, grad_x, lam, states[0], hyper)
        else:
            _backward_step_kernel_chain(self.stages, saved, grad_x, lam, states, hyper)
        return True


class _PlanSaved:
    """What `forward_manual` keeps for `backward_manual` when a `_StepPlan` ran the step."""

    __slots__ = ("plan", "saved")

    def __init__(self, plan: _StepPlan, saved: object) -> None:
        self.plan, self.saved = plan, saved


class _KernelChain:
    """What `_forward_stages` keeps when the whole chain ran as one compiled kernel
    (`kernels.merged_any_forward`); the other stages' slots hold None."""

    __slots__ = ("saved",)

    def __init__(self, saved: tuple) -> None:
        self.saved = saved


def _is_paper_chain(stages: tuple[Stage, ...]) -> bool:
    """`jpeg-xor` / `thumb-xor` followed by one two-class stage (e.g. `jpeg-xor+pixel-any`, paper Sec. 4.4)."""
    return (len(stages) == 3 and isinstance(stages[0], ChannelXor) and isinstance(stages[1], Merge)
            and stages[1].groups == stages[0].groups and isinstance(stages[2], SelectStage)
            and stages[2].kernel_family == "any")


def _forward_kernel_chain(stages: tuple[Stage, ...], x: torch.Tensor, cost: torch.Tensor, *, tau: float,
                          explore: bool, generator: torch.Generator | None) -> tuple[torch.Tensor, np.ndarray, float,
                                                                                     list]:
    """The paper chain by one compiled kernel: `(masked, the cost map's values, Q, saved per stage)`."""
    xor, _, select = stages
    priced_x = xor.priced_array(cost)
    out, out_cost, q, *kept = kernels.merged_any_forward(
        xor.logits_array(), exponential_draws(xor.logits, explore, generator), select.logits_array(),
        select.kernel_draws(explore, generator), explore, float(tau), *select.value_maps(), select.value_weights(),
        x.numpy(), priced_x, xor.rescale, select.rescale)
    return torch.from_numpy(out), out_cost, q, [_KernelChain((x, priced_x, float(tau), *kept)), None, None]


def _backward_kernel_chain(stages: tuple[Stage, ...], saved: tuple, grad_x: torch.Tensor,
                           grad_cost: torch.Tensor | float) -> list[torch.Tensor | None]:
    xor, _, select = stages
    x, priced_x, tau, pick, soft_x, soft_p, selected, priced_p, scale_x, scale_p = saved
    grad_out = batch_array(grad_x, x.shape[:1] + select.input_shape)
    grad_xor, grad_select = kernels.merged_any_backward(
        x.numpy(), grad_out, float(grad_cost), pick, soft_x, soft_p, selected, priced_p, priced_x,
        select.value_weights(), *select.value_maps(), tau, scale_x, scale_p, select.logits_array())
    return [torch.from_numpy(grad_xor) if xor.logits.requires_grad else None,
            torch.from_numpy(grad_select) if select.logits.requires_grad else None]


def _backward_step_kernel_chain(stages: tuple[Stage, ...], saved: tuple, grad_x: torch.Tensor, lam: float,
                                states: list[tuple], hyper: tuple) -> None:
    """`_backward_kernel_chain` and the optimiser's step on both stages' logits, in one compiled call."""
    xor, _, select = stages
    x, priced_x, tau, pick, soft_x, soft_p, selected, priced_p, scale_x, scale_p = saved
    grad_out = batch_array(grad_x, x.shape[:1] + select.input_shape)
    adam_kernel.merged_any_backward_step(
        x.numpy(), grad_out, lam, pick, soft_x, soft_p, selected, priced_p, priced_x, select.value_weights(),
        *select.value_maps(), tau, scale_x, scale_p, xor.logits_array(), select.logits_array(), *states[0], *states[1],
        *hyper)


class _MergedPair:
    """What `_forward_stages` keeps for a `channel-xor` and the `merge` after it run as one
    (`ChannelXor.forward_merged`); the merge's own slot holds None."""

    __slots__ = ("saved",)

    def __init__(self, saved: tuple) -> None:
        self.saved = saved


def _forward_stages(stages: Sequence[Stage], x: torch.Tensor, cost: torch.Tensor, *, tau: float, explore: bool,
                    generator: torch.Generator | None, batch_grad: bool) -> tuple[torch.Tensor, torch.Tensor, list]:
    """The stages' `forward_saving` in order (no graph): the output batch and cost map, and one saved entry
    per stage. A `channel-xor` followed by a `merge` of its groups runs as one (`forward_merged`) where no
    gradient has to pass through it to the batch or to an earlier stage (it only gives its logits')."""
    stages = tuple(stages)  # not a ModuleList: slicing one builds a new Module
    if not batch_grad and kernels.usable(x) and _is_paper_chain(stages):
        out, out_cost, _, saved = _forward_kernel_chain(stages, x, cost, tau=tau, explore=explore, generator=generator)
        return out, torch.from_numpy(out_cost).view(out.shape[1:]), saved
    saved: list = []
    i = 0
    while i < len(stages):
        stage = stages[i]
        after = stages[i + 1] if i + 1 < len(stages) else None
        if (isinstance(stage, ChannelXor) and isinstance(after, Merge) and after.groups == stage.groups
                and not batch_grad and not any(s.selects for s in stages[:i])):
            x, cost, kept = stage.forward_merged(x, cost, tau=tau, explore=explore, generator=generator)
            saved += [_MergedPair(kept), None]
            i += 2
            continue
        x, cost, kept = stage.forward_saving(x, cost, tau=tau, explore=explore, generator=generator)
        saved.append(kept)
        i += 1
    return x, cost, saved


def _backward_stages(stages: Sequence[Stage], saved: list, grad_x: torch.Tensor, grad_cost: torch.Tensor | float, *,
                     need_batch: bool) -> tuple[torch.Tensor | None, list[torch.Tensor | None]]:
    """The stages' `backward_from` in reverse order: the batch's gradient (when `need_batch`) and each select
    stage's logits gradient, in stage order. `grad_cost` is Q's weight in the loss (a number or 0-dim)."""
    stages = tuple(stages)
    if isinstance(saved[0], _KernelChain):  # nothing before the chain needs a gradient (see _forward_stages)
        return None, _backward_kernel_chain(stages, saved[0].saved, grad_x, grad_cost)
    # A stage hands gradients on to its inputs only where an earlier stage (or the batch) needs them.
    first = next((i for i, stage in enumerate(stages) if stage.selects and stage.logits.requires_grad), len(stages))
    grads: list[torch.Tensor | None] = []
    for i in range(len(stages) - 1, -1, -1):
        if saved[i] is None:  # a merge run together with the channel-xor before it
            continue
        if i < first and not need_batch:  # before the first trainable stage nothing needs a gradient
            if stages[i].selects:
                grads.append(None)
            continue
        if isinstance(saved[i], _MergedPair):  # the first stage: nothing before it needs a gradient
            grads.append(stages[i].backward_merged(saved[i].saved, grad_x, grad_cost))
            grad_x = grad_cost = None
            continue
        grad_x, grad_cost, grad_logits = stages[i].backward_from(saved[i], grad_x, grad_cost,
                                                                 need_inputs=need_batch or i > first)
        if stages[i].selects:
            grads.append(grad_logits)
    grads.reverse()
    return grad_x, grads


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
            xor = SELECT_STAGES["channel-xor"](shape, groups=channels, init_logit=init_logit, costs=None, **common)
            stages += [xor, Merge(shape, groups=channels)]
            shape = stages[-1].output_shape
            continue
        extra = {"grid": grid} if part == "block-any" else {}
        stage = SELECT_STAGES[part](shape, init_logit=init_logit, costs=costs, **extra, **common)
        stages.append(stage)
        shape = stage.output_shape
    return MaskChain(spec, input_shape, stages, extend)
