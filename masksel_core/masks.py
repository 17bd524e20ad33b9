"""Selection masks: which channels, values, cells or versions of the input are transferred.

A mask is a chain of stages (`MaskChain`). Each stage maps a batch `x` of shape `(B, C, H, W)`
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
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from . import adam_kernel, kernels
from .gumbel import exponential, perturb, straight_through, straight_through_select, two_class_difference

SELECT = 0
# What `Stage.backward_from` returns: the gradients of its input batch, its input cost map, and its logits.
StageGrads = tuple[torch.Tensor | None, torch.Tensor | float | None, torch.Tensor | None]
ANY_MASKS = ("channel-any", "pixel-any", "block-any")
XOR_MASKS = ("channel-xor", "pixel-xor")
Shape = tuple[int, int, int]


class Stage(nn.Module):
    """One step of a mask chain; `input_shape` and `output_shape` are `(C, H, W)`."""

    mask_type = ""
    selects = False

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

    def __getstate__(self) -> dict:
        """Copies and pickles leave the caches behind: they are keyed on tensors' identities and version
        counters, which a copy does not keep."""
        return {key: value for key, value in self.__dict__.items() if key not in _CACHES}

    def forward_saving(self, x: torch.Tensor, cost: torch.Tensor, *, tau: float, explore: bool,
                       generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, tuple]:
        """`forward` without building a graph (called under `no_grad`), plus what `backward_from` needs.

        With `backward_from`, the chain trains as one autograd node (`chain._FusedChain`) instead of the
        dozen small nodes `forward` builds: on small inputs a training step's mask overhead is mostly
        per-node cost, not arithmetic. `forward` stays the reference the tests check gradients against.
        """
        raise NotImplementedError

    def backward_from(self, saved: tuple, grad_x: torch.Tensor, grad_cost: torch.Tensor | float, *,
                      need_inputs: bool) -> StageGrads:
        """Gradients of `forward_saving`'s input batch and cost map (when `need_inputs`) and of the stage's
        logits (None for a stage without them, or whose logits are frozen), given those of its outputs.
        `grad_cost` may be a number or a 0-dim tensor (the gradient of `lam * Q` with `Q = cost.sum()`, the
        same for every value), or a map of the output's shape. Runs without a graph (no logits in it)."""
        raise NotImplementedError


class SelectStage(Stage):
    """A stage with learned logits; subclasses say how elements broadcast to `(C, H, W)`."""

    selects = True

    def __init__(self, input_shape: Shape, element_shape: Sequence[int], classes: int, *, init_sigma: float,
                 init_logit: float, costs: np.ndarray | torch.Tensor | None, rescale: bool,
                 generator: torch.Generator | None) -> None:
        super().__init__(input_shape)
        init = torch.zeros(*element_shape, classes)
        init[..., SELECT] = init_logit
        self.logits = nn.Parameter(init + torch.randn(init.shape, generator=generator) * init_sigma)
        weights = torch.ones(self.weight_shape) if costs is None else torch.as_tensor(costs, dtype=torch.float32)
        if tuple(weights.shape) != self.weight_shape:
            raise ValueError(f"{self.mask_type} costs must have shape {list(self.weight_shape)}, "
                             f"got {list(weights.shape)}")
        if not torch.isfinite(weights).all() or (weights < 0).any():
            raise ValueError(f"{self.mask_type} costs must be finite and non-negative")
        self.register_buffer("weights", weights)
        # d(l0 - l1)/d(l0, l1), for the two-class logits' gradient in one product. Not saved: a constant.
        self.register_buffer("class_sign", torch.tensor([1.0, -1.0]), persistent=False)
        self.register_buffer("unit", torch.ones(()), persistent=False)
        self.rescale = rescale

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
        selected = self.expand(self.sample(tau=tau, explore=explore, generator=generator))  # (C, H, W)
        masked = x * selected  # (B, C, H, W) * (C, H, W)
        if self.rescale:
            # As dropout does: keep the input's scale when only a share of it is kept.
            masked = masked / selected.detach().mean().clamp_min(1e-6)
        return masked, cost * selected * self.expand(self.weights)

    def draw(self, *, tau: float, explore: bool,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """`(hard, soft)` without a graph: the discrete selection in the exported shape (what `sample` returns
        in the forward pass) and the tempered probabilities its gradient comes from (`logits_grad` reads them).
        Draws the same random numbers as `sample`. Two-class masks; xor masks override this."""
        diff = two_class_difference(self.logits, explore=explore, generator=generator)
        # heaviside(diff, 1) is (diff >= 0) as a float, in one op.
        return torch.heaviside(diff, self.unit), torch.sigmoid(diff if tau == 1.0 else diff / tau)

    def logits_grad(self, grad: torch.Tensor, soft: torch.Tensor, tau: float) -> torch.Tensor:
        """The logits' gradient given that of the selection (exported shape), through the soft relaxation:
        `sigmoid((l0 - l1) / tau)` for two classes, so `(+g, -g) * soft * (1 - soft) / tau`."""
        grad_diff = torch.ops.aten.sigmoid_backward(grad, soft)  # grad * soft * (1 - soft), one op
        if tau != 1.0:
            grad_diff = grad_diff / tau
        return grad_diff.unsqueeze(-1) * self.class_sign

    def reduce(self, grad_map: torch.Tensor) -> torch.Tensor:
        """The adjoint of `expand`: a gradient over `(C, H, W)` summed back to the exported shape."""
        raise NotImplementedError

    def priced(self, cost: torch.Tensor) -> torch.Tensor:
        """`cost * expand(weights)`: each value's price once selected, without a graph.

        Kept between calls while `cost` is the same unchanged tensor (the chain's `base_cost`, which the
        first stage gets on every step) and the weights are unchanged: one op less per step. Weights that
        are all 1 (the default) are not multiplied at all."""
        weights = self._buffers["weights"]
        cached = self.__dict__.get("_priced_cache")  # (cost, its version, weights, their version, priced, array)
        if (cached is not None and cached[0] is cost and cached[1] == cost._version and cached[2] is weights
                and cached[3] == weights._version):
            return cached[4]
        priced = cost if self._unit_weights() else cost * self.expand(weights)
        self.__dict__["_priced_cache"] = (cost, cost._version, weights, weights._version, priced, None)
        return priced

    def priced_array(self, cost: torch.Tensor) -> np.ndarray:
        """`priced(cost)` as an array sharing its memory (for the compiled kernels, on the CPU), kept with it."""
        priced = self.priced(cost)
        cached = self.__dict__["_priced_cache"]
        if cached[5] is None:
            cached = self.__dict__["_priced_cache"] = (*cached[:5], priced.numpy())
        return cached[5]

    def _unit_weights(self) -> bool:
        """Whether every per-element cost weight is 1 (looked at again only when the weights change)."""
        weights = self.weights
        cached = self.__dict__.get("_unit_cache")  # (weights, their version, all ones?)
        if cached is None or cached[0] is not weights or cached[1] != weights._version:
            cached = (weights, weights._version, bool((weights == 1).all()))
            self.__dict__["_unit_cache"] = cached
        return cached[2]

    # The compiled kernels' view of a stage (`kernels.py`): which kernel family, and how the V values of one
    # sample map to the stage's elements (two-class masks) or to (group, class) (one-of-K masks).
    kernel_family = "any"

    def value_maps(self) -> tuple[np.ndarray, ...]:
        """For each of the C*H*W values of one sample, the flat index of the element it belongs to (two-class
        masks; one-of-K masks give (group, class) instead, `_value_maps`). Computed once."""
        maps = self.__dict__.get("_value_maps")
        if maps is None:
            maps = self.__dict__["_value_maps"] = self._value_maps()
        return maps

    def _value_maps(self) -> tuple[np.ndarray, ...]:
        count = int(np.prod(self.weight_shape))
        index = torch.arange(count, dtype=torch.float64).reshape(self.weight_shape)
        return (self.expand(index).reshape(-1).round().long().numpy(),)  # derived from `expand`

    def kernel_draws(self, explore: bool, generator: torch.Generator | None) -> np.ndarray:
        """The raw random numbers `draw` transforms, drawn the same way (so both paths see the same ones):
        uniforms for the two-class logistic noise, exponentials for one-of-K Gumbel noise; none when fixing."""
        if self.kernel_family == "xor":
            return exponential_draws(self.logits, explore, generator)
        if not explore:
            return _EMPTY_1D
        return torch.rand(self.logits.shape[:-1], generator=generator).numpy()

    def logits_array(self) -> np.ndarray:
        """The logits as a numpy array sharing their memory (the optimiser updates them in place)."""
        logits = self.logits
        cached = self.__dict__.get("_logits_view")  # (parameter, data pointer, array)
        pointer = logits.data_ptr()
        if cached is None or cached[0] is not logits or cached[1] != pointer:
            cached = self.__dict__["_logits_view"] = (logits, pointer, logits.detach().numpy())
        return cached[2]

    def value_weights(self) -> np.ndarray:
        """`expand(weights)` per value of one sample, kept while the weights are unchanged."""
        cached = self.__dict__.get("_weights_cache")  # (weights, their version, per value)
        if cached is None or cached[0] is not self.weights or cached[1] != self.weights._version:
            values = self.expand(self.weights).reshape(-1).contiguous().numpy()
            cached = self.__dict__["_weights_cache"] = (self.weights, self.weights._version, values)
        return cached[2]

    def forward_kernel(self, x: torch.Tensor, cost: torch.Tensor, *, tau: float, explore: bool,
                       generator: torch.Generator | None) -> tuple[torch.Tensor, np.ndarray, float, tuple]:
        """`forward_saving` by the compiled kernel: `(masked, the cost map's values, Q, saved)`; the cost map
        stays an array, which the training step's plan (`chain._StepPlan`) only needs the sum of."""
        draws = self.kernel_draws(explore, generator)
        priced = self.priced_array(cost)
        forward = kernels.any_forward if self.kernel_family == "any" else kernels.xor_forward
        out, out_cost, q, selected, soft, scale = forward(self.logits_array(), draws, explore, float(tau),
                                                          *self.value_maps(), x.numpy(), priced, self.rescale)
        return torch.from_numpy(out), out_cost, q, (_KERNEL, x, priced, selected, soft, float(tau), float(scale))

    def backward_kernel(self, saved: tuple, grad_x: torch.Tensor, grad_cost: torch.Tensor | float, *,
                         need_inputs: bool) -> StageGrads:
        _, x, priced, selected, soft, tau, scale = saved
        grad_x_np = batch_array(grad_x, x.shape)
        if isinstance(grad_cost, torch.Tensor) and grad_cost.dim():
            cost_number, cost_map = 0.0, grad_cost.contiguous().numpy().reshape(-1)
        else:
            cost_number, cost_map = float(grad_cost), _EMPTY_1D
        grad_logits = None
        if self.logits.requires_grad:
            backward = kernels.any_backward if self.kernel_family == "any" else kernels.xor_backward
            grad_logits = torch.from_numpy(backward(x.numpy(), grad_x_np, scale, priced, cost_number, cost_map, soft,
                                                    tau, *self.value_maps(), self.logits_array()))
        if not need_inputs:
            return None, None, grad_logits
        grad_x_in, grad_cost_in = kernels.inputs_grads(grad_x_np, scale, selected, self.value_weights(), cost_number,
                                                       cost_map)
        return (torch.from_numpy(grad_x_in).view(x.shape), torch.from_numpy(grad_cost_in).view(x.shape[1:]),
                grad_logits)

    def backward_step(self, saved: tuple, grad_x: torch.Tensor, lam: float, state: tuple, hyper: tuple) -> None:
        """`backward_kernel` for the logits (Q's weight `lam`) and the masks' optimiser's step on them, in one
        compiled call (`adam_kernel`): `state` is the logits' `(exp_avg, exp_avg_sq, step)`, `hyper` the
        optimiser's `compiled_hyperparameters()`."""
        _, x, priced, _, soft, tau, scale = saved
        step = (adam_kernel.two_class_backward_step if self.kernel_family == "any"
                else adam_kernel.one_of_k_backward_step)
        step(x.numpy(), batch_array(grad_x, x.shape), scale, priced, lam, soft, tau, *self.value_maps(),
             self.logits_array(), *state, *hyper)

    def forward_saving(self, x: torch.Tensor, cost: torch.Tensor, *, tau: float, explore: bool,
                       generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, tuple]:
        if kernels.usable(x):
            out, out_cost, _, saved = self.forward_kernel(x, cost, tau=tau, explore=explore, generator=generator)
            return out, torch.from_numpy(out_cost).view(cost.shape), saved
        hard, soft = self.draw(tau=tau, explore=explore, generator=generator)
        selected = self.expand(hard)  # (C, H, W)
        masked = x * selected
        scale = None
        if self.rescale:
            scale = selected.mean().clamp_min(1e-6)
            masked = masked / scale
        priced = self.priced(cost)  # each value's price once selected
        return masked, priced * selected, (x, priced, selected, soft, tau, scale)

    def backward_from(self, saved: tuple, grad_x: torch.Tensor, grad_cost: torch.Tensor | float, *,
                      need_inputs: bool) -> StageGrads:
        if saved[0] is _KERNEL:
            return self.backward_kernel(saved, grad_x, grad_cost, need_inputs=need_inputs)
        x, priced, selected, soft, tau, scale = saved
        if scale is not None:
            grad_x = grad_x / scale
        grad_logits = None
        if self.logits.requires_grad:
            # d(x * s)/ds summed over the batch, plus the cost term: dQ/ds = price (times dQ/dcost downstream).
            batch_term = (x * grad_x).sum(dim=0)
            grad_selected = (torch.add(batch_term, priced, alpha=grad_cost) if isinstance(grad_cost, float)
                             else torch.addcmul(batch_term, priced, grad_cost))
            grad_logits = self.logits_grad(self.reduce(grad_selected), soft, tau)
        if not need_inputs:
            return None, None, grad_logits
        weighted = selected if self._unit_weights() else selected * self.expand(self.weights)
        return grad_x * selected, grad_cost * weighted, grad_logits

    @torch.no_grad()
    def selected(self) -> np.ndarray:
        """The discrete selection (no noise), uint8, in the contract's shape."""
        return self.sample(tau=1.0, explore=False).round().to(torch.uint8).cpu().numpy()

    def describe(self) -> dict[str, object]:
        return {"mask_type": self.mask_type, "selected": self.selected().tolist()}

    @torch.no_grad()
    def prefer(self, indices: Sequence[int], init_logit: float) -> None:
        """Start with only these elements selected (flat indices into the exported selection).

        Called right after construction: the small random part of the initialisation is kept.
        """
        flat = self.logits.reshape(-1, 2)
        count = flat.shape[0]
        if any(i >= count for i in indices):
            raise ValueError(f"{self.mask_type} has {count} elements; init_selected index out of range")
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

    def reduce(self, grad_map: torch.Tensor) -> torch.Tensor:
        return grad_map.sum(dim=(1, 2))


class PixelAny(SelectStage):
    """`pixel-any`: keep or drop every input value on its own; logits `[C, H, W, 2]`."""

    mask_type = "pixel-any"

    def __init__(self, input_shape: Shape, **kwargs: object) -> None:
        super().__init__(input_shape, input_shape, 2, **kwargs)  # type: ignore[arg-type]

    def expand(self, selected: torch.Tensor) -> torch.Tensor:
        return selected

    def reduce(self, grad_map: torch.Tensor) -> torch.Tensor:
        return grad_map


class BlockAny(SelectStage):
    """`block-any`: keep or drop rectangular cells of a `GH x GW` grid per channel; logits `[C, GH, GW, 2]`.

    Cells split the image as evenly as possible (an 8-pixel side in 3 cells gives 3, 3, 2).
    """

    mask_type = "block-any"

    def __init__(self, input_shape: Shape, *, grid: tuple[int, int] = (3, 3), **kwargs: object) -> None:
        gh, gw = grid
        if gh > input_shape[1] or gw > input_shape[2]:
            raise ValueError(f"block grid {gh}x{gw} is finer than the {input_shape[1]}x{input_shape[2]} input")
        super().__init__(input_shape, (input_shape[0], gh, gw), 2, **kwargs)  # type: ignore[arg-type]
        self.grid = (gh, gw)
        self.register_buffer("row_cell", _cell_index(input_shape[1], gh))
        self.register_buffer("col_cell", _cell_index(input_shape[2], gw))
        # (H*W, GH*GW): 1 where a pixel lies in a cell; `reduce` is one product with it. Not saved: derived.
        cells = (self.row_cell[:, None] * gw + self.col_cell[None, :]).reshape(-1)
        self.register_buffer("cell_matrix", nn.functional.one_hot(cells, gh * gw).float(), persistent=False)

    def expand(self, selected: torch.Tensor) -> torch.Tensor:
        return selected[:, self.row_cell][:, :, self.col_cell]

    def reduce(self, grad_map: torch.Tensor) -> torch.Tensor:
        c, h, w = grad_map.shape
        return (grad_map.reshape(c, h * w) @ self.cell_matrix).reshape(c, *self.grid)

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "grid": list(self.grid)}


def _cell_index(size: int, cells: int) -> torch.Tensor:
    """For each of `size` positions, the cell (0..cells-1) it falls in."""
    return torch.div(torch.arange(size) * cells, size, rounding_mode="floor")


class ChannelXor(SelectStage):
    """`channel-xor`: exactly one channel per group is kept; logits `[G, V]` for `C = G * V` channels.

    One group (the default) is the paper's channel-xor; after an `extend` with V versions per
    channel, one group per original channel picks one version of each.
    """

    mask_type = "channel-xor"

    def __init__(self, input_shape: Shape, *, groups: int = 1, init: Sequence[int] | None = None,
                 init_logit: float = 1.0, **kwargs: object) -> None:
        channels = input_shape[0]
        if groups < 1 or channels % groups:
            raise ValueError(f"channel-xor: {channels} channels do not split into {groups} groups")
        self.groups, self.versions = groups, channels // groups
        super().__init__(input_shape, (groups,), self.versions, init_logit=0.0, **kwargs)  # type: ignore[arg-type]
        favoured = [0] * groups if init is None else list(init)
        with torch.no_grad():
            for group, version in enumerate(favoured):
                self.logits[group, version] += init_logit
        # Where group g's versions start among the channels (`forward_merged`). Not saved: derived.
        self.register_buffer("group_offsets", torch.arange(groups) * self.versions, persistent=False)

    @property
    def weight_shape(self) -> tuple[int, ...]:
        return (self.input_shape[0],)

    def sample(self, *, tau: float, explore: bool, generator: torch.Generator | None = None) -> torch.Tensor:
        one_hot = straight_through(self.logits, tau=tau, explore=explore, generator=generator)  # (G, V)
        return one_hot.reshape(-1)

    kernel_family = "xor"

    def _value_maps(self) -> tuple[np.ndarray, ...]:
        channel = np.repeat(np.arange(self.input_shape[0]), self.input_shape[1] * self.input_shape[2])
        return channel // self.versions, channel % self.versions  # (group, version) of every value

    def draw(self, *, tau: float, explore: bool,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        hard, soft = _one_hot_draw(self.logits, tau=tau, explore=explore, generator=generator)
        return hard.reshape(-1), soft

    def logits_grad(self, grad: torch.Tensor, soft: torch.Tensor, tau: float) -> torch.Tensor:
        return _softmax_grad(grad.reshape(soft.shape), soft, tau)

    def expand(self, selected: torch.Tensor) -> torch.Tensor:
        return selected[:, None, None].expand(self.input_shape)

    def reduce(self, grad_map: torch.Tensor) -> torch.Tensor:
        return grad_map.sum(dim=(1, 2))

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "groups": self.groups}

    def forward_merged(self, x: torch.Tensor, cost: torch.Tensor, *, tau: float, explore: bool,
                       generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, tuple]:
        """`forward_saving` of this stage and of a `Merge` of the same groups after it, in one: the kept
        version of each group is picked by index (`index_select`) instead of multiplying every version by
        its 0 or 1 and summing them. Same values (the sum added exact zeros), same random draws, fewer
        operations: the `extend -> channel-xor -> merge` of `jpeg-xor` and `thumb-xor`."""
        if kernels.usable(x):
            merged, merged_cost, _, saved = self.forward_merged_kernel(x, cost, tau=tau, explore=explore,
                                                                       generator=generator)
            return merged, torch.from_numpy(merged_cost).view(self.groups, *x.shape[2:]), saved
        perturbed = perturb(self.logits, explore=explore, generator=generator)
        picked = perturbed.argmax(dim=-1)  # (G,): the kept channel of each group
        if self.groups > 1:
            picked = picked + self.group_offsets
        soft = torch.softmax(perturbed if tau == 1.0 else perturbed / tau, dim=-1)
        merged = x.index_select(1, picked)
        scale = None
        if self.rescale:  # the kept share is one version in V, whatever is picked
            scale = 1.0 / self.versions
            merged = merged / scale
        priced = self.priced(cost)
        return merged, priced.index_select(0, picked), (x, priced, soft, tau, scale)

    def forward_merged_kernel(self, x: torch.Tensor, cost: torch.Tensor, *, tau: float, explore: bool,
                              generator: torch.Generator | None) -> tuple[torch.Tensor, np.ndarray, float, tuple]:
        """`forward_merged` by the compiled kernel: `(merged, the cost map's values, Q, saved)`."""
        priced = self.priced_array(cost)
        merged, merged_cost, q, soft, scale = kernels.merged_forward(
            self.logits_array(), exponential_draws(self.logits, explore, generator), explore, float(tau), x.numpy(),
            priced, self.rescale)
        return torch.from_numpy(merged), merged_cost, q, (_KERNEL, x, priced, soft, float(tau), float(scale))

    def backward_merged_step(self, saved: tuple, grad_merged: torch.Tensor, lam: float, state: tuple,
                             hyper: tuple) -> None:
        """`backward_merged` after `forward_merged_kernel` and the optimiser's step, in one compiled call
        (see `SelectStage.backward_step`)."""
        _, x, priced, soft, tau, scale = saved
        adam_kernel.merged_backward_step(x.numpy(), grad_merged.contiguous().numpy(), scale, priced, lam, soft, tau,
                                         self.logits_array(), *state, *hyper)

    def backward_merged(self, saved: tuple, grad_merged: torch.Tensor,
                        grad_cost: torch.Tensor | float) -> torch.Tensor | None:
        """The logits' gradient for `forward_merged`, given the merged batch's and cost map's gradients
        (`grad_cost` a number, 0-dim, or a `(G, H, W)` map). Every version's gradient, picked or not:
        `sum(x_version * grad_merged)` plus its price."""
        if not self.logits.requires_grad:
            return None
        if saved[0] is _KERNEL:
            _, x, priced, soft, tau, scale = saved
            cost_map = isinstance(grad_cost, torch.Tensor) and grad_cost.dim() > 0
            grads = kernels.merged_backward(x.numpy(), grad_merged.contiguous().numpy(), scale, priced,
                                            0.0 if cost_map else float(grad_cost),
                                            grad_cost.contiguous().numpy() if cost_map else _EMPTY_1D, soft, tau)
            return torch.from_numpy(grads)
        x, priced, soft, tau, scale = saved
        b, _, h, w = x.shape
        g, v = self.groups, self.versions
        # sum over samples and pixels of x_version * grad: a batch of (V, HW) @ (HW, 1) products, then a sum
        # over the batch (half the time of one broadcast product summed over two dimensions).
        batch = torch.bmm(x.reshape(b * g, v, h * w), grad_merged.reshape(b * g, h * w, 1)).view(b, g, v).sum(dim=0)
        if scale is not None:
            batch = batch / scale
        if isinstance(grad_cost, torch.Tensor) and grad_cost.dim():
            grad = batch + (priced.reshape(g, v, h * w) * grad_cost.reshape(g, 1, h * w)).sum(dim=-1)
        else:  # the same weight for every value: each version's total price, which changes with `priced` only
            cached = self.__dict__.get("_totals_cache")  # (priced, its version, totals)
            if cached is None or cached[0] is not priced or cached[1] != priced._version:
                cached = (priced, priced._version, priced.reshape(g, v, h * w).sum(dim=-1))
                self.__dict__["_totals_cache"] = cached
            grad = (torch.add(batch, cached[2], alpha=grad_cost) if isinstance(grad_cost, float)
                    else torch.addcmul(batch, cached[2], grad_cost))
        return _softmax_grad(grad, soft, tau)

    @torch.no_grad()
    def prefer(self, indices: Sequence[int], init_logit: float) -> None:
        """Favour version `indices[g]` in group g (e.g. only the best JPEG quality at first)."""
        if len(indices) != self.groups or any(i >= self.versions for i in indices):
            raise ValueError(f"channel-xor init_selected needs one index below {self.versions} per group "
                             f"({self.groups} groups)")
        self.logits[:, 0] -= init_logit  # undo the default preference
        self.logits[torch.arange(self.groups), torch.as_tensor(list(indices))] += init_logit


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

    kernel_family = "xor"

    def _value_maps(self) -> tuple[np.ndarray, ...]:
        c, h, w = self.input_shape
        return np.tile(np.arange(h * w), c), np.repeat(np.arange(c), h * w)  # (pixel, channel) of every value

    def draw(self, *, tau: float, explore: bool,
             generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        hard, soft = _one_hot_draw(self.logits, tau=tau, explore=explore, generator=generator)
        return hard.permute(2, 0, 1), soft

    def logits_grad(self, grad: torch.Tensor, soft: torch.Tensor, tau: float) -> torch.Tensor:
        return _softmax_grad(grad.permute(1, 2, 0), soft, tau)

    def expand(self, selected: torch.Tensor) -> torch.Tensor:
        return selected

    def reduce(self, grad_map: torch.Tensor) -> torch.Tensor:
        return grad_map


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

    def forward_saving(self, x: torch.Tensor, cost: torch.Tensor, *, tau: float, explore: bool,
                       generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, tuple]:
        merged, merged_cost = self.forward(x, cost, tau=tau, explore=explore, generator=generator)
        return merged, merged_cost, ()

    def backward_from(self, saved: tuple, grad_x: torch.Tensor, grad_cost: torch.Tensor | float, *,
                      need_inputs: bool) -> StageGrads:
        if not need_inputs:
            return None, None, None
        # A sum hands its gradient to every summand: repeat it over the versions of each group.
        c, h, w = self.input_shape
        b, versions = grad_x.shape[0], c // self.groups
        grad_x = grad_x[:, :, None].expand(b, self.groups, versions, h, w).reshape(b, c, h, w)
        if isinstance(grad_cost, torch.Tensor) and grad_cost.dim():
            grad_cost = grad_cost[:, None].expand(self.groups, versions, h, w).reshape(c, h, w)
        return grad_x, grad_cost, None

    def describe(self) -> dict[str, object]:
        return {"mask_type": "merge", "groups": self.groups}


_KERNEL = "kernel"  # marks what a stage saved when its forward ran as a compiled kernel
# Entries of a stage's __dict__ derived from its tensors, kept between steps (not copied, not pickled).
_CACHES = ("_priced_cache", "_unit_cache", "_weights_cache", "_logits_view", "_totals_cache", "_value_maps")
_EMPTY_1D = np.empty(0, np.float32)


def batch_array(grad: torch.Tensor, shape: torch.Size) -> np.ndarray:
    """A gradient for a batch of `shape` as a C-contiguous array for the kernels (broadcast and copied only where
    it is not one already)."""
    if grad.shape != shape or not grad.is_contiguous():
        grad = grad.expand(shape).contiguous()
    return grad.numpy()


def exponential_draws(logits: torch.Tensor, explore: bool, generator: torch.Generator | None) -> np.ndarray:
    """The exponential draws `gumbel.perturb` makes for one-of-K logits (the kernels take their log), or none
    in a fixation step."""
    if not explore:
        return _EMPTY_1D
    return exponential(logits.shape, device=logits.device, generator=generator).numpy()


def _one_hot_draw(logits: torch.Tensor, *, tau: float, explore: bool,
                  generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """`straight_through`'s forward value and tempered softmax, without a graph."""
    perturbed = perturb(logits, explore=explore, generator=generator)
    hard = torch.zeros_like(perturbed).scatter_(-1, perturbed.argmax(dim=-1, keepdim=True), 1.0)
    return hard, torch.softmax(perturbed if tau == 1.0 else perturbed / tau, dim=-1)


def _softmax_grad(grad: torch.Tensor, soft: torch.Tensor, tau: float) -> torch.Tensor:
    """The gradient of `softmax(z / tau)` over the last dimension with respect to `z`:
    `soft * (grad - sum(soft * grad)) / tau`, the first part as PyTorch's own softmax backward (one op)."""
    grad_z = torch._softmax_backward_data(grad, soft, -1, soft.dtype)
    return grad_z if tau == 1.0 else grad_z / tau


SELECT_STAGES: dict[str, type[SelectStage]] = {
    cls.mask_type: cls for cls in (ChannelAny, PixelAny, BlockAny, ChannelXor, PixelXor)
}
