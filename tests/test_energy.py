"""MACs, synaptic layers, ACs (synaptic events) and the energy report, on tiny nets by hand."""

import pytest
import torch
import torch.nn.functional as F
from torch import fx, nn

from burstsnn.conversion.convert import convert
from burstsnn.measure.energy import E_AC_PJ, E_MAC_PJ, energy_over_t, energy_report
from burstsnn.measure.metrics import SNNMetrics
from burstsnn.measure.synapses import SynapticOps, _counts_over_samples, count_macs, synaptic_layers
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


def acs_per_step(snn: SpikingNetwork, x: torch.Tensor, T: int, chunk: int | None = None) -> dict[str, list[float]]:
    ops = SynapticOps(synaptic_layers(snn, x.shape[1:]), T)
    with ops.hooks(snn):
        snn(x, T, chunk)
        ops.update(x.shape[0])
    return {name: v.reshape(-1).tolist() for name, v in ops.compute().items()}


def acs(snn: SpikingNetwork, x: torch.Tensor, T: int) -> dict[str, float]:
    """ACs per image over all T steps."""
    return {name: sum(v) for name, v in acs_per_step(snn, x, T).items()}


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
    layers = synaptic_layers(snn, (1, 4, 4))
    assert [layer.name for layer in layers] == ["0", "3", "7"]
    assert layers[0].fed_by == "input" and layers[0].theta is None and layers[0].sources == ()
    # Through LIPool: the neuron's θ at each of the [2, 2, 2] pooled inputs; the pool sends them.
    assert torch.equal(layers[1].theta, theta["1"].expand(2, 2, 2)) and layers[1].sources == ("2",)
    # Through a 2×2 average and flatten: each input of the Linear receives the 4 spikes of its
    # window, so value / (θ/4) counts them.
    assert torch.allclose(layers[2].theta, theta["4"].expand(2) / 4) and layers[2].sources == ("4",)
    assert [layer.peak for layer in layers[1:]] == [1, 4]  # Γ = 1; four positions per window


class SumIntoConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2, self.conv3 = nn.Conv2d(1, 2, 1), nn.Conv2d(2, 2, 1), nn.Conv2d(2, 2, 1)
        for conv in (self.conv1, self.conv2, self.conv3):
            nn.init.uniform_(conv.weight, 0.1, 1.0)  # every neuron active during calibration

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        return self.conv3(x + torch.relu(self.conv2(x)))


def test_a_layer_fed_by_another_layers_current_costs_its_macs_at_every_step():
    # conv "2" gets spikes; conv "3" gets conv 2's output with no neuron between (a linear
    # bottleneck, as in MNASNet and ShuffleNet): analog values, so MACs at every step like conv "0".
    torch.manual_seed(0)
    ann = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Conv2d(2, 3, 1), nn.Conv2d(3, 2, 3),
                        nn.ReLU(), nn.Flatten(), nn.Linear(2 * 2 * 2, 3)).eval()
    for conv in (ann[0], ann[2], ann[3]):
        nn.init.uniform_(conv.weight, 0.1, 1.0)  # every neuron active during calibration
    x = torch.rand(2, 1, 4, 4)
    snn = convert(ann, [(x, None)])
    assert [(layer.name, layer.fed_by) for layer in synaptic_layers(snn, (1, 4, 4))] == [
        ("0", "input"), ("2", "spikes"), ("3", "current"), ("6", "spikes")]
    metrics = SNNMetrics(snn, 5, (1, 4, 4))
    with metrics.attach(snn):
        outputs = snn(x, 5)
    metrics.update(snn, outputs, torch.zeros(2, dtype=torch.long), outputs.sum(0).argmax(-1))
    energy = metrics.compute()["energy"]
    # MACs by hand: conv 0: 2·16 outputs × 9; conv 3: 2·4 outputs × 3·9; over 5 steps.
    assert energy["mac_layers"] == ["0", "3"] and energy["snn_macs"] == 5 * (2 * 16 * 9 + 2 * 4 * 27)
    assert set(energy["acs_per_layer"]) == {"2", "6"}


def test_synaptic_layers_reject_a_sum_of_spikes_of_different_theta_feeding_a_conv():
    snn = convert(SumIntoConv().eval(), [(torch.rand(2, 1, 3, 3), torch.zeros(2))])
    assert snn.thresholds()["relu"] != snn.thresholds()["relu_1"]
    with pytest.raises(ValueError, match="layer 'conv3': its input is a sum of spikes of different θ"):
        synaptic_layers(snn, (1, 3, 3))


class ConcatIntoConv(nn.Module):
    """Two spiking sources joined by torch.cat (optionally then a channel shuffle, as in
    ShuffleNet) into a 3×3 conv with stride 2 and padding 1: x ``[B, 2, 3, 3]``, channel 0
    into neuron ``a``, channel 1 into neuron ``b``."""

    def __init__(self, shuffle: bool):
        super().__init__()
        self.a, self.b, self.mix, self.shuffle = nn.ReLU(), nn.ReLU(), nn.Conv2d(2, 3, 3, stride=2, padding=1), shuffle

    def forward(self, x):
        left, right = torch.chunk(x, 2, dim=1)
        joined = torch.cat([self.a(left), self.b(right)], 1)
        if self.shuffle:  # channel shuffle, 2 groups of 1
            n, c, h, w = joined.size()
            joined = joined.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, c, h, w)
        return self.mix(joined)


@pytest.mark.parametrize("shuffle", [False, True])
def test_acs_through_a_concat_count_each_source_with_its_own_theta(shuffle):
    gm = fx.symbolic_trace(ConcatIntoConv(shuffle).eval())
    gm.a, gm.b = MultiStep(BurstNeuron(1.0, gamma=3)), MultiStep(BurstNeuron(2.0, gamma=3))
    gm.recompile()
    snn = SpikingNetwork(gm)
    x = torch.zeros(1, 2, 3, 3)
    x[0, 0, 0, 0], x[0, 0, 1, 1] = 3.0, 1.0  # neuron a (θ = 1): 3 spikes at (0, 0), 1 at (1, 1)
    x[0, 1, 0, 1], x[0, 1, 2, 2] = 4.0, 6.0  # neuron b (θ = 2): 2 spikes at (0, 1), 3 at (2, 2)
    # 3×3 windows, stride 2, padding 1 on 3×3: rows/columns 0 and 2 lie in one window, 1 in two,
    # so (0, 0) reaches 1 output position, (1, 1) 4, (0, 1) 2, (2, 2) 1; 3 output channels.
    # a: 3·1 + 1·4 = 7, b: 2·2 + 3·1 = 7 -> (7 + 7)·3 = 42 events (b counted at θ = 1 would give 63).
    assert acs(snn, x, T=1) == {"mix": pytest.approx(42)}
    assert synaptic_layers(snn, (2, 3, 3))[0].sources == ("a", "b")


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


@pytest.mark.parametrize("chunk", [1, 3, None])
def test_acs_per_step_follow_the_spikes_of_each_step(chunk):
    # Input 0.5 into a neuron with θ = 1 (soft reset, V(0) = 0): V = 0.5, 1 → spike, 0.5, 1 → spike, ...
    # so the pixel spikes at steps 2, 4, 6; the pixel at 1.0 spikes every step; the 2.0 one twice.
    x = torch.zeros(1, 1, 3, 3)
    x[0, 0, 0, 0], x[0, 0, 2, 2], x[0, 0, 1, 2] = 0.5, 1.0, 2.0
    spikes_at = {1: {(2, 2): 1, (1, 2): 2}, 2: {(0, 0): 1, (2, 2): 1, (1, 2): 2}}
    # 2×2 kernel, no padding (3×3 → 2×2 outputs): corner positions reach 1 output, edges 2.
    reach = {(0, 0): 1, (2, 2): 1, (1, 2): 2}
    per_step = [sum(k * reach[pos] for pos, k in spikes_at[1 + t % 2].items()) * 3 for t in range(6)]
    assert per_step[:2] == [(1 + 4) * 3, (1 + 1 + 4) * 3]
    assert acs_per_step(spiking([nn.Conv2d(1, 3, 2)]), x, T=6, chunk=chunk) == {"1": pytest.approx(per_step)}


def test_energy_costs_are_the_papers():
    # §4.4: "a 32-bit floating-point MAC operation consumes 4.6J, while the AC operation only consumes 0.9J"
    # (pJ in the cited Rathi & Roy 2021).
    assert (E_MAC_PJ, E_AC_PJ) == (4.6, 0.9)


def test_energy_over_t_by_hand():
    macs = {"a": 100, "b": 50, "c": 10}  # "a" is fed by the analog input
    over_t = energy_over_t(macs, {"b": [5.0, 15.0], "c": [0.0, 5.0]}, T=2, mac_layers=["a"])
    # ANN: 160 MACs = 736 pJ. t = 1: layer a's 100 MACs (460 pJ) + 5 ACs (4.5 pJ) = 464.5 pJ;
    # t = 2: 200 MACs (920 pJ) + 25 ACs (22.5 pJ) = 942.5 pJ.
    assert over_t == pytest.approx([464.5 / 736, 942.5 / 736])
    # Stopped at T, it is the whole run's energy (totals b = 20, c = 5).
    whole_run = energy_report(macs, {"b": 20.0, "c": 5.0}, T=2, mac_layers=["a"])
    assert over_t[-1] == pytest.approx(whole_run["energy_ratio"])
    with pytest.raises(ValueError, match="expected T=3"):
        energy_over_t(macs, {"b": [5.0, 15.0], "c": [0.0, 5.0]}, T=3, mac_layers=["a"])


class FunctionalAvgPool(nn.Module):
    def forward(self, x):
        return F.avg_pool2d(x, 2, 1)


@pytest.mark.parametrize(
    ("layers", "expected"),
    [
        # 2×2 windows, stride 1 (overlapping): corner burst 3 in 1 window, edge 2 in 2, centre 1
        # in 4 -> the four pooled positions receive 6, 3, 1, 1 = 11 spikes; each reaches 5 outputs.
        ([nn.AvgPool2d(2, stride=1), nn.Flatten(), nn.Linear(4, 5)], 11 * 5),
        ([FunctionalAvgPool(), nn.Flatten(), nn.Linear(4, 5)], 11 * 5),
        ([nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(4, 5)], 11 * 5),  # windows [0, 2), [1, 3)
        # the 2×2 pooled map into a 2×2 conv: each pooled position reaches 1 output × 2 channels.
        ([nn.AvgPool2d(2, stride=1), nn.Conv2d(1, 2, 2)], 11 * 2),
        # stride 2, padding 1: the windows tile the image, each spike reaches one pooled position.
        ([nn.AvgPool2d(2, stride=2, padding=1), nn.Flatten(), nn.Linear(4, 5)], 6 * 5),
        ([nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1, 4)], 6 * 4),
    ],
)
def test_acs_behind_an_average_pool_count_every_spike_the_pool_passes_on(layers, expected):
    # The pooled mean would give 11/4·5, 11/4·2, 6/4·5 and 6/9·4: ACs of spikes never sent.
    assert list(acs(spiking(layers), pattern(), T=1).values()) == [pytest.approx(expected)]


def test_acs_are_exact_counts_whatever_the_batches():
    """Summed over any split of the images (as over DDP shards) the ACs are the same integers."""
    ann = tiny_ann()
    x = torch.rand(7, 2, 6, 6)
    snn = convert(ann, [(x, torch.zeros(7))], gamma=3, theta_scale=0.3)

    def total_acs(batches: list[torch.Tensor]) -> torch.Tensor:
        ops = SynapticOps(synaptic_layers(snn, (2, 6, 6)), 6)
        with ops.hooks(snn):
            for batch in batches:
                snn(batch, 6)
                ops.update(batch.shape[0])
        return ops.acs

    whole = total_acs([x])
    assert torch.all(whole > 0) and torch.equal(whole, whole.round())
    assert torch.equal(total_acs([x[:3], x[3:]]), whole)
    assert torch.equal(total_acs([x[0::2], x[1::2]]), whole)


def test_acs_behind_lipool_are_the_spikes_it_passes_on_counted_one_by_one():
    """The hook sums spike values over the batch before dividing by θ; the count must equal
    every value divided by θ and rounded on its own (done here), behind an LIPool too."""
    torch.manual_seed(0)
    ann = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(3 * 4 * 4, 5),
    ).eval()
    x = torch.rand(300, 1, 8, 8)
    snn = convert(ann, [(x, torch.zeros(300))], gamma=5, theta_scale=1 / 5, pooling="lipool")
    theta = snn.net.get_submodule("1").module.threshold
    pooled_spikes = []
    handle = snn.net.get_submodule("2").register_forward_hook(
        lambda module, inputs, output: pooled_spikes.append((output / theta).round().sum().item())
    )
    ops = SynapticOps(synaptic_layers(snn, (1, 8, 8)), 40)
    try:
        with ops.hooks(snn):
            snn(x, 40)
            ops.update(300)
    finally:
        handle.remove()
    assert sum(pooled_spikes) > 10_000
    assert ops.acs.sum().item() == sum(pooled_spikes) * 5


def test_spike_counts_summed_in_chunks_are_exact():
    """3000 samples (4 chunks of at most 774) of up to Γ = 7 spikes with an awkward θ:
    the float32 sums divided by θ come out as the exact integer counts."""
    generator = torch.Generator().manual_seed(0)
    theta = torch.tensor(0.1234567, dtype=torch.float32)
    spikes = torch.randint(0, 8, (2, 3000, 4, 3, 3), generator=generator)
    counts = _counts_over_samples(spikes.float() * theta, theta, peak=7)
    assert counts.dtype == torch.float64
    assert torch.equal(counts, spikes.sum(1).double())


def test_linear_acs_match_spike_probes_with_channel_wise_theta():
    torch.manual_seed(0)
    ann = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 4)).eval()
    nn.init.uniform_(ann[0].weight, -0.2, 1.0)  # every channel active during calibration
    x = torch.rand(5, 1, 6, 6)
    snn = convert(ann, [(x, torch.zeros(5))], gamma=2, channel_wise=True)
    snn.record = True
    result = acs(snn, x, T=6)
    spikes = float(snn.spike_totals()["1"])
    assert spikes > 0
    assert result == {"3": pytest.approx(spikes * 4 / 5)}


def test_hooks_leave_outputs_identical_and_are_removed():
    ann = tiny_ann()
    x = torch.rand(3, 2, 6, 6)
    snn = convert(ann, [(x, torch.zeros(3))], gamma=2)
    reference = snn(x, 5)
    ops = SynapticOps(synaptic_layers(snn, (2, 6, 6)), 5)
    with ops.hooks(snn):
        assert torch.equal(snn(x, 5), reference)
        ops.update(3)
    counted = ops.acs.clone()
    snn(x, 5)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in snn.net.modules())
    assert torch.equal(ops.acs, counted)
    with pytest.raises(RuntimeError, match="no forward"):
        ops.update(3)


def test_energy_report_by_hand():
    macs = {"a": 100, "b": 50, "c": 10}
    report = energy_report(macs, {"b": 20.0, "c": 5.0}, T=4, mac_layers=["a"])
    assert report["ann_macs"] == 160
    assert report["snn_macs"] == 400  # the first layer costs its MACs at each of the 4 steps
    assert report["snn_acs"] == pytest.approx(25.0)
    assert report["ann_energy_pj"] == pytest.approx(736.0)  # 160 MACs · 4.6 pJ
    assert report["snn_energy_pj"] == pytest.approx(1862.5)  # 400 MACs · 4.6 pJ + 25 ACs · 0.9 pJ
    assert report["energy_ratio"] == pytest.approx(1862.5 / 736.0)
    assert (report["e_mac_pj"], report["e_ac_pj"]) == (4.6, 0.9)
    assert report["acs_per_layer"] == {"b": 20.0, "c": 5.0} and report["mac_layers"] == ["a"]
    with pytest.raises(ValueError, match="spike-fed layers"):
        energy_report(macs, {"b": 20.0}, T=4, mac_layers=["a"])
