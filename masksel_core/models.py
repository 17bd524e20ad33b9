"""Networks chosen by name; input channels and classes follow the data."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
from torch import nn

ModelFactory = Callable[[tuple[int, int, int], int], nn.Module]


def mlp(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """Two hidden layers of 128: the network of the pixel benchmarks on digits."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(int(np.prod(input_shape)), 128),
        nn.ReLU(),
        nn.Linear(128, 128),
        nn.ReLU(),
        nn.Linear(128, num_classes),
    )


def lenet5(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """LeNet-5 with padded convolutions and an adaptive pool, so 8x8 digits fit as well as 28x28."""
    channels = input_shape[0]
    return nn.Sequential(
        nn.Conv2d(channels, 6, kernel_size=5, padding=2),  # (B, 6, H, W)
        nn.ReLU(),
        nn.MaxPool2d(2, ceil_mode=True),
        nn.Conv2d(6, 16, kernel_size=5, padding=2),
        nn.ReLU(),
        nn.AdaptiveMaxPool2d((4, 4)),  # (B, 16, 4, 4)
        nn.Flatten(),
        nn.Linear(16 * 4 * 4, 120),
        nn.ReLU(),
        nn.Linear(120, 84),
        nn.ReLU(),
        nn.Linear(84, num_classes),
    )


MODELS: dict[str, ModelFactory] = {"mlp": mlp, "lenet5": lenet5}


def create_model(name: str, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    try:
        factory = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}") from None
    return factory(input_shape, num_classes)
