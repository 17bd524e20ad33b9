"""A faster gradient for the network's first convolution with respect to its (masked) input, on the CPU.

A plain network never needs the gradient of the loss with respect to its input; a masked one does,
because the mask's gradient is `x * dL/dx_masked`. On the CPU, oneDNN's backward-data kernel for
the first convolution (few input channels) is 1.1x to 3x slower than a forward convolution of the
output gradient with the flipped, transposed kernel, which gives the same numbers (measured on
this project's machine: 0.42 ms against 0.23 ms for LeNet-5 on 8x8 digits, batch 128; 4.7 ms
against 1.6 ms at 28x28). On small images even that convolution is mostly overhead, and the
gradient is faster as one dense matrix product: the transposed convolution written out as a
`(O*H'*W', C*H*W)` matrix gathered from the kernel (0.09 ms against 0.31 ms for LeNet-5 on 8x8
digits, one thread). This module swaps that formulation in for the first convolution while a
run trains on the CPU, and takes it out again afterwards, so saved and exported models are plain
PyTorch modules. CUDA is left to cuDNN.
"""
from __future__ import annotations

import functools
import types
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

DENSE_MAX_AREA_PER_TAP = 4  # dense input gradients for images of at most 4 * kh * kw pixels


class _ConvWithForwardInputGrad(torch.autograd.Function):
    """`conv2d` (stride 1, no dilation, one group, zero padding) whose input gradient is a forward convolution."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                padding: tuple[int, int]) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.padding, ctx.has_bias = padding, bias is not None
        return F.conv2d(x, weight, bias, padding=padding)

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        grad_x = grad_w = grad_b = None
        if need_x:
            grad_x = _input_grad(grad_out, weight, x.shape, ctx.padding)
        if need_w or need_b:
            bias_sizes = [weight.shape[0]] if ctx.has_bias else None
            _, grad_w, grad_b = torch.ops.aten.convolution_backward(
                grad_out, x, weight, bias_sizes, [1, 1], list(ctx.padding), [1, 1], False, [0, 0], 1,
                [False, need_w, need_b and ctx.has_bias])
        return grad_x, grad_w, grad_b, None


def _input_grad(grad_out: torch.Tensor, weight: torch.Tensor, x_shape: torch.Size,
                padding: tuple[int, int]) -> torch.Tensor:
    """The gradient with respect to the convolution's input `(B, C, H, W)`, given that of its output."""
    b, c, h, w = x_shape
    out_channels, _, kh, kw = weight.shape
    if h * w <= DENSE_MAX_AREA_PER_TAP * kh * kw:
        # A dense product does H*W / (kh*kw) times the multiply-adds of the convolution, in one GEMM.
        index = _dense_index(out_channels, c, kh, kw, h, w, *padding)  # (O*H'*W', C*H*W)
        matrix = torch.cat((weight.new_zeros(1), weight.reshape(-1))).index_select(0, index.view(-1))
        return torch.mm(grad_out.reshape(b, -1), matrix.view(index.shape)).view(x_shape)
    # The transposed convolution of stride 1 is the correlation with the flipped kernel, its in and out
    # channels swapped, padded by k - 1 - p.
    ph, pw = padding
    return F.conv2d(grad_out, weight.flip(-1, -2).transpose(0, 1), padding=(kh - 1 - ph, kw - 1 - pw))


@functools.lru_cache(maxsize=8)
def _dense_index(out_channels: int, channels: int, kh: int, kw: int, h: int, w: int, ph: int,
                 pw: int) -> torch.Tensor:
    """Where each entry of the convolution's dense matrix comes from: 1 + the kernel's flat index, 0 for none.

    Row `(o, i, j)` (an output value), column `(c, y, x)` (an input value). Found by convolving each unit
    input with a kernel holding its own flat indices (exact in float64: at most one tap links two values).
    """
    units = torch.eye(channels * h * w, dtype=torch.float64).view(-1, channels, h, w)
    taps = torch.arange(1, out_channels * channels * kh * kw + 1, dtype=torch.float64)
    index = F.conv2d(units, taps.view(out_channels, channels, kh, kw), padding=(ph, pw))  # (C*H*W, O, H', W')
    return index.reshape(channels * h * w, -1).t().round().long().contiguous()


def _first_leaf(model: nn.Module) -> nn.Module | None:
    return next((m for m in model.modules() if not any(True for _ in m.children())), None)


def _eligible(conv: nn.Module) -> bool:
    if type(conv) is not nn.Conv2d or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        return False
    kernel, padding = conv.kernel_size, conv.padding
    return (conv.stride == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1
            and all(0 <= p <= k - 1 for p, k in zip(padding, kernel, strict=True)))


def fast_first_conv_input_grad(model: nn.Module, device: torch.device) -> Callable[[], None]:
    """Use the faster input gradient for the model's first layer if it is an eligible convolution on the CPU.

    Returns a function that restores the layer's own `forward` (call it before saving or exporting).
    """
    conv = _first_leaf(model)
    if device.type != "cpu" or conv is None or not _eligible(conv):
        return lambda: None
    assert isinstance(conv, nn.Conv2d)

    def forward(self: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
        if not (torch.is_grad_enabled() and x.requires_grad):
            return nn.Conv2d.forward(self, x)
        return _ConvWithForwardInputGrad.apply(x, self.weight, self.bias, tuple(self.padding))

    conv.forward = types.MethodType(forward, conv)  # type: ignore[method-assign]

    def restore() -> None:
        conv.__dict__.pop("forward", None)

    return restore
