"""MACs, synaptic layers, ACs (synaptic events) and the energy report, on tiny nets by hand."""

import pytest
import torch
from torch import fx, nn

from burstsnn.convert import convert
from burstsnn.energy import SynapticOps, count_macs, energy_report, synaptic_layers
from burstsnn.snn.network import MultiStep, SpikingNetwork
from burstsnn.snn.neurons import BurstNeuron


def spiking(layers: list[nn.Module]) -> SpikingNetwork:
    """Sequential(ReLU, *layers) with the ReLU a BurstNeuron(θ = 1, Γ = 3): with T = 1
    and integer inputs 0..3, the input image is the spike-count pattern."""
    gm = fx.symbolic_trace(nn.Sequential(nn.ReLU(), *layers))
    setattr(gm, "0", MultiStep(BurstNeuron(1.0, gamma=3)))
    gm.recompile()
    return SpikingNetwork(gm)


def pattern() -> torch.Tensor:
    """A 3×3 image [1, 1, 3, 3]: a burst of 3 at corner (0, 0), 2 at edge (0, 1), 1 at the centre."""
    x = torch.zeros(1, 1, 3, 3)
    x[0, 0, 0, 0], x[0, 0, 0, 1], x[0, 0, 1, 1] = 3.0, 2.0, 1.0
    return x


def acs(snn: SpikingNetwork, x: torch.Tensor, T: int) -> dict[str, float]:
    snn.sample_shape = tuple(x.shape[1:])  # a hand-built network knows it after a forward
    ops = SynapticOps(synaptic_layers(snn))
    with ops.hooks(snn):
        snn(x, T)
        ops.update(x.shape[0])
    return {name: float(v) for name, v in ops.compute().items()}


def tiny_ann() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(),
        nn.Conv2d(4, 4, 3, stride=2, groups=2), nn.ReLU(),
        nn.Flatten(), nn.Linear(16, 3),
    ).eval()


def test_count_macs_by_hand_on_ann_and_snn():
    # conv 0: 4·6·6 outputs × 2·3·3; conv 2 (groups 2): 4·2·2 × (4/2)·3·3; linear: 16·3.
    expected = {"0": 4 * 36 * 2 * 9, "2": 4 * 4 * 2 * 9, "5": 16 * 3}
    ann = tiny_ann()
    assert count_macs(ann, (2, 6, 6)) == expected
    snn = convert(ann, [(torch.rand(4, 2, 6, 6), torch.zeros(4))])
    assert count_macs(snn, (2, 6, 6)) == expected


def test_synaptic_layers_find_the_feeding_neuron():
    ann = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(2, 2, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 3),
    ).eval()
    snn = convert(ann, [(torch.rand(4, 1, 4, 4), torch.zeros(4))])
    theta = snn.thresholds()
    layers = synaptic_layers(snn)
    assert [layer.name for layer in layers] == ["0", "3", "7"]
    assert layers[0].input_unit is None
    assert torch.equal(layers[1].input_unit, theta["1"])  # through LIPool
    assert torch.equal(layers[2].input_unit, theta["4"])  # through avg pool and flatten


class SumIntoConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2, self.conv3 = nn.Conv2d(1, 2, 1), nn.Conv2d(2, 2, 1), nn.Conv2d(2, 2, 1)
        for conv in (self.conv1, self.conv2, self.conv3):
            nn.init.uniform_(conv.weight, 0.1, 1.0)  # every neuron active during calibration

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        return self.conv3(x + torch.relu(self.conv2(x)))


def test_synaptic_layers_reject_a_sum_feeding_a_conv():
    snn = convert(SumIntoConv().eval(), [(torch.rand(2, 1, 3, 3), torch.zeros(2))])
    with pytest.raises(ValueError, match="layer 'conv3'"):
        synaptic_layers(snn)


class ConcatIntoConv(nn.Module):
    """Two branches of different θ (2 and 3 channels) joined by torch.cat into a 1×1 conv."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.mix = nn.Conv2d(1, 2, 1), nn.Conv2d(1, 3, 1), nn.Conv2d(5, 2, 1)
        for conv in (self.a, self.b):
            nn.init.uniform_(conv.weight, 0.1, 1.0)  # every neuron active during calibration
        with torch.no_grad():
            self.b.weight.mul_(3.0)

    def forward(self, x):
        return self.mix(torch.cat([torch.relu(self.a(x)), torch.relu(self.b(x))], 1))


def test_synaptic_layer_after_a_concat_counts_each_channel_in_its_theta():
    x = torch.rand(3, 1, 4, 4)
    snn = convert(ConcatIntoConv().eval(), [(x, torch.zeros(3))], gamma=2)
    theta_a, theta_b = (float(t) for t in snn.thresholds().values())
    assert theta_b > 2 * theta_a
    mix = synaptic_layers(snn)[2]
    assert mix.input_unit.shape == (5, 1, 1)
    assert mix.input_unit.view(-1).tolist() == pytest.approx([theta_a] * 2 + [theta_b] * 3)
    snn.record = True
    result = acs(snn, x, T=5)
    spikes = sum(float(c.sum()) for c in snn.spike_counts().values())
    assert spikes > 0
    assert result == {"mix": pytest.approx(spikes * 2 / 3)}  # each spike reaches the 2 outputs at its position


@pytest.mark.parametrize(
    ("conv", "reach"),
    [
        # 2×2 kernel, no padding: output positions covering corner 1, edge 2, centre 4.
        (nn.Conv2d(1, 2, 2), {(0, 0): 1, (0, 1): 2, (1, 1): 4}),
        # padding 1: every input position is covered by 4 outputs.
        (nn.Conv2d(1, 2, 2, padding=1), {(0, 0): 4, (0, 1): 4, (1, 1): 4}),
        # stride 2, padding 1: the windows tile the input, each position covered once.
        (nn.Conv2d(1, 2, 2, stride=2, padding=1), {(0, 0): 1, (0, 1): 1, (1, 1): 1}),
    ],
)
def test_conv_acs_count_synaptic_events_by_hand(conv, reach):
    spikes = {(0, 0): 3, (0, 1): 2, (1, 1): 1}  # the burst of 3 counts 3
    expected = sum(k * reach[pos] for pos, k in spikes.items()) * conv.out_channels
    assert acs(spiking([conv]), pattern(), T=1) == {"1": pytest.approx(expected)}


def test_acs_are_per_image_over_all_steps():
    x = torch.cat([pattern(), torch.zeros(1, 1, 3, 3)])  # second image: no spikes
    # Image 1, per step: conv (3·1 + 2·2 + 1·4)·2 = 22 events; 2 steps; 2 images.
    assert acs(spiking([nn.Conv2d(1, 2, 2)]), x, T=2) == {"1": pytest.approx(22 * 2 / 2)}
    # Image 1, per step: 6 spikes, each reaching 5 outputs.
    assert acs(spiking([nn.Flatten(), nn.Linear(9, 5)]), x, T=2) == {"2": pytest.approx(6 * 5 * 2 / 2)}


def test_linear_acs_match_spike_probes_with_channel_wise_theta():
    torch.manual_seed(0)
    ann = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 4)).eval()
    nn.init.uniform_(ann[0].weight, -0.2, 1.0)  # every channel active during calibration
    x = torch.rand(5, 1, 6, 6)
    snn = convert(ann, [(x, torch.zeros(5))], gamma=2, channel_wise=True)
    snn.record = True
    result = acs(snn, x, T=6)
    spikes = float(snn.spike_counts()["1"].sum())
    assert spikes > 0
    assert result == {"3": pytest.approx(spikes * 4 / 5)}


def test_hooks_leave_outputs_identical_and_are_removed():
    ann = tiny_ann()
    x = torch.rand(3, 2, 6, 6)
    snn = convert(ann, [(x, torch.zeros(3))], gamma=2)
    reference = snn(x, 5)
    ops = SynapticOps(synaptic_layers(snn))
    with ops.hooks(snn):
        assert torch.equal(snn(x, 5), reference)
        ops.update(3)
    counted = ops.acs.clone()
    snn(x, 5)
    assert all(not m._forward_hooks for m in snn.net.modules())
    assert torch.equal(ops.acs, counted)
    with pytest.raises(RuntimeError, match="no forward"):
        ops.update(3)


def test_energy_report_by_hand():
    macs = {"a": 100, "b": 50, "c": 10}
    report = energy_report(macs, {"b": 20.0, "c": 5.0}, T=4, first_layers=["a"])
    assert report["ann_macs"] == 160
    assert report["snn_macs"] == 400  # the first layer costs its MACs at each of the 4 steps
    assert report["snn_acs"] == pytest.approx(25.0)
    assert report["ann_energy_pj"] == pytest.approx(160 * 4.6)
    assert report["snn_energy_pj"] == pytest.approx(400 * 4.6 + 25 * 0.9)
    assert report["energy_ratio"] == pytest.approx(1862.5 / 736.0)
    assert (report["e_mac_pj"], report["e_ac_pj"]) == (4.6, 0.9)
    assert report["acs_per_layer"] == {"b": 20.0, "c": 5.0}
    with pytest.raises(ValueError, match="non-first"):
        energy_report(macs, {"b": 20.0}, T=4, first_layers=["a"])
