"""Networks chosen by name; input channels and classes follow the data."""
from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

ModelFactory = Callable[[tuple[int, int, int], int], nn.Module]
StateDict = Mapping[str, torch.Tensor]


def mlp(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """Two hidden layers of 128: the network of the pixel benchmarks on digits."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(int(np.prod(input_shape)), 128), nn.ReLU(),
        nn.Linear(128, 128), nn.ReLU(),
        nn.Linear(128, num_classes),
    )


def lenet5(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """LeNet-5 with padded convolutions and an adaptive pool, so 8x8 digits fit as well as 28x28."""
    return nn.Sequential(
        nn.Conv2d(input_shape[0], 6, kernel_size=5, padding=2), nn.ReLU(),  # (B, 6, H, W)
        nn.MaxPool2d(2, ceil_mode=True),
        nn.Conv2d(6, 16, kernel_size=5, padding=2), nn.ReLU(),
        nn.AdaptiveMaxPool2d((4, 4)),  # (B, 16, 4, 4)
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, num_classes),
    )


def _conv_bn_relu(in_channels: int, out_channels: int, kernel: int, stride: int = 1) -> list[nn.Module]:
    """Padding of kernel // 2 keeps the size (or halves it when strided), so an 8x8 input never shrinks to zero."""
    return [
        nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


def allconvnet(input_shape: tuple[int, int, int], num_classes: int, *, dropout: float = 0.0) -> nn.Module:
    """All-Convolutional Net, model C (Springenberg et al. 2015): strided convolutions instead of pooling.

    BatchNorm after every hidden convolution lets it train in a few epochs on small data without the paper's
    long schedule. The last 1x1 convolution gives the logits directly (no BatchNorm or ReLU, so they can be
    negative) and a global average pool makes any input size from 8x8 up work. The dropout layers are always
    there (p=0 is the identity) so the state_dict keys do not depend on `dropout`.
    """
    return nn.Sequential(
        *_conv_bn_relu(input_shape[0], 96, 3),  # (B, 96, H, W)
        *_conv_bn_relu(96, 96, 3),
        *_conv_bn_relu(96, 96, 3, stride=2),  # (B, 96, H/2, W/2)
        nn.Dropout(dropout),
        *_conv_bn_relu(96, 192, 3),
        *_conv_bn_relu(192, 192, 3),
        *_conv_bn_relu(192, 192, 3, stride=2),  # (B, 192, H/4, W/4)
        nn.Dropout(dropout),
        *_conv_bn_relu(192, 192, 3),
        *_conv_bn_relu(192, 192, 1),
        nn.Conv2d(192, num_classes, kernel_size=1),  # (B, classes, H/4, W/4)
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),  # (B, classes)
    )


SMALL_IMAGE = 96  # below this side length the ImageNet stem would leave too little to convolve


def _resnet(depth: int, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """A torchvision ResNet, untrained, with its first convolution fitted to the data's channels.

    ImageNet's stem (7x7 stride 2, then a stride-2 max pool) shrinks a 32x32 image to 8x8 before the first block
    and throws away most of what the mask selects, so small images get the usual CIFAR stem: one 3x3 stride-1
    convolution and no max pool. torchvision is imported here, not at module level, because it adds about a
    second to every start of the CLI and only these models need it. Weights are never downloaded.
    """
    from torchvision import models as tv_models

    channels, height, width = input_shape
    net = getattr(tv_models, f"resnet{depth}")(weights=None, num_classes=num_classes)
    if min(height, width) < SMALL_IMAGE:
        net.conv1 = nn.Conv2d(channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    else:
        net.conv1 = nn.Conv2d(channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return net


MODELS: dict[str, ModelFactory] = {
    "mlp": mlp,
    "lenet5": lenet5,
    "allconvnet": allconvnet,
    # ResNet-18 (the CLI contract's) trains on a CPU; ResNet-50 and -101 are for larger data sets on a GPU.
    **{f"resnet{depth}": functools.partial(_resnet, depth) for depth in (18, 50, 101)},
}


def create_model(name: str, input_shape: tuple[int, int, int], num_classes: int, *,
                 state_dict: str | Path | StateDict | None = None) -> nn.Module:
    """Build a network by name; with `state_dict` (a mapping or a file from `torch.save`) load its weights strictly.

    A state_dict from another model, input shape or number of classes is refused with a ValueError that names the
    offending keys, rather than torch's long RuntimeError, because users pick both the weights and the data.
    """
    try:
        factory = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}") from None
    model = factory(input_shape, num_classes)
    if state_dict is not None:
        state = _read_state_dict(state_dict)
        problem = _state_dict_problem(model.state_dict(), state)
        if problem:
            shape = "x".join(str(s) for s in input_shape)
            raise ValueError(f"state_dict does not fit {name} built for input {shape} and {num_classes} classes: "
                             f"{problem}")
        model.load_state_dict(state, strict=True)
    return model


def error_line(exc: BaseException) -> str:
    """An exception as one short line of an error message: torch's for a file it cannot load run to a dozen lines."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:200]}" if text else type(exc).__name__


def _read_state_dict(source: str | Path | StateDict) -> StateDict:
    """weights_only=True: a model file may come from an upload, and a full pickle could run code."""
    state = source
    if isinstance(source, (str, Path)):
        try:
            state = torch.load(source, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - a missing, damaged or foreign file: named, not a traceback
            raise ValueError(f"cannot read a state_dict from {source} ({error_line(exc)})") from None
    if not isinstance(state, Mapping):
        raise ValueError(f"expected a state_dict (a mapping of names to tensors), got {type(state).__name__}")
    return state


def _state_dict_problem(expected: StateDict, given: StateDict, limit: int = 3) -> str:
    """The first few missing, unexpected or mis-shaped keys, as one short line; empty when the state_dict fits."""
    def names(keys: list[str]) -> str:
        more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
        return ", ".join(repr(k) for k in keys[:limit]) + more

    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    misshaped = [k for k in expected if k in given and _shape(given[k]) != _shape(expected[k])]
    parts = [f"{kind} {names(keys)}" for kind, keys in (("missing", missing), ("unexpected", unexpected)) if keys]
    if misshaped:
        first = misshaped[0]
        parts.append(f"{first!r} has shape {_shape(given[first])}, the model expects {_shape(expected[first])}"
                     + (f" (and {len(misshaped) - 1} more)" if len(misshaped) > 1 else ""))
    return "; ".join(parts)


def _shape(value: object) -> tuple[int, ...] | str:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
