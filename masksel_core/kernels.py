"""Compiled CPU kernels for the masks' training step: one call per stage and direction instead of a dozen ops.

On small inputs a masked training step pays mostly for the *number* of tensor operations the masks add (each
costs a few microseconds of dispatch however few values it touches), not for their arithmetic. These numba
kernels do a select stage's whole forward (threshold the logits, mask the batch, price the kept values) or
backward (batch term, price term, the relaxation's derivative) in one call over plain arrays. They mirror the
torch code in `masks.py` line by line: the random draws stay in torch (the same generator, the same numbers),
the decisions are made on the same float32 values, sums are accumulated in float64 (so gradients agree with the
torch path to rounding). `masks.py` uses them through `usable()`: CPU, float32, contiguous, and at most
`MAX_VALUES` values in the batch (beyond that the work is arithmetic, where torch's vectorised, multi-threaded
kernels win). Set `MASKSEL_KERNELS=0` to use the torch code everywhere (the tests run both, switching
`ENABLED`). The kernels take the raw uniform and exponential draws and apply the same transforms as the
torch code (`logit`, `log`) in float32, so decisions match it except at exact ties within one rounding.
Each stage makes a handful of Python calls: on small inputs those, not the arithmetic, are the cost.

Compiled once per machine and cached next to this file (numba's `cache=True`); about a second the first time.
"""
from __future__ import annotations

import math
import os

import numpy as np
import torch

try:
    from numba import njit
except ImportError:  # pragma: no cover - numba is in requirements.txt; without it the torch code runs
    njit = None

MAX_VALUES = 1 << 20  # batch values (B * C * H * W) up to which the kernels beat torch's own ops
ENABLED = njit is not None and os.environ.get("MASKSEL_KERNELS", "1") != "0"
_FLOAT32 = torch.float32


def usable(x: torch.Tensor) -> bool:
    """Whether the kernels may run on this batch (the stage's logits and costs live on its device, in its dtype):
    CPU, float32, contiguous, at most `MAX_VALUES` values, and no gradient wanted for the batch itself."""
    return (ENABLED and x.dtype is _FLOAT32 and x.device.type == "cpu" and x.numel() <= MAX_VALUES
            and x.is_contiguous() and not x.requires_grad)


def _compile(fn, **options):  # type: ignore[no-untyped-def]
    """`njit` with its on-disk cache where numba finds a writable place for it (next to this file or in the
    user's cache directory), without where it finds none (a read-only install): then it compiles per process."""
    if njit is None:
        return fn
    try:
        return njit(cache=True, nogil=True, **options)(fn)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return njit(nogil=True, **options)(fn)


def _jit(fn):  # type: ignore[no-untyped-def]
    return _compile(fn)


def _jit_sums(fn):  # type: ignore[no-untyped-def]
    """For gradient kernels: sums may be reassociated (and so vectorised); decisions never are."""
    return _compile(fn, fastmath={"reassoc", "contract"})


@_jit
def _logistic(u):  # type: ignore[no-untyped-def]
    """`logit(u)` of a uniform draw, clamped to [1e-7, 1 - 1e-7] as `torch.logit(u, eps=1e-7)` does."""
    u = min(max(u, np.float32(1e-7)), np.float32(1.0 - 1e-7))
    return np.float32(np.log(np.float32(u / np.float32(np.float32(1.0) - u))))


@_jit
def _gumbel_log(e):  # type: ignore[no-untyped-def]
    """`log(E)` of an exponential draw, clamped away from 0 as `gumbel.log_exponential` does."""
    return np.float32(np.log(max(e, np.float32(1.1754944e-38))))


@_jit
def _two_class(logits, u, explore, tau):  # type: ignore[no-untyped-def]
    """Per element of two-class logits (..., 2): the decision `(l0 - l1) + logit(u) >= 0` (noise when `explore`)
    in float32 as the torch code makes it, and the tempered sigmoid it is relaxed to."""
    lg = logits.reshape((logits.size // 2, 2))
    uv = u.reshape(u.size)
    n_elements = lg.shape[0]
    hard = np.empty(n_elements, np.float32)
    soft = np.empty(n_elements, np.float32)
    for e in range(n_elements):
        d = np.float32(lg[e, 0] - lg[e, 1])
        if explore:
            d = np.float32(d + _logistic(uv[e]))
        hard[e] = np.float32(1.0) if d >= 0 else np.float32(0.0)
        soft[e] = 1.0 / (1.0 + math.exp(-float(d) / tau))
    return hard, soft


@_jit
def _total(values):  # type: ignore[no-untyped-def]
    """The sum of a float32 array, accumulated in float64 (Q: the torch code's `sum` agrees to rounding)."""
    total = 0.0
    for v in values.reshape(values.size):
        total += v
    return total


@_jit
def _apply(selected, x, priced, rescale):  # type: ignore[no-untyped-def]
    """`x * selected` (divided by the kept share with `rescale`) per sample, in a new array like `x`; returns (it,
    out_cost (V,) = priced * selected, Q = the sum of out_cost, the divisor)."""
    n_values = selected.shape[0]
    n_samples = x.shape[0]
    out = np.empty_like(x)
    xv = x.reshape((n_samples, n_values))
    ov = out.reshape((n_samples, n_values))
    pv = priced.reshape(n_values)
    out_cost = np.empty(n_values, np.float32)
    kept = 0
    for v in range(n_values):
        out_cost[v] = pv[v] * selected[v]
        kept += int(selected[v])
    scale = np.float32(1.0)
    if rescale:
        scale = max(np.float32(kept) / np.float32(n_values), np.float32(1e-6))
    for i in range(n_samples):
        for v in range(n_values):
            m = xv[i, v] * selected[v]
            ov[i, v] = m / scale if rescale else m
    return out, out_cost, _total(out_cost), scale


@_jit
def any_forward(logits, u, explore, tau, element, x, priced, rescale):  # type: ignore[no-untyped-def]
    """Two-class select stage forward: `logits` (..., 2), `u` uniform draws (one per element) used when
    `explore`, `element` (V,) the element of each of a sample's V values, `x` (B, ...) with V values per sample,
    `priced` (V values). Returns (out like x, out_cost (V,), Q, selected (V,), soft (E,), rescale divisor)."""
    hard, soft = _two_class(logits, u, explore, tau)
    selected = np.empty(element.shape[0], np.float32)
    for v in range(element.shape[0]):
        selected[v] = hard[element[v]]
    out, out_cost, q, scale = _apply(selected, x, priced, rescale)
    return out, out_cost, q, selected, soft, scale


@_jit_sums
def _batch_term(x, grad_x, n_values):  # type: ignore[no-untyped-def]
    """sum over the batch of x * grad_x, per value, in float64."""
    n_samples = x.shape[0]
    xv = x.reshape((n_samples, n_values))
    gv = grad_x.reshape((n_samples, n_values))
    batch = np.zeros(n_values, np.float64)
    for i in range(n_samples):
        for v in range(n_values):
            batch[v] += xv[i, v] * gv[i, v]
    return batch


@_jit
def inputs_grads(grad_x, scale, selected, weight, grad_cost, grad_cost_map):  # type: ignore[no-untyped-def]
    """The gradients a select stage hands back to its input batch and cost map."""
    n_values = selected.shape[0]
    n_samples = grad_x.shape[0]
    gv = grad_x.reshape((n_samples, n_values))
    grad_x_in = np.empty((n_samples, n_values), np.float32)
    for i in range(n_samples):
        for v in range(n_values):
            grad_x_in[i, v] = gv[i, v] / scale * selected[v]
    grad_cost_in = np.empty(n_values, np.float32)
    for v in range(n_values):
        cost_weight = grad_cost_map[v] if grad_cost_map.shape[0] else grad_cost
        grad_cost_in[v] = cost_weight * (selected[v] * weight[v])
    return grad_x_in, grad_cost_in


@_jit
def any_backward(x, grad_x, scale, priced, grad_cost, grad_cost_map, soft, tau, element, logits):  # type: ignore[no-untyped-def]
    """Two-class select stage backward for the logits: returns their gradient, shaped like `logits` (..., 2).
    `grad_cost_map` (V,), or empty, then the number `grad_cost` is dQ's weight on every value."""
    n_values = element.shape[0]
    batch = _batch_term(x, grad_x, n_values)
    pv = priced.reshape(n_values)
    per_element = np.zeros(soft.shape[0], np.float64)
    for v in range(n_values):
        cost_weight = grad_cost_map[v] if grad_cost_map.shape[0] else grad_cost
        per_element[element[v]] += batch[v] / scale + pv[v] * cost_weight
    return _sigmoid_backward(per_element, soft, tau).reshape(logits.shape)


@_jit
def _sigmoid_backward(grad, soft, tau):  # type: ignore[no-untyped-def]
    """The two-class logits' gradient (E, 2), `(+g, -g) * soft * (1 - soft) / tau`, from the selection's `grad`."""
    grad_logits = np.empty((soft.shape[0], 2), np.float32)
    for e in range(soft.shape[0]):
        g = grad[e] * soft[e] * (1.0 - soft[e]) / tau
        grad_logits[e, 0] = g
        grad_logits[e, 1] = -g
    return grad_logits


@_jit
def _softmax_rows(logits, e, explore, tau):  # type: ignore[no-untyped-def]
    """Per row of one-of-K logits: the argmax of `logits - log(E)` (first of equals, as torch's) and the tempered
    softmax of it."""
    n_groups, n_classes = logits.shape
    pick = np.empty(n_groups, np.int64)
    soft = np.empty((n_groups, n_classes), np.float32)
    z = np.empty(n_classes, np.float32)
    for g in range(n_groups):
        best = 0
        for k in range(n_classes):
            z[k] = np.float32(logits[g, k] - _gumbel_log(e[g, k])) if explore else logits[g, k]
            if z[k] > z[best]:
                best = k
        pick[g] = best
        top = z[best] / tau
        total = 0.0
        for k in range(n_classes):
            total += math.exp(z[k] / tau - top)
        for k in range(n_classes):
            soft[g, k] = math.exp(z[k] / tau - top) / total
    return pick, soft


@_jit
def xor_forward(logits, e, explore, tau, group, klass, x, priced, rescale):  # type: ignore[no-untyped-def]
    """One-of-K select stage forward: `logits` (..., K), `e` exponential draws of the same shape (Gumbel noise
    `-log(E)`) used when `explore`; value v belongs to group `group[v]`, class `klass[v]`. Returns (out like x,
    out_cost (V,), Q, selected (V,), soft (N, K), rescale divisor)."""
    n_classes = logits.shape[-1]
    n_groups = logits.size // n_classes
    pick, soft = _softmax_rows(logits.reshape((n_groups, n_classes)), e.reshape((e.size // n_classes, n_classes)),
                               explore, tau)
    selected = np.empty(group.shape[0], np.float32)
    for v in range(group.shape[0]):
        selected[v] = np.float32(1.0) if pick[group[v]] == klass[v] else np.float32(0.0)
    out, out_cost, q, scale = _apply(selected, x, priced, rescale)
    return out, out_cost, q, selected, soft, scale


@_jit
def xor_backward(x, grad_x, scale, priced, grad_cost, grad_cost_map, soft, tau, group, klass, logits):  # type: ignore[no-untyped-def]
    """One-of-K select stage backward for the logits (softmax relaxation): returns their gradient, shaped like
    `logits` (..., K)."""
    n_values = group.shape[0]
    batch = _batch_term(x, grad_x, n_values)
    pv = priced.reshape(n_values)
    per_class = np.zeros(soft.shape, np.float64)
    for v in range(n_values):
        cost_weight = grad_cost_map[v] if grad_cost_map.shape[0] else grad_cost
        per_class[group[v], klass[v]] += batch[v] / scale + pv[v] * cost_weight
    return _softmax_backward(per_class, soft, tau).reshape(logits.shape)


@_jit
def merged_forward(logits, e, explore, tau, x, priced, rescale):  # type: ignore[no-untyped-def]
    """`channel-xor` over groups of K channels followed by the `merge` of each group, in one: `logits` (G, K),
    `x` (B, G*K, H, W), `priced` (G*K, H, W). Returns (out (B, G, H, W): each group's picked channel,
    out_cost (G, H*W), Q, soft (G, K), rescale divisor: one channel in K is kept whatever is picked)."""
    n_groups, n_classes = logits.shape
    pick, soft = _softmax_rows(logits, e.reshape((e.size // n_classes, n_classes)), explore, tau)
    n_samples = x.shape[0]
    n_pixels = x.size // (n_samples * n_groups * n_classes)
    xv = x.reshape((n_samples, n_groups * n_classes, n_pixels))
    out = np.empty((n_samples, n_groups, x.shape[2], x.shape[3]), np.float32)
    ov = out.reshape((n_samples, n_groups, n_pixels))
    pv = priced.reshape((n_groups * n_classes, n_pixels))
    scale = np.float32(1.0) / np.float32(n_classes) if rescale else np.float32(1.0)
    out_cost = np.empty((n_groups, n_pixels), np.float32)
    for g in range(n_groups):
        channel = g * n_classes + pick[g]
        for p in range(n_pixels):
            out_cost[g, p] = pv[channel, p]
        for i in range(n_samples):
            for p in range(n_pixels):
                ov[i, g, p] = xv[i, channel, p] / scale if rescale else xv[i, channel, p]
    return out, out_cost, _total(out_cost), soft, scale


@_jit_sums
def merged_backward(x, grad_merged, scale, priced, grad_cost, grad_cost_map, soft, tau):  # type: ignore[no-untyped-def]
    """Backward of `merged_forward` for the logits (G, K): every version's `sum(x_version * grad_merged) / scale`
    plus its price times dQ's weight (`grad_cost_map` (G, H, W) or, if empty, the number `grad_cost`)."""
    n_groups, n_classes = soft.shape
    n_samples = x.shape[0]
    n_pixels = x.size // (n_samples * n_groups * n_classes)
    xv = x.reshape((n_samples, n_groups * n_classes, n_pixels))
    gv = grad_merged.reshape((n_samples, n_groups, n_pixels))
    pv = priced.reshape((n_groups * n_classes, n_pixels))
    cv = grad_cost_map.reshape((n_groups, n_pixels)) if grad_cost_map.size else grad_cost_map.reshape((0, 0))
    per_class = np.zeros((n_groups, n_classes), np.float64)
    for i in range(n_samples):
        for g in range(n_groups):
            for k in range(n_classes):
                s = 0.0
                for p in range(n_pixels):
                    s += xv[i, g * n_classes + k, p] * gv[i, g, p]
                per_class[g, k] += s
    for g in range(n_groups):
        for k in range(n_classes):
            price = 0.0
            for p in range(n_pixels):
                price += pv[g * n_classes + k, p] * (cv[g, p] if cv.shape[0] else grad_cost)
            per_class[g, k] = per_class[g, k] / scale + price
    return _softmax_backward(per_class, soft, tau)


@_jit
def _chain_views(x, priced_x, element, n_groups, n_classes):  # type: ignore[no-untyped-def]
    """Sizes and 3-d views of the paper chain's batch (B, G*K, P) and prices (G*K, P)."""
    n_samples = x.shape[0]
    n_values = element.shape[0]
    n_pixels = n_values // n_groups
    xv = x.reshape((n_samples, n_groups * n_classes, n_pixels))
    return n_samples, n_values, n_pixels, xv, priced_x.reshape((n_groups * n_classes, n_pixels))


@_jit
def merged_any_forward(logits_x, e, logits_p, u, explore, tau, element, weight_p, x, priced_x, rescale_x,  # type: ignore[no-untyped-def]
                       rescale_p):
    """`channel-xor -> merge -> (a two-class stage)`, the paper's Sec. 4.4 chain, in one call: the xor's `logits_x`
    (G, K) over `x` (B, G*K, H, W) priced `priced_x`; then the two-class stage's `logits_p` over the merged
    (B, G, H, W), its V = G*H*W values mapped to elements by `element`, weighted `weight_p` (V,). The random draws
    `e` then `u` as the stages draw them. Returns (out (B, G, H, W), out_cost (V,), Q, pick (G,), soft_x, soft_p,
    selected_p (V,), priced_p (V,), scale_x, scale_p)."""
    n_groups, n_classes = logits_x.shape
    pick, soft_x = _softmax_rows(logits_x, e.reshape((e.size // n_classes, n_classes)), explore, tau)
    hard, soft_p = _two_class(logits_p, u, explore, tau)
    n_samples, n_values, n_pixels, xv, pxv = _chain_views(x, priced_x, element, n_groups, n_classes)
    out = np.empty((n_samples, n_groups, x.shape[2], x.shape[3]), np.float32)
    ov = out.reshape((n_samples, n_values))
    scale_x = np.float32(1.0) / np.float32(n_classes) if rescale_x else np.float32(1.0)
    selected = np.empty(n_values, np.float32)
    priced_p = np.empty(n_values, np.float32)
    out_cost = np.empty(n_values, np.float32)
    kept = 0
    for g in range(n_groups):
        for p in range(n_pixels):
            v = g * n_pixels + p
            selected[v] = hard[element[v]]
            priced_p[v] = pxv[g * n_classes + pick[g], p] * weight_p[v]
            out_cost[v] = priced_p[v] * selected[v]
            kept += int(selected[v])
    scale_p = max(np.float32(kept) / np.float32(n_values), np.float32(1e-6)) if rescale_p else np.float32(1.0)
    for i in range(n_samples):
        for g in range(n_groups):
            channel = g * n_classes + pick[g]
            for p in range(n_pixels):
                v = g * n_pixels + p
                merged = xv[i, channel, p] / scale_x if rescale_x else xv[i, channel, p]
                m = merged * selected[v]
                ov[i, v] = m / scale_p if rescale_p else m
    return out, out_cost, _total(out_cost), pick, soft_x, soft_p, selected, priced_p, scale_x, scale_p


@_jit_sums
def merged_any_backward(x, grad_out, lam, pick, soft_x, soft_p, selected, priced_p, priced_x, weight_p, element,  # type: ignore[no-untyped-def]
                        tau, scale_x, scale_p, logits_p):
    """Backward of `merged_any_forward` for both stages' logits, given `grad_out = dL/dout` and `lam` (dQ's weight):
    returns (grad_logits_x (G, K), grad_logits_p shaped like `logits_p`), what the two stages' own backwards give
    in turn."""
    n_groups, n_classes = soft_x.shape
    n_samples, n_values, n_pixels, xv, pxv = _chain_views(x, priced_x, element, n_groups, n_classes)
    gv = grad_out.reshape((n_samples, n_values))
    batch_p = np.zeros(n_values, np.float64)  # sum over samples of picked version * grad_out
    per_class = np.zeros((n_groups, n_classes), np.float64)  # sum over samples and pixels of version * grad_merged
    grad_merged = np.empty(n_pixels, np.float32)  # grad_out * selected, for one sample and group
    for i in range(n_samples):
        for g in range(n_groups):
            channel = g * n_classes + pick[g]
            base = g * n_pixels
            for p in range(n_pixels):  # the innermost loops run over contiguous pixels, so they vectorise
                grad = gv[i, base + p]
                batch_p[base + p] += xv[i, channel, p] * grad
                grad_merged[p] = grad * selected[base + p]
            for k in range(n_classes):
                row = g * n_classes + k
                total = 0.0
                for p in range(n_pixels):
                    total += xv[i, row, p] * grad_merged[p]
                per_class[g, k] += total
    per_element = np.zeros(soft_p.shape[0], np.float64)
    for v in range(n_values):  # merged = version / scale_x; the pixel stage's output divides by scale_p
        per_element[element[v]] += batch_p[v] / scale_x / scale_p + priced_p[v] * lam
    for g in range(n_groups):
        for k in range(n_classes):
            price = 0.0
            for p in range(n_pixels):
                v = g * n_pixels + p
                price += pxv[g * n_classes + k, p] * (lam * (selected[v] * weight_p[v]))
            per_class[g, k] = per_class[g, k] / scale_p / scale_x + price
    grad_p = _sigmoid_backward(per_element, soft_p, tau).reshape(logits_p.shape)
    return _softmax_backward(per_class, soft_x, tau), grad_p


@_jit
def _softmax_backward(grad, soft, tau):  # type: ignore[no-untyped-def]
    """`soft * (grad - sum(soft * grad)) / tau` per row: the gradient of `softmax(z / tau)` with respect to `z`."""
    out = np.empty(soft.shape, np.float32)
    for g in range(soft.shape[0]):
        dot = 0.0
        for k in range(soft.shape[1]):
            dot += soft[g, k] * grad[g, k]
        for k in range(soft.shape[1]):
            out[g, k] = soft[g, k] * (grad[g, k] - dot) / tau
    return out


@_jit
def dense_matrix(weight, index, out):  # type: ignore[no-untyped-def]
    """`out[i] = weight[index[i] - 1]`, or 0 where `index[i]` is 0: a convolution's dense matrix gathered from its
    kernel (`input_grad._DenseTransposed`), flat arrays."""
    for i in range(index.shape[0]):
        k = index[i]
        out[i] = weight[k - 1] if k > 0 else np.float32(0.0)
