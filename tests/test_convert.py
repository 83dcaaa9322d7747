"""fold_bn, calibration (λ = p-th percentile) and ANN -> SNN conversion."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from burstsnn.calibrate import calibrate, percentile
from burstsnn.convert import convert, fold_bn
from burstsnn.snn.pooling import LIPool, SpikeMaxPool
from conftest import ResidualCNN, SmallCNN, rate_error, ready


@pytest.fixture(scope="module")
def images():
    return torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))


# --- fold_bn -------------------------------------------------------------------


@pytest.mark.parametrize("cls", [SmallCNN, ResidualCNN])
def test_fold_bn_keeps_logits_and_input_model(cls, images):
    ann = ready(cls(), images)
    before = copy.deepcopy(ann.state_dict())
    folded = fold_bn(ann)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    with torch.no_grad():
        assert torch.allclose(folded(images), ann(images), atol=1e-5)
    assert all(torch.equal(v, ann.state_dict()[k]) for k, v in before.items())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in ann.modules()) > 0


def test_fold_linear_bn1d():
    torch.manual_seed(0)
    ann = nn.Sequential(nn.Linear(5, 7), nn.BatchNorm1d(7), nn.ReLU(), nn.Linear(7, 2))
    x = torch.randn(16, 5)
    ready(ann, x)
    with torch.no_grad():
        assert torch.allclose(fold_bn(ann)(x), ann(x), atol=1e-5)


# --- percentile / calibration -------------------------------------------------------


@pytest.mark.parametrize("p", [99.9, 50, 100, 0.5])
def test_percentile_matches_numpy(p):
    x = torch.relu(torch.randn(10_001, generator=torch.Generator().manual_seed(1)))
    expected = np.percentile(x.double().numpy(), p, method="linear")
    assert percentile(x, p).item() == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_percentile_per_row_matches_numpy():
    x = torch.randn(4, 999, generator=torch.Generator().manual_seed(2))
    expected = np.percentile(x.double().numpy(), 99.9, axis=1, method="linear")
    assert np.allclose(percentile(x, 99.9, dim=1).numpy(), expected, rtol=1e-12)


def test_percentile_beyond_torch_quantile_limit():
    x = torch.rand(17_000_000, generator=torch.Generator().manual_seed(3))
    expected = np.percentile(x.numpy().astype(np.float64), 99.9, method="linear")
    assert percentile(x, 99.9).item() == pytest.approx(expected, rel=1e-12)


def relu_outputs(ann, x):
    """Activations of SmallCNN's two ReLUs, computed directly."""
    acts, h = [], x
    with torch.no_grad():
        for m in ann.features:
            h = m(h)
            if isinstance(m, nn.ReLU):
                acts.append(h)
    return acts


@pytest.mark.parametrize("p", [99.9, 75, 100])  # the median of ReLU outputs here is 0
def test_thresholds_are_percentiles_of_activations(p, images):
    ann = ready(SmallCNN(), images)
    batches = [(images[:2], None), (images[2:], None)]
    snn = convert(ann, batches, p=p, calib_batches=2)
    thetas = list(snn.thresholds().values())
    for theta, act in zip(thetas, relu_outputs(ann, images), strict=True):
        expected = np.percentile(act.double().numpy(), p, method="linear")
        assert theta.item() == pytest.approx(expected, rel=1e-5)
    half = convert(ann, batches, p=p, calib_batches=2, theta_scale=0.5)
    assert [t.item() for t in half.thresholds().values()] == pytest.approx([t.item() / 2 for t in thetas])


def test_channel_wise_thresholds(images):
    ann = ready(SmallCNN(), images)
    snn = convert(ann, [(images, None)], p=99.9, channel_wise=True)
    for theta, act in zip(snn.thresholds().values(), relu_outputs(ann, images), strict=True):
        per_channel = act.transpose(0, 1).reshape(act.shape[1], -1).double().numpy()
        expected = np.percentile(per_channel, 99.9, axis=1, method="linear")
        assert theta.shape == (act.shape[1], 1, 1)
        assert np.allclose(theta.view(-1).numpy(), expected, rtol=1e-5)


def test_dead_layer_gets_safe_threshold_and_warning():
    ann = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).eval()
    with torch.no_grad():
        ann[0].bias.fill_(-100.0)
    with pytest.warns(UserWarning, match="'1' never activated"):
        snn = convert(ann, [(torch.rand(8, 4), None)])
    assert snn.thresholds()["1"].item() == 1.0


def test_nan_activations_name_the_layer():
    ann = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).eval()
    x = torch.rand(8, 4)
    x[0, 0] = float("inf")
    with pytest.raises(ValueError, match="layer '1'"):
        calibrate(ann, [(x, None)], ["1"])


# --- convert: arguments, refusals, call sites ------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,word",
    [
        (dict(p=0), "p must"), (dict(p=100.5), "p must"), (dict(gamma=0), "gamma"),
        (dict(gamma=2.0), "gamma"), (dict(pooling="max"), "pooling"), (dict(reset="none"), "reset"),
        (dict(theta_scale=0), "theta_scale"), (dict(calib_batches=0), "calib_batches"),
    ],
)
def test_invalid_arguments(kwargs, word, images):
    with pytest.raises(ValueError, match=word):
        convert(SmallCNN().eval(), [(images, None)], **kwargs)


def test_empty_calib_loader(images):
    with pytest.raises(ValueError, match="no batches"):
        convert(SmallCNN().eval(), [])


class WithSigmoid(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc, self.gate = nn.Linear(4, 4), nn.Sigmoid()

    def forward(self, x):
        return self.gate(self.fc(x))


class WithTanh(nn.Module):
    def forward(self, x):
        return torch.tanh(x)


class WithLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(4, 4)

    def forward(self, x):
        return self.rnn(x)[0]


@pytest.mark.parametrize(
    "model,name", [(WithSigmoid(), "layer 'gate' (Sigmoid)"), (WithTanh(), "tanh"), (WithLSTM(), "layer 'rnn' (LSTM)")]
)
def test_unsupported_layers_are_named(model, name):
    with pytest.raises(ValueError, match="supported") as err:
        convert(model, [(torch.rand(2, 3, 4), None)])
    assert name in str(err.value)


def test_reused_relu_module_gets_one_neuron_per_call_site(images):
    ann = ready(ResidualCNN(), images)
    before = copy.deepcopy(ann.state_dict())
    snn = convert(ann, [(images, None)], gamma=2, reset="hard", v_init=0.25)
    neurons = dict(snn.neurons())
    assert list(neurons) == ["stem.2", "relu", "relu_1", "relu_2"]
    assert len({id(n) for n in neurons.values()}) == 4
    assert neurons["relu"].threshold != neurons["relu_1"].threshold
    assert all(n.gamma == 2 and n.reset_mode == "hard" and n.v_init == 0.25 for n in neurons.values())
    assert isinstance(ann.relu, nn.ReLU) and all(torch.equal(v, ann.state_dict()[k]) for k, v in before.items())


@pytest.mark.parametrize("pooling,cls", [("lipool", LIPool), ("spikemax", SpikeMaxPool), ("avg", nn.AvgPool2d)])
def test_pooling_choice(pooling, cls, images):
    snn = convert(ready(SmallCNN(), images), [(images, None)], pooling=pooling)
    found = [m for m in snn.modules() if isinstance(m, cls | nn.MaxPool2d)]
    assert len(found) == 2 and all(isinstance(m, cls) for m in found)
    if pooling != "avg":
        (name0, pool0), _ = snn.pools()
        assert pool0.unit == snn.thresholds()["features.2"]
        assert pool0.kernel_size == (2, 2)
    assert not any(isinstance(m, nn.Dropout) for m in snn.modules())


# --- convergence: accumulated output / T -> ANN logits ---------------------------------------


@pytest.mark.parametrize("cls", [SmallCNN, ResidualCNN])
@pytest.mark.parametrize("gamma", [1, 3])
def test_converges_to_ann_with_lipool(cls, gamma, images):
    ann = ready(cls(), images)
    snn = convert(ann, [(images, None)], p=100, gamma=gamma)
    e32, e128, e512 = rate_error(snn, ann, images, [32, 128, 512])
    assert e512 < 0.25 * e32 and e128 < e32
    assert e512 < 0.05


def test_spikemax_baseline_is_worse(images):
    ann = ready(SmallCNN(), images)
    lipool = rate_error(convert(ann, [(images, None)], p=100), ann, images, [512])[0]
    spikemax = rate_error(convert(ann, [(images, None)], p=100, pooling="spikemax"), ann, images, [512])[0]
    assert spikemax > 2 * lipool
