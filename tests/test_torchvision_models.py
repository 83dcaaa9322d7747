"""torchvision CNNs that nobody here wrote: each converts, and its SNN's time-averaged output
converges to the ANN's logits; models with other activations are refused by name.

Random weights (no download), BatchNorm statistics from a few train-mode passes, small
random inputs (the smallest size each model's pools allow), p = 100 (no clipping).
"""

import pytest
import torch
import torchvision.models as tv

from burstsnn.conversion.convert import convert
from burstsnn.errors import ConversionError
from conftest import convergence, ready

T_SHORT, T_LONG = 32, 256

# name -> (model, input side, samples); two samples where the classifier has ~10^8 weights
MODELS = {
    "alexnet": (lambda: tv.alexnet(num_classes=10), 64, 2),
    "vgg11_bn": (lambda: tv.vgg11_bn(num_classes=10), 32, 2),
    "resnet18": (lambda: tv.resnet18(num_classes=10), 32, 4),
    "squeezenet1_1": (lambda: tv.squeezenet1_1(num_classes=10), 32, 4),
    "densenet": (lambda: tv.DenseNet(growth_rate=8, block_config=(2, 2, 2, 2), num_init_features=16,
                                     bn_size=2, num_classes=10), 32, 4),
    "googlenet": (lambda: tv.googlenet(num_classes=10, aux_logits=False, transform_input=False,
                                       init_weights=True), 32, 4),
    "shufflenet_v2_x0_5": (lambda: tv.shufflenet_v2_x0_5(num_classes=10), 32, 4),
    "mnasnet0_5": (lambda: tv.mnasnet0_5(num_classes=10), 32, 4),
}


pytestmark = pytest.mark.usefixtures("eager_steps", "one_thread")


@pytest.mark.parametrize("name", MODELS)
def test_snn_converges_to_the_ann(name):
    make, side, samples = MODELS[name]
    torch.manual_seed(0)
    ann = ready(make(), torch.randn(4, 3, side, side, generator=torch.Generator().manual_seed(1)))
    x = torch.randn(samples, 3, side, side, generator=torch.Generator().manual_seed(0))
    snn = convert(ann, [(x, None)], p=100)
    (short, long), (agree_short, agree_long) = convergence(snn, ann, x, [T_SHORT, T_LONG], chunk=T_LONG)
    assert long < 0.35 * short and long < 0.15, (short, long)
    assert agree_long >= agree_short and agree_long >= 0.75, (agree_short, agree_long)


@pytest.mark.parametrize(
    "make,activation",
    [(lambda: tv.mobilenet_v3_small(num_classes=10), "Hardswish"), (lambda: tv.efficientnet_b0(num_classes=10), "SiLU")],
)
def test_models_with_other_activations_are_refused_by_name(make, activation):
    with pytest.raises(ConversionError, match=f"{activation} is not ReLU") as error:
        convert(make().eval(), [(torch.rand(2, 3, 32, 32), None)])
    assert "layer 'features.0.2'" in str(error.value)
