"""LIPool (Eq. 12) and SpikeMaxPool (Eq. 11) on burst spike trains."""

import pytest
import torch
import torch.nn.functional as F

from burstsnn.snn.pooling import LIPool, SpikeMaxPool

WINDOWS = [  # kernel, stride, padding, ceil_mode
    (2, 2, 0, False),
    (3, 2, 0, False),  # overlapping
    (4, 4, 0, False),
    (3, 2, 1, False),  # padded
    (3, 2, 0, True),
    ((2, 3), (1, 2), (1, 1), False),
]


def spike_train(steps=24, gamma=3, theta=0.37, shape=(2, 3, 9, 9), seed=0):
    """Burst outputs: integer counts 0..Γ times θ, [T, B, C, H, W]."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, gamma + 1, (steps, *shape), generator=g).double() * theta


def maxpool(x, k, s, p, ceil):
    return F.max_pool2d(x, k, s, p, ceil_mode=ceil)


def sumpool(x, k, s, p, ceil):
    return F.avg_pool2d(x, k, s, p, ceil_mode=ceil, divisor_override=1)


@pytest.mark.parametrize("k,s,p,ceil", WINDOWS)
@pytest.mark.parametrize("gamma", [1, 3])
def test_lipool_cumulative_output_is_max_of_cumulative_input(k, s, p, ceil, gamma):
    x = spike_train(gamma=gamma)
    pool = LIPool(k, s, p, ceil)
    out = torch.cat([pool(x[:5]), pool(x[5:6]), pool(x[6:])])  # state across calls
    cum_in, cum_out = x.cumsum(0), out.cumsum(0)
    for t in range(x.shape[0]):
        assert torch.allclose(cum_out[t], maxpool(cum_in[t], k, s, p, ceil), atol=1e-9)
    assert torch.allclose(pool.cumulative_input, cum_in[-1])
    assert torch.allclose(pool.cumulative_output, cum_out[-1])
    pool.reset()
    assert pool.cumulative_input is None and pool.cumulative_output is None


@pytest.mark.parametrize("k,s,p,ceil", WINDOWS)
def test_spikemax_within_eq11_bounds(k, s, p, ceil):
    x = spike_train(gamma=2, seed=3)
    pool = SpikeMaxPool(k, s, p, ceil)
    out = torch.cat([pool(x[:10]), pool(x[10:])])
    assert out.shape == maxpool(x[0], k, s, p, ceil).unsqueeze(0).expand(x.shape[0], -1, -1, -1, -1).shape
    cum_in, cum_out = x.cumsum(0), out.cumsum(0)
    for t in range(x.shape[0]):
        assert (cum_out[t] >= maxpool(cum_in[t], k, s, p, ceil) - 1e-9).all()
        assert (cum_out[t] <= sumpool(cum_in[t], k, s, p, ceil) + 1e-9).all()
    assert torch.allclose(pool.cumulative_output, cum_out[-1])
    # On random trains the winner changes, so the baseline overshoots somewhere.
    assert (cum_out[-1] > maxpool(cum_in[-1], k, s, p, ceil) + 1e-9).any()


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
