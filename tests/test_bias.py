"""Bias correction: each neuron's mean first-step input current equals the ANN's mean
pre-activation, per channel (checked against a quantised network written here)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from burstsnn.conversion.convert import convert
from burstsnn.errors import ConversionError
from conftest import ResidualCNN, ready

GAMMA = 2


class TinyResidual(nn.Module):
    """conv-BN-ReLU, then a residual block whose sum (conv-BN + the stem) feeds a ReLU, then a Linear."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU())
        self.conv1, self.bn1 = nn.Conv2d(6, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6)
        self.relu1 = nn.ReLU()
        self.conv2, self.bn2 = nn.Conv2d(6, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6)
        self.relu2 = nn.ReLU()
        self.fc = nn.Linear(6 * 8 * 8, 10)

    def forward(self, x):
        a0 = self.stem(x)
        a1 = self.relu1(self.bn1(self.conv1(a0)))
        return self.fc(torch.flatten(self.relu2(self.bn2(self.conv2(a1)) + a0), 1))


def ann_preactivations(ann, x):
    """The ANN's inputs to its three ReLUs (BN not folded)."""
    z0 = ann.stem[1](ann.stem[0](x))
    z1 = ann.bn1(ann.conv1(F.relu(z0)))
    z2 = ann.bn2(ann.conv2(F.relu(z1))) + F.relu(z0)
    return [z0, z1, z2]


def first_step(snn, x):
    """The SNN's first step written out: each neuron rounds its input current z to
    θ·clamp(⌊z/θ + ½⌋, 0, Γ) (V(0) = θ/2, Algorithm 1 at t = 1). Returns the three neurons'
    input currents and the output layer's current."""
    net, theta = snn.net, snn.thresholds()

    def spikes(z, name):
        return theta[name] * torch.clamp(torch.floor(z / theta[name] + 0.5), 0, GAMMA)

    z0 = net.get_submodule("stem.0")(x)
    s0 = spikes(z0, "stem.2")
    z1 = net.get_submodule("conv1")(s0)
    z2 = net.get_submodule("conv2")(spikes(z1, "relu1")) + s0
    out = net.get_submodule("fc")(torch.flatten(spikes(z2, "relu2"), 1))
    return [z0, z1, z2], out


def channel_means(z):
    return z.transpose(0, 1).reshape(z.shape[1], -1).mean(1)


@pytest.fixture(scope="module")
def setting():
    x = torch.randn(32, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    ann = ready(TinyResidual(), x)
    kwargs = dict(gamma=GAMMA, theta_scale=1 / GAMMA, v_init=0.5, channel_wise=True, lambda_rule="mse")
    with torch.no_grad():
        plain = convert(ann, [(x, None)], **kwargs)
        corrected = convert(ann, [(x, None)], bias_correction=True, **kwargs)
        return x, [channel_means(z) for z in ann_preactivations(ann, x)], plain, corrected


def test_written_out_first_step_is_the_simulation(setting):
    x, _, plain, corrected = setting
    for snn in (plain, corrected):
        with torch.no_grad():
            assert torch.allclose(first_step(snn, x)[1], snn(x, 1)[0], atol=1e-5)


def test_corrected_first_step_means_equal_the_anns(setting):
    x, targets, plain, corrected = setting
    with torch.no_grad():
        before = [channel_means(z) for z in first_step(plain, x)[0]]
        after = [channel_means(z) for z in first_step(corrected, x)[0]]
    # The quantisers shift the means of the layers behind them (so this test can fail) ...
    assert all((b - t).abs().max() > 1e-2 for b, t in zip(before[1:], targets[1:]))  # 0.027, 0.032
    # ... and the correction takes that shift out, layer by layer (the stem sees the image).
    for a, t in zip(after, targets):
        assert torch.allclose(a, t, atol=1e-5)


def test_correction_moves_only_biases(setting):
    _, _, plain, corrected = setting
    weights = {k: v for k, v in plain.net.state_dict().items() if not k.endswith("bias")}
    for k, v in weights.items():
        assert torch.equal(v, corrected.net.state_dict()[k]), k
    assert not torch.equal(plain.net.conv2.bias, corrected.net.conv2.bias)


def test_neuron_fed_by_a_neuron_is_refused():
    x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    ann = ready(ResidualCNN(), x)  # its last ReLU takes the previous ReLU's output
    with pytest.raises(ConversionError, match="bias_correction.*relu.*set bias_correction=false"):
        convert(ann, [(x, None)], gamma=2, bias_correction=True)
