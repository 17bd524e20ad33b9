"""The gradient of the loss with respect to the masked batch, computed beside autograd on the CPU.

A plain network never needs the gradient of the loss with respect to its input; a masked one does,
because the mask's gradient is `x * dL/dx_masked`. Asking autograd for it (`masked.requires_grad_()`)
costs more than the arithmetic on small inputs: oneDNN's backward-data kernel for a first convolution
with few input channels is 1.1x to 3x slower than a forward convolution of the output gradient with the
flipped, transposed kernel (0.42 ms against 0.23 ms for LeNet-5 on 8x8 digits, batch 128), and a
Python autograd Function that swaps in the faster formula costs its own fixed overhead on every step.

`InputGradTap` leaves the network's graph exactly as in plain training (the batch does not require a
gradient, so the first convolution's backward computes its weight and bias gradients only) and keeps
the gradient of that convolution's *output*. After the backward, `input_grad()` turns it into the
gradient with respect to the batch: on small images one dense matrix product (the transposed
convolution written out as an `(O*H'*W', C*H*W)` matrix gathered from the kernel, 0.09 ms against
0.31 ms for the correlation on 8x8 digits, one thread), else the correlation with the flipped kernel.
Where it does not apply the tap is inactive and the caller lets autograd compute the gradient as usual:
on CUDA (cuDNN's kernels are fine), where the first layer is not a plain trainable convolution, and for
any network whose tapped gradient differs from autograd's in one probe forward and backward at the start
(one that transforms its input first, also uses it elsewhere, calls the convolution twice, or changes its
output in place). A network that treats its input differently only in training mode is not caught by the
probe, which runs in eval mode; the built-in models do not.
"""
from __future__ import annotations

import functools
import types
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import kernels

DENSE_MAX_AREA_PER_TAP = 4  # dense input gradients for images of at most 4 * kh * kw pixels


class InputGradTap:
    """Keeps the gradient of the first convolution's output while a run trains; see the module's docstring.

    Use: `tap.expect(batch)` before `model(batch)`, then after `loss.backward()` `tap.input_grad()` is
    `dL/dbatch`. `remove()` gives the convolution back its own `forward` (before saving or exporting).
    """

    def __init__(self, model: nn.Module, input_shape: Sequence[int], device: torch.device) -> None:
        self.conv: nn.Conv2d | None = None
        self._expected: torch.Tensor | None = None
        self._shape: torch.Size | None = None
        self._output: torch.Tensor | None = None
        self._output_version = 0
        self._captures = 0
        self._dense: _DenseTransposed | None = None
        self._matrix: torch.Tensor | None = None  # the dense matrix of the kernel the last forward used, or None
        conv = _first_leaf(model)
        if device.type != "cpu" or conv is None or not _eligible(conv) or not conv.weight.requires_grad:
            return
        assert isinstance(conv, nn.Conv2d)
        tap = self

        def forward(self: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
            out = nn.Conv2d.forward(self, x)
            if x is tap._expected:
                tap._captures += 1
                if out.requires_grad:
                    out.retain_grad()
                    tap._output, tap._output_version = out, out._version
                    tap._matrix = tap._dense_matrix(x.shape)  # from the kernel this forward used
            return out

        conv.forward = types.MethodType(forward, conv)  # type: ignore[method-assign]
        self.conv = conv
        if not self._probe(model, input_shape, device):
            self.remove()

    def _probe(self, model: nn.Module, input_shape: Sequence[int], device: torch.device) -> bool:
        """Is the tap's gradient autograd's for this network? One forward and backward of two random samples
        (their own generator: the run's random streams are untouched), in eval mode so that batch norm's
        running statistics stay as they are; the parameters' gradients are put back afterwards. Catches a
        network that changes its input before the first convolution, uses the input elsewhere too, calls the
        convolution twice or changes its output in place."""
        generator = torch.Generator(device=device).manual_seed(0)
        x = torch.randn(2, *input_shape, device=device, generator=generator).requires_grad_(True)
        was_training = model.training
        grads = [p.grad for p in model.parameters()]
        model.eval()
        try:
            with torch.enable_grad():
                self.expect(x)
                out = model(x)
                out.backward(torch.randn(out.shape, device=device, generator=generator))
            if self._captures != 1 or self._output is None or x.grad is None:
                return False
            return bool(torch.allclose(self.input_grad(), x.grad, rtol=1e-4, atol=1e-5))
        except RuntimeError:  # e.g. the tap's own consistency checks
            return False
        finally:
            model.train(was_training)
            for p, grad in zip(model.parameters(), grads, strict=True):
                p.grad = grad
            self._expected, self._output, self._captures = None, None, 0

    @property
    def active(self) -> bool:
        return self.conv is not None

    def expect(self, batch: torch.Tensor) -> None:
        """The next forward's input: the first convolution keeps its output's gradient for this batch."""
        self._expected, self._shape, self._output, self._captures, self._matrix = batch, batch.shape, None, 0, None

    def input_grad(self) -> torch.Tensor:
        """`dL/dbatch` for the batch given to `expect`, after the backward."""
        output, self._output, self._expected = self._output, None, None
        if self.conv is None or output is None:
            raise RuntimeError("the first convolution did not see the expected batch with gradients enabled")
        if self._captures != 1 or output._version != self._output_version:
            raise RuntimeError("the first convolution saw the batch more than once or its output was changed in "
                               "place: its output's gradient is not the batch's")
        if output.grad is None:  # the loss did not depend on the network's output
            return torch.zeros(self._shape, device=output.device)
        matrix, self._matrix = self._matrix, None
        if matrix is None:
            return _correlate(output.grad, self.conv.weight.detach(), tuple(self.conv.padding))
        return torch.mm(output.grad.reshape(self._shape[0], -1), matrix).view(self._shape)

    def _dense_matrix(self, shape: torch.Size) -> torch.Tensor | None:
        """The transposed convolution's dense matrix for inputs of this shape (filled from the current kernel),
        or None where images are too large for it to pay."""
        dense = self._dense
        if dense is None or dense.shape != shape[1:]:
            assert self.conv is not None
            dense = self._dense = _DenseTransposed(shape[1:], self.conv)
        return dense.matrix()

    def remove(self) -> None:
        if self.conv is not None:
            self.conv.__dict__.pop("forward", None)
        self.conv, self._expected, self._output = None, None, None


class _DenseTransposed:
    """The transposed convolution written out as a dense `(O*H'*W', C*H*W)` matrix, for one kernel and input
    size: `matrix()` fills it from the convolution's current kernel (one compiled gather where the kernels run,
    else two tensor operations) into the same buffer each step, which the product in `input_grad` reads before
    the next forward; None where the images are too large for a dense product to pay."""

    def __init__(self, shape: torch.Size, conv: nn.Conv2d) -> None:
        c, h, w = shape
        out_channels, _, kh, kw = conv.weight.shape
        self.shape, self.conv = shape, conv
        self.dense = h * w <= DENSE_MAX_AREA_PER_TAP * kh * kw
        if self.dense:
            self.index = _dense_index(out_channels, c, kh, kw, h, w, *conv.padding)
            self.flat_index = self.index.view(-1).numpy()
            self.buffer = conv.weight.new_empty(self.index.shape)
            self.padded = conv.weight.new_zeros(conv.weight.numel() + 1)  # entry 0 stays 0: no kernel tap
            self.weight_view: tuple[int, np.ndarray] | None = None  # (data pointer, the kernel as a flat array)

    def matrix(self) -> torch.Tensor | None:
        if not self.dense:
            return None
        weight = self.conv.weight
        if kernels.ENABLED and weight.dtype == torch.float32 and weight.is_contiguous():
            view = self.weight_view
            if view is None or view[0] != weight.data_ptr():  # the optimiser updates the kernel in place
                view = self.weight_view = (weight.data_ptr(), weight.detach().numpy().reshape(-1))
            kernels.dense_matrix(view[1], self.flat_index, self.buffer.numpy().reshape(-1))
        else:
            with torch.no_grad():
                self.padded[1:].copy_(weight.reshape(-1))
                torch.index_select(self.padded, 0, self.index.view(-1), out=self.buffer.view(-1))
        return self.buffer


def _correlate(grad_out: torch.Tensor, weight: torch.Tensor, padding: tuple[int, int]) -> torch.Tensor:
    """The gradient with respect to the convolution's input, for larger images: the transposed convolution of
    stride 1 is the correlation with the flipped kernel, its in and out channels swapped, padded by k - 1 - p.
    (On small ones the dense product does H*W / (kh*kw) times its multiply-adds, in one GEMM, and wins.)"""
    _, _, kh, kw = weight.shape
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
