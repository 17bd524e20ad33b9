"""The masks' Adam step as one compiled call, equal bit for bit to `torch.optim.Adam(fused=True)` on the CPU.

Why: the masks are a few small tensors, so their optimiser step is all per-call cost. torch's fused step is two
operations (`_foreach_add_` on the step counters, `_fused_adam_`) plus the Python around them; in a training step
on small inputs that is a tenth of a millisecond, more than the arithmetic of the whole step for the masks.

What it must match: torch's fused CPU kernel (`aten/src/ATen/native/cpu/FusedAdamKernel.cpp`) in float32 with its
roundings. The vectorised body computes `exp_avg = fma(1 - beta1, grad - exp_avg, exp_avg)`,
`exp_avg_sq = fma((1 - beta2) * grad, grad, exp_avg_sq * beta2)`, then
`param + (-step_size * exp_avg) / (sqrt(exp_avg_sq) / sqrt(bias_correction2) + eps)`; the last `numel % width`
values (the scalar tail) come out of the compiler as `fma(exp_avg_sq, beta2, (1 - beta2) * grad * grad)`
instead. `width` is the vector width of torch's CPU kernels (8 floats with AVX2, 16 with AVX-512); on other CPUs,
and for options this kernel does not implement (weight decay, AMSGrad, maximize, beta1 <= 0.5), `optim.MaskAdam`
uses torch's own step. `tests/core/test_optim.py` compares the two bit for bit on the machine it runs on.

The step writes through arrays that share the tensors' memory, so autograd's version counters do not move
(torch's in-place step would bump them). That is safe where it is used: the masks' logits are in no graph
then (the training step masks with `MaskChain.forward_manual`).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from . import kernels

VECTOR_WIDTH = {"AVX2": 8, "AVX512": 16}.get(torch.backends.cpu.get_cpu_capability())  # None: use torch's step

if kernels.njit is not None:
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic

    @intrinsic
    def _fma(typingctx, a, b, c):  # type: ignore[no-untyped-def]
        """`a * b + c` with one rounding (LLVM's `fma` on float32), as torch's kernel computes it."""
        signature = types.float32(types.float32, types.float32, types.float32)

        def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
            f32 = ir.FloatType()
            fma = builder.module.declare_intrinsic("llvm.fma", [f32], ir.FunctionType(f32, [f32, f32, f32]))
            return builder.call(fma, args)

        return signature, codegen
else:  # pragma: no cover - without numba the step is torch's
    def _fma(a, b, c):  # type: ignore[no-untyped-def]
        return a * b + c


@kernels._jit
def adam_step(param, grad, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, width):  # type: ignore[no-untyped-def]
    """One Adam step in place: flat float32 `param`, `grad`, `exp_avg`, `exp_avg_sq`, and `step` (1,) float32,
    the counter torch keeps (incremented here first, as torch's optimiser does before its kernel)."""
    step[0] += np.float32(1.0)
    t = float(step[0])
    neg_step_size = np.float32(-(lr / (1.0 - beta1 ** t)))
    correction2_sqrt = np.float32(math.sqrt(1.0 - beta2 ** t))
    c1, c2 = np.float32(1.0 - beta1), np.float32(1.0 - beta2)
    b2, e = np.float32(beta2), np.float32(eps)
    n = param.shape[0]
    vector_end = n - n % width
    for i in range(n):
        g = grad[i]
        m = _fma(c1, g - exp_avg[i], exp_avg[i])
        if i < vector_end:
            v = _fma(c2 * g, g, exp_avg_sq[i] * b2)
        else:
            v = _fma(exp_avg_sq[i], b2, c2 * g * g)
        exp_avg[i] = m
        exp_avg_sq[i] = v
        param[i] = param[i] + neg_step_size * m / (np.float32(np.sqrt(v)) / correction2_sqrt + e)


@kernels._jit
def _step_logits(logits, grads, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, width):  # type: ignore[no-untyped-def]
    """`adam_step` on a stage's logits (any shape, C-contiguous) given their gradient of the same size."""
    adam_step(logits.reshape(logits.size), grads.reshape(grads.size), exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps,
              width)


# A select stage's backward and the Adam step of its logits in one call (the training step's plan, when the masks'
# optimiser steps with `adam_step`): the gradient goes straight into the step instead of through `.grad`.

@kernels._jit
def two_class_backward_step(x, grad_x, scale, priced, lam, soft, tau, element, logits,  # type: ignore[no-untyped-def]
                            exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, width):
    grads = kernels.any_backward(x, grad_x, scale, priced, lam, np.empty(0, np.float32), soft, tau, element, logits)
    _step_logits(logits, grads, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, width)


@kernels._jit
def one_of_k_backward_step(x, grad_x, scale, priced, lam, soft, tau, group, klass, logits,  # type: ignore[no-untyped-def]
                           exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, width):
    grads = kernels.xor_backward(x, grad_x, scale, priced, lam, np.empty(0, np.float32), soft, tau, group, klass,
                                 logits)
    _step_logits(logits, grads, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, width)


@kernels._jit
def merged_backward_step(x, grad_merged, scale, priced, lam, soft, tau, logits,  # type: ignore[no-untyped-def]
                         exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, width):
    grads = kernels.merged_backward(x, grad_merged, scale, priced, lam, np.empty(0, np.float32), soft, tau)
    _step_logits(logits, grads, exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps, width)


@kernels._jit
def merged_any_backward_step(x, grad_out, lam, pick, soft_x, soft_p, selected, priced_p, priced_x,  # type: ignore[no-untyped-def]
                             weight_p, element, tau, scale_x, scale_p, logits_x, logits_p, exp_avg_x, exp_avg_sq_x,
                             step_x, exp_avg_p, exp_avg_sq_p, step_p, lr, beta1, beta2, eps, width):
    grad_x, grad_p = kernels.merged_any_backward(x, grad_out, lam, pick, soft_x, soft_p, selected, priced_p, priced_x,
                                                 weight_p, element, tau, scale_x, scale_p, logits_p)
    # In the masks' optimiser's parameter order (the chain's stages in order): the xor's logits, then the pixels'.
    _step_logits(logits_x, grad_x, exp_avg_x, exp_avg_sq_x, step_x, lr, beta1, beta2, eps, width)
    _step_logits(logits_p, grad_p, exp_avg_p, exp_avg_sq_p, step_p, lr, beta1, beta2, eps, width)
