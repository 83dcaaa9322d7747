"""The paper's VGG16 and ResNet20: shapes, structure and full-width parameter counts."""

import pytest
import torch
from torch import nn

from burstsnn.ann.models import build_model


def conv_params(c_in: int, c_out: int, k: int, bias: bool) -> int:
    return c_in * c_out * k * k + (c_out if bias else 0)


def bn_params(c: int) -> int:
    return 2 * c


def vgg16_param_count(in_channels: int, classes: int) -> int:
    """Counted by hand from the paper's VGG16 (docs/architecture.md, "Models"): 13 × [Conv3×3 (bias)
    → BN], Linear(512, classes)."""
    plan = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    total, c_in = 0, in_channels
    for c_out in plan:
        total += conv_params(c_in, c_out, 3, bias=True) + bn_params(c_out)
        c_in = c_out
    return total + 512 * classes + classes


def resnet20_param_count(in_channels: int, classes: int) -> int:
    """Stem 3 × Conv3×3-64 (no bias) + BN; 4 stages × 2 BasicBlocks; 1×1 shortcuts; Linear."""
    total = conv_params(in_channels, 64, 3, False) + 2 * conv_params(64, 64, 3, False)
    total += 3 * bn_params(64)
    c_in = 64
    for stage, c_out in enumerate([64, 128, 256, 512]):
        for block in range(2):
            stride = 2 if stage > 0 and block == 0 else 1
            total += conv_params(c_in, c_out, 3, False) + conv_params(c_out, c_out, 3, False)
            total += 2 * bn_params(c_out)
            if stride != 1 or c_in != c_out:
                total += conv_params(c_in, c_out, 1, False) + bn_params(c_out)
            c_in = c_out
    return total + 512 * classes + classes


@pytest.mark.parametrize(
    ("name", "expected"),
    [("vgg16", vgg16_param_count(3, 100)), ("resnet20", resnet20_param_count(3, 100))],
)
def test_full_width_parameter_count_cifar100(name: str, expected: int) -> None:
    model = build_model(name, num_classes=100, in_channels=3, width=1.0)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_vgg16_full_width_count_is_the_known_figure() -> None:
    # The widely quoted size of CIFAR VGG16-BN with a single 512→100 classifier.
    assert vgg16_param_count(3, 100) == 14_774_436


@pytest.mark.parametrize("name", ["vgg16", "resnet20"])
@pytest.mark.parametrize(("in_channels", "classes", "width"), [(1, 10, 0.25), (3, 100, 0.125)])
def test_output_shape(name: str, in_channels: int, classes: int, width: float) -> None:
    model = build_model(name, num_classes=classes, in_channels=in_channels, width=width).eval()
    assert model(torch.randn(2, in_channels, 32, 32)).shape == (2, classes)


def test_vgg16_structure() -> None:
    model = build_model("vgg16", num_classes=10, in_channels=3, width=0.25)
    kinds = [type(m) for m in model.modules()]
    assert kinds.count(nn.Conv2d) == 13
    assert kinds.count(nn.BatchNorm2d) == 13
    assert kinds.count(nn.ReLU) == 13
    assert kinds.count(nn.MaxPool2d) == 5
    assert kinds.count(nn.Linear) == 1


def test_resnet20_structure() -> None:
    model = build_model("resnet20", num_classes=10, in_channels=3, width=0.25)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 3 + 16 + 3  # stem, 8 blocks × 2, three 1×1 shortcuts
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    assert len(relus) == 3 + 16  # each ReLU its own module (one neuron each after conversion)
    assert any(isinstance(m, nn.MaxPool2d) and m.kernel_size == 4 for m in model.modules())


def test_larger_images_scale_the_classifier() -> None:
    model = build_model("vgg16", num_classes=5, in_channels=3, width=0.125, image_size=64).eval()
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 5)


def test_bad_model_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="model.name"):
        build_model("alexnet", num_classes=10, in_channels=3)
    with pytest.raises(ValueError, match="image_size"):
        build_model("vgg16", num_classes=10, in_channels=3, image_size=28)


@pytest.mark.parametrize("name", ["vgg16", "resnet20"])
def test_two_layer_classifier(name: str) -> None:
    model = build_model(name, num_classes=10, in_channels=1, width=0.125, classifier_hidden=24).eval()
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears][1:] == [(24, 10)]
    assert linears[0].out_features == 24
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)
