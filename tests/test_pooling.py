"""LIPool (Eq. 12) and SpikeMaxPool (Eq. 11) on burst spike trains."""

import pytest
import torch
import torch.nn.functional as F

from burstsnn.snn.pooling import LIPool, SpikeMaxPool

pytestmark = pytest.mark.usefixtures("eager_steps")

WINDOWS = [  # the pools' arguments
    dict(kernel_size=2, stride=2),
    dict(kernel_size=3, stride=2),  # overlapping
    dict(kernel_size=4, stride=4),
    dict(kernel_size=3, stride=2, padding=1),  # padded
    dict(kernel_size=3, stride=2, ceil_mode=True),
    dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 1)),
    dict(output_size=(4, 3)),  # adaptive: uneven, overlapping windows
    dict(output_size=1),  # global
]


def spike_counts(steps=16, gamma=3, shape=(2, 2, 9, 9), seed=0):
    """Burst spike counts 0..Γ, [T, B, C, H, W] (the pools' input is these times θ)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, gamma + 1, (steps, *shape), generator=g).double()


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def windows(args, h, w):
    """{(out_y, out_x): [(y, x), ...]}: each output's window of input positions, as nn.MaxPool2d
    (padding and ceil_mode) or nn.AdaptiveMaxPool2d (start ⌊i·H/H'⌋, end ⌈(i+1)·H/H'⌉) define it."""
    if "output_size" in args:
        (oh, ow) = pair(args["output_size"])
        rows = [range(i * h // oh, -(-(i + 1) * h // oh)) for i in range(oh)]
        cols = [range(j * w // ow, -(-(j + 1) * w // ow)) for j in range(ow)]
    else:
        (kh, kw), (ph, pw) = pair(args["kernel_size"]), pair(args.get("padding", 0))
        (sh, sw) = pair(args.get("stride", args["kernel_size"]))
        oh, ow = F.max_pool2d(torch.zeros(1, h, w), (kh, kw), (sh, sw), (ph, pw),
                              ceil_mode=args.get("ceil_mode", False)).shape[-2:]
        rows = [range(max(0, i * sh - ph), min(h, i * sh - ph + kh)) for i in range(oh)]
        cols = [range(max(0, j * sw - pw), min(w, j * sw - pw + kw)) for j in range(ow)]
    return {(i, j): [(y, x) for y in rows[i] for x in cols[j]] for i in range(len(rows)) for j in range(len(cols))}


def lateral_inhibition(counts):
    """The LIPooling circuit of one window (paper Fig. 4, Eq. 12), simulated neuron by neuron.

    counts: [T][n] spike counts of the window's n inputs -> [T] output spike counts.  Hidden
    neuron i integrates its input with w_exc = 1 and fires at V_th = 1; each hidden spike
    inhibits every other hidden neuron with w_inh = -1 and soft-resets its own (Eq. 4), so
    each spike lowers every hidden V by 1.  Inhibition acts before the next spike, so at most
    one neuron fires at a time; the output neuron sums the hidden spikes.
    """
    v, out = [0.0] * len(counts[0]), []
    for step in counts:
        v = [vi + s for vi, s in zip(v, step)]
        fired = 0
        while max(v) >= 1:
            fired += 1
            v = [vi - 1 for vi in v]
        out.append(fired)
    return out


def current_winner(counts):
    """The baseline of Eq. 11 for one window: pass this step's spikes of the input with the most
    spikes so far (ties: the one spiking more now).  counts: [T][n] -> [T] output counts."""
    total, out = [0.0] * len(counts[0]), []
    for step in counts:
        total = [c + s for c, s in zip(total, step)]
        best = max(total)
        out.append(max(s for c, s in zip(total, step) if c == best))
    return out


def per_window(rule, counts, args):
    """counts [T, B, C, H, W] -> ``rule`` applied to every window, [T, B, C, H', W']."""
    steps, batch, channels, h, w = counts.shape
    wins, values = windows(args, h, w), counts.tolist()
    oh, ow = max(i for i, _ in wins) + 1, max(j for _, j in wins) + 1
    out = torch.zeros(steps, batch, channels, oh, ow, dtype=counts.dtype)
    for b in range(batch):
        for c in range(channels):
            for (i, j), positions in wins.items():
                window = [[values[t][b][c][y][x] for y, x in positions] for t in range(steps)]
                out[:, b, c, i, j] = torch.tensor(rule(window), dtype=counts.dtype)
    return out


@pytest.mark.parametrize("args", WINDOWS)
@pytest.mark.parametrize("gamma", [1, 3])
def test_lipool_equals_the_lateral_inhibition_circuit(args, gamma):
    theta = 0.375  # exact in binary: sums of spikes tie exactly where counts tie
    counts = spike_counts(gamma=gamma)
    pool = LIPool(**args)
    x = counts * theta
    out = torch.cat([pool(x[:5]), pool(x[5:6]), pool(x[6:])])  # state carries over between calls
    assert torch.allclose(out / theta, per_window(lateral_inhibition, counts, args), atol=1e-9)
    assert torch.allclose(pool.cumulative_input, x.sum(0))
    assert torch.allclose(pool.cumulative_output, out.sum(0))
    pool.reset()
    assert pool.cumulative_input is None and pool.cumulative_output is None


@pytest.mark.parametrize("args", WINDOWS)
def test_spikemax_passes_the_current_winner_within_eq11_bounds(args):
    theta = 0.375  # exact in binary: sums of spikes tie exactly where counts tie
    counts = spike_counts(gamma=2, seed=3)
    pool = SpikeMaxPool(**args)
    out = torch.cat([pool(counts[:10] * theta), pool(counts[10:] * theta)]) / theta
    assert torch.allclose(out, per_window(current_winner, counts, args), atol=1e-9)
    assert torch.allclose(pool.cumulative_output / theta, out.sum(0))
    cum_out, overshoots = out.cumsum(0), False
    wins = windows(args, *counts.shape[-2:])
    for t in (0, 5, counts.shape[0] - 1):  # Eq. 11: max(O) <= output <= sum(O), O the window's inputs so far
        cum_in = counts[: t + 1].sum(0)
        for (i, j), positions in wins.items():
            window = torch.stack([cum_in[:, :, y, x] for y, x in positions], -1)  # [B, C, n]
            assert (window.amax(-1) - 1e-9 <= cum_out[t, :, :, i, j]).all()
            assert (cum_out[t, :, :, i, j] <= window.sum(-1) + 1e-9).all()
            overshoots |= bool((cum_out[t, :, :, i, j] > window.amax(-1) + 1e-9).any())
    # The winner changes on random trains: the baseline overshoots the max somewhere.
    assert overshoots


def test_pools_need_kernel_size_or_output_size():
    with pytest.raises(ValueError, match="either kernel_size"):
        LIPool()
    with pytest.raises(ValueError, match="either kernel_size"):
        SpikeMaxPool(2, output_size=3)


def alternating(steps=10):
    """Two inputs in one 2×1 window spiking in turn: a at even steps, b at odd steps."""
    x = torch.zeros(steps, 1, 1, 2, 1)
    x[0::2, 0, 0, 0, 0] = 1.0
    x[1::2, 0, 0, 1, 0] = 1.0
    return x


def test_spikemax_overshoots_on_alternating_winner():
    # t0: C=(1,0) a wins, passes 1; t1: C=(1,1) tie, b's current spike wins, passes 1; ...
    out = SpikeMaxPool((2, 1))(alternating())
    assert out.view(-1).tolist() == [1.0] * 10  # cumulative 10 > max(5, 5)


def test_lipool_exact_on_alternating_winner():
    out = LIPool((2, 1))(alternating())
    assert out.view(-1).tolist() == [1.0, 0.0] * 5  # cumulative = max(5, 5) = 5


def test_spikemax_tie_broken_by_current_spike():
    x = torch.tensor([[3.0, 1.0], [0.0, 2.0]]).view(2, 1, 1, 1, 2)  # [T, B, C, H, W]
    out = SpikeMaxPool((1, 2))(x)
    # t1: C = (3, 3) tie -> the input spiking now (value 2) passes
    assert out.view(-1).tolist() == [3.0, 2.0]


def test_spikemax_tiled_fast_path_equals_the_general_window_scan():
    """The fast path for 2×2/2-style windows picks the same winner (ties: larger input)."""
    g = torch.Generator().manual_seed(3)
    pool = SpikeMaxPool(2, 2)
    x = torch.randint(0, 3, (6, 4, 8, 8), generator=g).float()  # many ties
    c = x + torch.randint(0, 3, (6, 4, 8, 8), generator=g).float()
    assert torch.equal(pool._select_tiled(c, x), pool._select_windows(c, x))
    cl = c.contiguous(memory_format=torch.channels_last)
    assert torch.equal(pool._select_tiled(cl, x), pool._select_windows(c, x))
