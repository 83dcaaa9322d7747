"""BurstNeuron physics: golden step-by-step values and invariants (paper Eq. 2-4, Alg. 1)."""

import pytest
import torch

from burstsnn.snn.neurons import BurstNeuron

# Hand-written input current, exactly representable in binary floating point.
CURRENT = [0.5, 0.5, 1.5, 0.25, 3.0]


def run(neuron: BurstNeuron, current: list[float], scale: float = 1.0) -> list[float]:
    x = torch.tensor(current).mul(scale).view(-1, 1)  # [T, B=1]
    return neuron(x).view(-1).tolist()


# Expected outputs (spike counts × θ) and final V, worked out by hand with θ = 1:
#   soft Γ=1: V 0.5 | 1.0 fires (V=θ exactly) -> 0 | 1.5 -> 0.5 | 0.75 | 3.75 -> 2.75
#   soft Γ=2: ... | 3.75 fires 2 -> 1.75;  soft Γ=5: ... | 3.75 fires 3 -> 0.75
#   hard Γ=1: V 0.5 | 1.0 -> 0 | 1.5 -> 0 | 0.25 | 3.25 -> 0;  hard Γ=2: last step fires 2
#   soft Γ=1, v_init=0.5: V 1.0 -> 0 | 0.5 | 2.0 -> 1.0 | 1.25 -> 0.25 | 3.25 -> 2.25
#   soft Γ=2, v_init=0.5: V 1.0 -> 0 | 0.5 | 2.0 fires 2 -> 0 | 0.25 | 3.25 fires 2 -> 1.25
GOLDEN = [
    # gamma, reset, v_init, outputs, final V
    (1, "soft", 0.0, [0, 1, 1, 0, 1], 2.75),
    (2, "soft", 0.0, [0, 1, 1, 0, 2], 1.75),
    (5, "soft", 0.0, [0, 1, 1, 0, 3], 0.75),
    (1, "hard", 0.0, [0, 1, 1, 0, 1], 0.0),
    (2, "hard", 0.0, [0, 1, 1, 0, 2], 0.0),
    (5, "hard", 0.0, [0, 1, 1, 0, 3], 0.0),
    (1, "soft", 0.5, [1, 0, 1, 1, 1], 2.25),
    (2, "soft", 0.5, [1, 0, 2, 0, 2], 1.25),
    (1, "hard", 0.5, [1, 0, 1, 0, 1], 0.0),
]


@pytest.mark.parametrize("gamma,reset,v_init,expected,v_final", GOLDEN)
@pytest.mark.parametrize("theta", [1.0, 2.0, 0.1])
def test_golden_sequences(gamma, reset, v_init, expected, v_final, theta):
    neuron = BurstNeuron(theta, gamma=gamma, reset=reset, v_init=v_init)
    out = run(neuron, CURRENT, scale=theta)  # same sequence in units of θ
    assert out == pytest.approx([e * theta for e in expected], abs=1e-6)
    assert neuron.v.item() == pytest.approx(v_final * theta, abs=1e-6)


def algorithm1(current, theta, gamma, reset="soft", v_init=0.0):
    """One neuron, step by step, as Algorithm 1 (Transmit with Burst Spikes) and Eq. 2-4 write it.

    current: [T] input currents -> [T] spike counts.  Per step: V += I (Eq. 2); while the
    neuron is at threshold (Eq. 3: V >= θ) and fewer than Γ spikes went out (§3.3: Γ is the
    most spikes per step; Γ = 1 is the IF neuron of Eq. 3-4), emit one more spike and
    soft-reset V -= θ (Eq. 4).  Hard reset (the other reset rule): V = 0 after a burst.
    """
    v, spikes = v_init * theta, []
    for i in current:
        v += i
        out = 0
        s = 1 if v >= theta else 0
        while out < gamma and s == 1:
            out += s
            v -= theta
            s = 1 if v >= theta else 0
        if reset == "hard" and out > 0:
            v = 0.0
        spikes.append(out)
    return spikes


@pytest.mark.parametrize("gamma", [1, 2, 5])
@pytest.mark.parametrize("reset", ["soft", "hard"])
@pytest.mark.parametrize("v_init", [0.0, 0.5])
def test_equals_algorithm1_step_by_step(gamma, reset, v_init):
    theta = torch.tensor([0.5, 0.75, 1.25]).view(3, 1)  # per channel, exact in binary
    g = torch.Generator().manual_seed(gamma)
    current = (torch.randint(-8, 33, (40, 2, 3, 4), generator=g) / 8).double()  # [T, B, C, N], multiples of 1/8
    neuron = BurstNeuron(theta.double(), gamma=gamma, reset=reset, v_init=v_init)
    counts = torch.cat([neuron(current[:15]), neuron(current[15:])]) / theta.double()
    for b in range(2):
        for c in range(3):
            for n in range(4):
                expected = algorithm1(current[:, b, c, n].tolist(), float(theta[c]), gamma, reset, v_init)
                assert counts[:, b, c, n].tolist() == expected, (b, c, n)
    assert counts.max() == gamma  # the burst cap is reached


def test_fires_at_threshold_exactly():
    for theta in [0.1, 0.3, 1.0, 7.3, 1e-3, 123.456]:
        neuron = BurstNeuron(theta)
        out = neuron(torch.full((1, 4), theta))
        assert torch.equal(out, torch.full((1, 4), theta))
        assert torch.equal(neuron.v, torch.zeros(4))


def test_per_channel_threshold():
    theta = torch.tensor([1.0, 2.0]).view(2, 1)
    neuron = BurstNeuron(theta, gamma=2)
    x = torch.full((3, 1, 2, 1), 1.5)  # [T, B, C, N]
    out = neuron(x).squeeze(-1).squeeze(1)
    # channel 0 (θ=1): V 1.5 -> 1 spike, 0.5 | 2.0 -> 2, 0 | 1.5 -> 1, 0.5
    # channel 1 (θ=2): V 1.5 | 3.0 -> 1, 1.0 | 2.5 -> 1, 0.5
    assert out.tolist() == [[1.0, 0.0], [2.0, 2.0], [1.0, 2.0]]


@pytest.mark.parametrize("gamma", [1, 2, 5])
def test_soft_reset_conserves_charge(gamma):
    torch.manual_seed(0)
    theta = 0.7
    x = torch.randn(50, 4, 6, dtype=torch.float64) * 1.5
    neuron = BurstNeuron(theta, gamma=gamma, v_init=0.3)
    out = neuron(x)
    v0 = 0.3 * theta
    assert torch.allclose(out.sum(0) + neuron.v, x.sum(0) + v0, atol=1e-9)


@pytest.mark.parametrize("gamma", [1, 2, 5])
@pytest.mark.parametrize("reset", ["soft", "hard"])
def test_at_most_gamma_integer_spikes(gamma, reset):
    torch.manual_seed(1)
    theta = 0.37
    neuron = BurstNeuron(theta, gamma=gamma, reset=reset)
    counts = neuron(torch.rand(40, 8, 5) * 3.0) / theta
    assert torch.allclose(counts, counts.round(), atol=1e-5)
    assert counts.min() >= 0 and counts.max() <= gamma + 1e-5
    assert counts.max() > gamma - 1e-5  # the cap is actually reached with this input


def test_state_carries_over_until_reset():
    torch.manual_seed(2)
    x = torch.rand(20, 3, 4) * 2
    whole = BurstNeuron(0.5, gamma=2)(x)
    split = BurstNeuron(0.5, gamma=2)
    parts = torch.cat([split(x[:7]), split(x[7:])])
    assert torch.equal(whole, parts)
    split.reset()
    assert split.v is None
    assert torch.equal(split(x), whole)


def test_record_counts_bursts():
    neuron = BurstNeuron(1.0, gamma=5)
    neuron.record = True
    x = torch.tensor(CURRENT).view(-1, 1).repeat(1, 3)  # 3 identical neurons
    neuron(x[:2])
    neuron(x[2:])
    assert neuron.spikes.tolist() == [5, 5, 5]  # per neuron: 0 + 1 + 1 + 0 + 3 spikes
    assert neuron.spike_count().item() == 15
    assert neuron.num_neurons == 1  # per sample: x is [T, B, ...] with B = 3


@pytest.mark.parametrize(
    "kwargs", [dict(gamma=0), dict(gamma=1.5), dict(reset="zero"), dict(threshold=0.0), dict(threshold=-1.0)]
)
def test_invalid_arguments(kwargs):
    args = dict(threshold=1.0) | kwargs
    with pytest.raises(ValueError):
        BurstNeuron(**args)


@pytest.mark.parametrize("gamma", [5, 2**22])  # B·T·Γ below 2^24 (float32 sum over the batch) and above
def test_spike_count_is_the_exact_total(gamma):
    g = torch.Generator().manual_seed(4)
    x = torch.rand(3, 4, 2, 5, 5, generator=g) * 6  # [T, B, C, H, W]
    x = x.flatten(0, 1).contiguous(memory_format=torch.channels_last).view(3, 4, 2, 5, 5)
    neuron = BurstNeuron(0.5, gamma=gamma)
    neuron.record = True
    neuron(x)
    total = neuron.spike_count()
    assert total.dtype == torch.float64 and total.shape == ()
    assert total.item() == int(neuron.spikes.to(torch.int64).sum()) > 0


def test_spike_counter_widens_before_it_could_overflow():
    """Counts start in uint8 and move to float32 (keeping them) before a call could pass 255."""
    neuron = BurstNeuron(0.1, gamma=5)
    neuron.record = True
    x = torch.full((60, 2, 3), 10.0)  # 5 spikes per step and neuron
    neuron(x[:50])  # 250 ≤ 255
    assert neuron.spikes.dtype == torch.uint8 and neuron.spikes.eq(250).all()
    neuron(x[50:51])  # 255
    assert neuron.spikes.dtype == torch.uint8
    neuron(x[51:])  # 300 > 255: widened first
    assert neuron.spikes.dtype == torch.float32 and neuron.spikes.eq(300).all()
    assert neuron.spike_count().item() == 300 * 6
