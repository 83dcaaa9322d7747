"""SpikingNetwork: chunking, the time-constant prefix, reset, probes."""

import copy

import pytest
import torch
import torch.nn.functional as F

from burstsnn.conversion.convert import convert
from burstsnn.snn.network import MultiStep
from conftest import ResidualCNN, SmallCNN, ready


@pytest.fixture(scope="module", params=["SmallCNN-lipool", "ResidualCNN-spikemax", "SmallCNN-avg"])
def case(request):
    name, pooling = request.param.split("-")
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    ann = ready({"SmallCNN": SmallCNN, "ResidualCNN": ResidualCNN}[name](), x)
    return convert(ann, [(x, None)], p=99.9, gamma=2, pooling=pooling), x


def spikes_and_outputs(snn, x, T, chunk):
    snn.record = True
    try:
        out = snn(x, T, chunk=chunk)
        return {name: n.spikes.clone() for name, n in snn.neurons()}, out
    finally:
        snn.record = False


def test_output_shape_and_chunks_agree(case):
    """Any chunking gives the same spikes in every layer, and the same outputs: bit for bit step
    by step, to rounding where several steps run as one batch (a batch of k steps may take
    other BLAS kernels than one step: seen with MKL on Intel CPUs). In float64, so that such a
    rounding difference cannot flip a spike."""
    snn, x = case
    snn, x = copy.deepcopy(snn).double(), x.double()
    T = 20
    spikes, full = spikes_and_outputs(snn, x, T, None)
    assert full.shape == (T, 3, 10) and snn.last_chunk == 1
    assert sum(s.sum() for s in spikes.values()) > 0
    for chunk in [1, 3, 7, T]:
        chunk_spikes, out = spikes_and_outputs(snn, x, T, chunk)
        assert chunk_spikes.keys() == spikes.keys()
        assert all(torch.equal(chunk_spikes[k], spikes[k]) for k in spikes), chunk
        if chunk == 1:
            assert torch.equal(out, full)
        else:
            assert torch.allclose(out, full, rtol=1e-12, atol=1e-12 * float(full.abs().max())), chunk


def test_every_call_starts_from_reset(case):
    snn, x = case
    first = snn(x, 9)
    snn(x * 2, 5)
    assert torch.equal(snn(x, 9), first)


def test_prefix_matches_naive_simulation(case):
    """Computing the time-constant prefix once equals feeding the image at every step."""
    snn, x = case
    T = 12
    out = snn(x, T)
    snn.reset()
    for m in snn.net.modules():
        if isinstance(m, MultiStep):
            m.steps = T
    with torch.inference_mode():
        naive = snn.net(x.unsqueeze(0).expand(T, *x.shape).reshape(-1, *x.shape[1:]))
    assert torch.allclose(naive.view(T, 3, -1), out, atol=1e-5)


def test_recording_does_not_change_outputs(case):
    snn, x = case
    quiet = snn(x, 16)
    snn.record = True
    try:
        loud = snn(x, 16, chunk=5)
    finally:
        snn.record = False
    assert torch.allclose(loud, quiet, atol=1e-5)


def test_spike_totals_match_independent_count(case):
    snn, x = case
    seen = {}

    def hook(name):
        def count(module, inputs, output):  # output: [steps, B, ...] = s·θ
            s = (output / module.threshold).round()
            seen[name] = seen.get(name, 0) + s.sum(0)  # each neuron's spikes

        return count

    handles = [n.register_forward_hook(hook(name)) for name, n in snn.neurons()]
    snn.record = True
    try:
        snn(x, 16, chunk=6)
    finally:
        snn.record = False
        for h in handles:
            h.remove()
    totals = snn.spike_totals()
    assert list(totals) == list(seen) and len(totals) >= 2
    for name, n in snn.neurons():
        assert torch.equal(n.spikes, seen[name])  # per neuron and sample
        assert totals[name].shape == () and totals[name].dtype == torch.float64
        assert totals[name] == seen[name].sum(dtype=torch.float64)
    assert sum(totals.values()) > 0


def test_neuron_counts_and_thresholds(case):
    snn, x = case
    snn(x, 2)
    counts, thetas = snn.neuron_counts(), snn.thresholds()
    assert list(counts) == list(thetas)
    assert next(iter(counts.values())) == 8 * 16 * 16  # first ReLU: 8 channels, 16×16
    assert all(t.numel() == 1 and t.item() > 0 for t in thetas.values())


def test_pool_states_in_spike_counts(case):
    snn, x = case
    snn(x, 24)
    states = snn.pool_states()
    assert len(states) == len(list(snn.pools()))  # avg pooling: none
    for name, pool in snn.pools():
        cum_in, cum_out = states[name]
        assert torch.allclose(cum_in, cum_in.round(), atol=1e-3)  # counts, not θ units
        if type(pool).__name__ == "LIPool":
            expected = F.max_pool2d(cum_in, pool.kernel_size, pool.stride, pool.padding)
            assert torch.allclose(cum_out, expected, atol=1e-3)
        else:
            assert (cum_out >= F.max_pool2d(cum_in, pool.kernel_size, pool.stride, pool.padding) - 1e-3).all()


def test_stays_in_eval_mode(case):
    snn, _ = case
    snn.train()
    assert not snn.training and not any(m.training for m in snn.modules())


@pytest.mark.parametrize("kwargs", [dict(T=0), dict(T=2.5), dict(T=4, chunk=0)])
def test_invalid_simulation_arguments(case, kwargs):
    snn, x = case
    with pytest.raises(ValueError):
        snn(x, **kwargs)
