"""Every registered network fits every data shape, trains end to end and loads its own weights only."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from masksel_core.models import MODELS, create_model

SHAPES = [(1, 8, 8), (3, 32, 32), (36, 35, 35), (3, 50, 50)]
SMALL_MODELS = ["mlp", "lenet5", "allconvnet", "resnet18"]
CLASSES = 5


def _first_parameter(model: nn.Module) -> nn.Parameter:
    return next(model.parameters())


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", SMALL_MODELS)
def test_it_gives_one_logit_per_class_and_gradients_reach_the_first_layer(
        name: str, shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    model = create_model(name, shape, CLASSES)
    out = model(torch.randn(2, *shape))
    assert out.shape == (2, CLASSES)
    out.sum().backward()
    grad = _first_parameter(model).grad
    assert grad is not None and grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["resnet50", "resnet101"])
def test_deep_resnets_give_one_logit_per_class(name: str) -> None:
    model = create_model(name, (3, 32, 32), CLASSES).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, CLASSES)


def test_the_registry_lists_exactly_the_six_networks() -> None:
    assert set(MODELS) == {"mlp", "lenet5", "allconvnet", "resnet18", "resnet50", "resnet101"}


def test_resnet_uses_the_cifar_stem_for_small_images_and_the_imagenet_stem_otherwise() -> None:
    small = create_model("resnet18", (4, 32, 32), CLASSES)
    assert small.conv1.in_channels == 4 and small.conv1.kernel_size == (3, 3) and small.conv1.stride == (1, 1)
    assert isinstance(small.maxpool, nn.Identity)
    large = create_model("resnet18", (2, 96, 128), CLASSES)
    assert large.conv1.in_channels == 2 and large.conv1.kernel_size == (7, 7) and large.conv1.stride == (2, 2)
    assert isinstance(large.maxpool, nn.MaxPool2d)


@pytest.mark.parametrize("name", ["lenet5", "allconvnet", "resnet18"])
def test_a_saved_state_dict_round_trips(name: str, tmp_path: Path) -> None:
    shape = (3, 16, 16)
    torch.manual_seed(1)
    model = create_model(name, shape, CLASSES)
    model(torch.randn(4, *shape))  # move the BatchNorm running statistics away from their defaults
    path = tmp_path / "model.pt"
    torch.save(model.state_dict(), path)
    torch.manual_seed(2)
    loaded = create_model(name, shape, CLASSES, state_dict=path)
    x = torch.randn(2, *shape)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), loaded.eval()(x))


def test_a_state_dict_can_be_given_as_a_mapping() -> None:
    model = create_model("mlp", (1, 8, 8), CLASSES)
    loaded = create_model("mlp", (1, 8, 8), CLASSES, state_dict=model.state_dict())
    assert torch.equal(loaded[1].weight, model[1].weight)


@pytest.mark.parametrize(("name", "other_shape", "other_classes", "key"), [
    ("resnet18", (3, 32, 32), 7, "fc.weight"),
    ("resnet18", (1, 32, 32), CLASSES, "conv1.weight"),
    ("allconvnet", (1, 32, 32), CLASSES, "0.weight"),
    ("lenet5", (3, 32, 32), 7, "11.weight"),
])
def test_a_state_dict_of_another_shape_is_refused_naming_the_key(
        name: str, other_shape: tuple[int, int, int], other_classes: int, key: str) -> None:
    other = create_model(name, other_shape, other_classes).state_dict()
    with pytest.raises(ValueError, match=rf"{name} built for input 3x32x32 and {CLASSES} classes.*'{key}'"):
        create_model(name, (3, 32, 32), CLASSES, state_dict=other)


def test_a_state_dict_of_another_model_is_refused_naming_missing_and_unexpected_keys() -> None:
    other = create_model("lenet5", (3, 32, 32), CLASSES).state_dict()
    with pytest.raises(ValueError, match=r"missing '1\.weight'.*unexpected '0\.weight'"):
        create_model("mlp", (3, 32, 32), CLASSES, state_dict=other)


def test_a_file_that_is_not_a_state_dict_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(ValueError, match="expected a state_dict"):
        create_model("mlp", (1, 8, 8), CLASSES, state_dict=path)


def test_an_unknown_name_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown model 'vgg16'; choose one of mlp, lenet5, allconvnet, resnet18"):
        create_model("vgg16", (3, 32, 32), CLASSES)
