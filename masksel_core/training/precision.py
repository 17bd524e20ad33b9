"""The precision a run computes its network in: bf16 autocast where the device gains from it, fp32 elsewhere.

Why: on a GPU a selection epoch of a convolutional network is bound by fp32 arithmetic and memory traffic; bf16
halves both with no loss scaling (its range is float32's). Only the network runs under autocast: the masks
(`MaskChain`, `DynamicMask`) turn it off inside their forward, so mask logits, Gumbel noise and Q stay float32,
and the loss is computed in float32 as autocast does for cross-entropy. On the CPU `auto` is fp32, so CPU results
are what they were.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn


def resolve_precision(name: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a run's `precision` on `device` (None: plain fp32)."""
    if name == "fp32":
        return None
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        if name == "bf16":
            raise ValueError(f"precision bf16 was asked for but {torch.cuda.get_device_name(device)} does not "
                             "support it: use fp32 or auto")
        return None
    if name == "bf16" or device.type == "cuda":
        return torch.bfloat16
    return None


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[object]:
    """The network's forward passes inside this block run in `dtype` (nothing changes for None)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def memory_format(model: nn.Module, device: torch.device) -> torch.memory_format:
    """channels_last for a convolutional network on CUDA (cuDNN's fast layout for its kernels), else the default."""
    convolutional = any(isinstance(m, nn.Conv2d) for m in model.modules())
    return torch.channels_last if device.type == "cuda" and convolutional else torch.contiguous_format
