"""fold_bn, calibration (λ = p-th percentile) and ANN -> SNN conversion."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from burstsnn.conversion.calibrate import FirstStep, mse_lambda, percentile
from burstsnn.conversion.convert import convert, fold_bn
from burstsnn.errors import ConfigError, ConversionError
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
    assert percentile(x.sort().values, p, is_sorted=True).item() == percentile(x, p).item()


def test_percentile_per_row_matches_numpy():
    x = torch.randn(4, 999, generator=torch.Generator().manual_seed(2))
    expected = np.percentile(x.double().numpy(), 99.9, axis=1, method="linear")
    assert np.allclose(percentile(x, 99.9, dim=1).numpy(), expected, rtol=1e-12)
    assert torch.equal(percentile(x.sort(1).values, 99.9, dim=1, is_sorted=True), percentile(x, 99.9, dim=1))


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
    with pytest.raises(ConversionError, match="layer '1'"):
        convert(ann, [(x, None)])


# --- convert: arguments, refusals, call sites ------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,word",
    [
        (dict(p=0), r"p=0 is not allowed: a number in \(0, 100\]"), (dict(p=100.5), "p=100.5"),
        (dict(gamma=0), "gamma=0 is not allowed: an integer ≥ 1"), (dict(gamma=2.0), "gamma=2.0"),
        (dict(pooling="max"), "pooling='max' is not allowed: one of lipool, spikemax, avg"),
        (dict(reset="none"), "reset='none'"), (dict(theta_scale=0), "theta_scale=0"),
        (dict(calib_batches=0), "calib_batches=0"),
        (dict(v_init=1.0), r"v_init=1.0 is not allowed: a number in \[0, 1\)"),
        (dict(channel_wise=2), "channel_wise=2 is not allowed: true or false"),
    ],
)
def test_invalid_arguments(kwargs, word, images):
    """The same rules and messages as the job config's (burstsnn.rules)."""
    with pytest.raises(ConfigError, match=word):
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


# --- graph coverage: joins, shuffles, functional and adaptive pools, constants, in-place ---------


class Branches(nn.Module):
    """The graph ops of SqueezeNet, GoogLeNet and ShuffleNet on a tiny scale: two ReLU branches
    of different θ joined by torch.cat, F.max_pool2d, a view/transpose channel shuffle, chunk,
    torch.stack, F.adaptive_max_pool2d over uneven windows, mean."""

    def __init__(self):
        super().__init__()
        self.stem, self.a, self.b = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 3, padding=1)
        self.mix = nn.Conv2d(4, 4, 1)
        self.fc = nn.Linear(8 * 3 * 3 + 8, 10)
        with torch.no_grad():
            self.b.weight.mul_(4.0)  # branch b fires at a larger θ than branch a

    def forward(self, x):
        x = F.relu(self.stem(x))
        y = F.max_pool2d(torch.cat([F.relu(self.a(x)), F.relu(self.b(x))], 1), 2)  # [a0..a3, b0..b3]
        n, c, h, w = y.size()
        y = torch.transpose(y.view(n, 2, c // 2, h, w), 1, 2).contiguous().view(n, c, h, w)  # a0 b0 a1 b1 ...
        left, right = y.chunk(2, dim=1)  # left: a0 b0 a1 b1
        z = torch.stack([left, F.relu(self.mix(right))], 2).flatten(1, 2)  # a0 m0 b0 m1 a1 m2 b1 m3
        z = F.adaptive_max_pool2d(z, 3)  # 8×8 -> 3×3, overlapping windows of 3
        return self.fc(torch.cat([torch.flatten(z, 1), z.mean((2, 3))], 1))


def test_joins_shuffles_and_functional_pools_converge(images):
    ann = Branches().eval()
    snn = convert(ann, [(images, None)], p=100)
    assert [type(p).__name__ for _, p in snn.pools()] == ["LIPool", "LIPool"]
    assert next(reversed(list(snn.pools())))[1].output_size == (3, 3)
    short, long = rate_error(snn, ann, images, [32, 256])
    assert long < 0.25 * short and long < 0.05


def test_pool_units_follow_each_channel_through_joins_and_shuffles(images):
    """A pool after a concat has the θ of each channel's neuron: Fig. 5b's 2/T is in spikes."""
    snn = convert(Branches().eval(), [(images, None)], p=100)
    stem, a, b, m = (float(t) for t in snn.thresholds().values())
    assert b > 2 * a
    (_, after_cat), (_, after_stack) = snn.pools()
    assert after_cat.unit.view(-1).tolist() == pytest.approx([a] * 4 + [b] * 4)
    assert after_stack.unit.view(-1).tolist() == pytest.approx([a, m, b, m, a, m, b, m])
    snn(images, 16)
    for cumulative_input, cumulative_output in snn.pool_states().values():  # whole spike counts
        assert torch.allclose(cumulative_input, cumulative_input.round(), atol=1e-4)
        assert torch.allclose(cumulative_output, cumulative_output.round(), atol=1e-4)


class SumIntoPool(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 10)
        with torch.no_grad():
            self.b.weight.mul_(3.0)

    def forward(self, x):
        return self.fc(torch.flatten(F.max_pool2d(F.relu(self.a(x)) + F.relu(self.b(x)), 2), 1))


def test_pool_after_a_sum_of_spike_trains_counts_in_the_larger_theta(images):
    snn = convert(SumIntoPool().eval(), [(images, None)], p=100)
    a, b = (float(t) for t in snn.thresholds().values())
    assert a != pytest.approx(b)
    (_, pool), = snn.pools()
    assert float(pool.unit) == pytest.approx(max(a, b))


class WithConstant(nn.Module):
    """Adds a buffer without a batch dimension to spikes (a constant current at every step)."""

    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 4, 3, padding=1), nn.Linear(4 * 16 * 16, 10)
        self.register_buffer("offset", torch.linspace(-0.5, 0.5, 4).view(4, 1, 1))

    def forward(self, x):
        return self.fc(torch.flatten(F.relu(self.conv(x)) + self.offset, 1))


def test_constants_are_never_repeated_over_steps(images):
    ann = WithConstant().eval()
    snn = convert(ann, [(images, None)], p=100)
    step_by_step = snn(images, 24, chunk=1)
    assert torch.allclose(snn(images, 24, chunk=24), step_by_step, atol=1e-5)
    assert torch.allclose(snn(images, 24, chunk=5), step_by_step, atol=1e-5)
    short, long = rate_error(snn, ann, images, [32, 256])
    assert long < 0.25 * short


class InPlaceSum(nn.Module):
    """``h`` does not depend on time (computed once for all steps); ``add_`` changes it in place."""

    def __init__(self, in_place=True):
        super().__init__()
        self.in_place = in_place
        self.conv1, self.conv2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 16 * 16, 10)

    def forward(self, x):
        h = self.conv1(x)
        if self.in_place:
            h.add_(self.conv2(F.relu(h)))
        else:
            h = h + self.conv2(F.relu(h))
        return self.fc(torch.flatten(F.relu(h), 1))


def test_in_place_op_on_a_value_shared_by_all_steps(images):
    ann, twin = InPlaceSum().eval(), InPlaceSum(in_place=False).eval()
    twin.load_state_dict(ann.state_dict())
    snn, reference = convert(ann, [(images, None)], p=100), convert(twin, [(images, None)], p=100)
    expected = reference(images, 20, chunk=1)
    assert expected.abs().sum() > 0
    for chunk in (1, 3, 20):
        assert torch.allclose(snn(images, 20, chunk=chunk), expected, atol=1e-5), chunk


class CatOverBatch(nn.Module):
    def forward(self, x):
        return torch.cat([F.relu(x), x])


def test_ops_along_the_batch_dimension_are_refused(images):
    with pytest.raises(ConversionError, match=r"node 'cat' \(call_function cat\): cat along dim 0"):
        convert(CatOverBatch(), [(images, None)])


# --- λ by least squared error of the first burst step ------------------------------------------

def first_step_output(a: float, lam: float, gamma: int, theta_scale: float, v_init: float) -> float:
    """One IF/burst step from V(0) = v_init·θ with input a (Algorithm 1, soft reset): the spikes
    emitted, while V ≥ θ and fewer than Γ, each taking θ off V; returns spikes·θ."""
    theta = theta_scale * lam
    v, spikes = v_init * theta + a, 0
    while v >= theta and spikes < gamma:
        v -= theta
        spikes += 1
    return spikes * theta


@pytest.mark.parametrize(("gamma", "theta_scale", "v_init"), [(8, 1 / 8, 0.5), (4, 1 / 4, 0.0), (3, 0.5, 0.5)])
def test_mse_lambda_minimises_the_first_step_error(gamma, theta_scale, v_init):
    torch.manual_seed(0)
    # Mostly small activations and a few outliers: the percentile keeps the outliers' range.
    acts = torch.cat([torch.rand(500), 10 + 5 * torch.rand(3)])
    step = FirstStep(gamma, theta_scale, v_init)
    lam = float(mse_lambda(acts.view(1, -1), step)[0])

    def error(lam: float) -> float:
        return sum((first_step_output(float(a), lam, gamma, theta_scale, v_init) - float(a)) ** 2
                   for a in acts) / len(acts)

    top = float(acts.max())
    assert any(abs(lam - top * k / 100) < 1e-9 * top for k in range(1, 101))  # a candidate of the grid
    # No λ of a finer grid, checked with the loop above, does better by more than the grid's step.
    best_fine = min(error(top * k / 200) for k in range(1, 201))
    assert error(lam) <= best_fine * 1.05 + 1e-12
    assert error(lam) < error(float(percentile(acts, 99.9))) and error(lam) < error(top)


@pytest.mark.parametrize(("gamma", "theta_scale", "v_init"), [(5, 1 / 5, 0.5), (1, 1.0, 0.0), (16, 0.07, 0.93)])
def test_mse_lambda_is_the_candidate_a_brute_force_search_picks(gamma, theta_scale, v_init):
    """Each candidate scored by quantising every activation (the first step as an equation,
    θ·clamp(⌊a/θ + v_init⌋, 0, Γ)): the same λ per row, the first of equal errors."""
    g = torch.Generator().manual_seed(gamma)
    acts = torch.relu(torch.randn(6, 3000, generator=g, dtype=torch.float64)) * torch.rand(6, 1, generator=g) * 4
    acts[0, :2900] = 0  # a mostly silent channel
    top = acts.amax(1, keepdim=True)
    errors = []
    for k in range(1, 101):
        theta = theta_scale * top * k / 100
        quantised = theta * torch.clamp(torch.floor(acts / theta + v_init), 0, gamma)
        errors.append((quantised - acts).square().mean(1))
    best = torch.stack(errors, 1).argmin(1)  # first of the smallest
    expected = top.squeeze(1) * ((best + 1).double() / 100)
    assert torch.equal(mse_lambda(acts, FirstStep(gamma, theta_scale, v_init)), expected)


def test_mse_lambda_takes_the_smallest_of_equal_errors():
    """A row of zeros and one 1.0, flooring with θ = λ, Γ = 5: λ = 1/j (j spikes of 1/j) for
    j = 1, 2, 4, 5 quantise every value exactly (equal errors, 0); the smallest, 0.2, is chosen."""
    acts = torch.zeros(1, 1000, dtype=torch.float64)
    acts[0, 0] = 1.0
    assert float(mse_lambda(acts, FirstStep(5, 1.0, 0.0))[0]) == pytest.approx(0.2)


def test_mse_lambda_for_uniform_activations_makes_equal_bins():
    # Uniform on [0, 1], θ = λ/8 and rounding (V(0) = θ/2): inputs in [λ − θ/2, 1] all give λ; that
    # top bin is as wide as the others (θ) when 1 − λ + λ/16 = λ/8, i.e. λ = 16/17.
    acts = torch.linspace(0, 1, 10001).view(1, -1)
    assert float(mse_lambda(acts, FirstStep(8, 1 / 8, 0.5))[0]) == pytest.approx(16 / 17, abs=0.01)
    # Flooring (V(0) = 0) maps [λ, 1] to λ and each [kθ, (k+1)θ) to kθ: equal bins at 1 − λ = λ/8.
    assert float(mse_lambda(acts, FirstStep(8, 1 / 8, 0.0))[0]) == pytest.approx(8 / 9, abs=0.01)


def test_mse_lambda_per_channel_on_a_subsample(monkeypatch):
    # Rows longer than MSE_SAMPLES // rows are scored on a random subset of their columns; the
    # equal-bin optimum 16/17 of each row's range (see above) still comes out.
    monkeypatch.setattr("burstsnn.conversion.calibrate.MSE_SAMPLES", 4 * 2000)
    scales = torch.tensor([[1.0], [3.0], [0.5], [8.0]])
    acts = torch.rand(4, 50_000, generator=torch.Generator().manual_seed(3)) * scales
    lam = mse_lambda(acts, FirstStep(8, 1 / 8, 0.5))
    assert torch.allclose(lam.float(), 16 / 17 * scales.view(-1), rtol=0.02)


def test_convert_with_the_mse_rule_per_layer_and_per_channel():
    torch.manual_seed(0)
    ann = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 4)).eval()
    nn.init.uniform_(ann[0].weight, -0.2, 1.0)  # every channel active during calibration
    x = torch.rand(8, 1, 6, 6)
    with torch.no_grad():
        relu = torch.relu(ann[0](x))
    for channel_wise in (False, True):
        snn = convert(ann, [(x, torch.zeros(8))], gamma=8, theta_scale=1 / 8, v_init=0.5,
                      lambda_rule="mse", channel_wise=channel_wise)
        lams = (8 * snn.thresholds()["1"]).reshape(-1).tolist()
        rows = relu.transpose(0, 1).reshape(3, -1) if channel_wise else relu.reshape(1, -1)
        assert len(lams) == len(rows)
        for lam, row in zip(lams, rows.tolist()):
            # Every candidate λ = max·k/100, scored by the loop of Algorithm 1 (first_step_output).
            def error(lam: float, row=row) -> float:
                return sum((first_step_output(a, lam, 8, 1 / 8, 0.5) - a) ** 2 for a in row) / len(row)

            candidates = [max(row) * k / 100 for k in range(1, 101)]
            assert min(abs(lam - c) for c in candidates) <= 1e-6 * max(row)  # λ is a candidate
            assert error(lam) == pytest.approx(min(map(error, candidates)), rel=1e-6)  # ... the best one
    with pytest.raises(ValueError, match="lambda_rule"):
        convert(ann, [(x, torch.zeros(8))], lambda_rule="max")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_diverged_ann_is_refused_in_one_line_naming_the_weight(bad, images):
    ann = ready(SmallCNN(), images)
    with torch.no_grad():
        ann.features[0].weight[0, 0, 0, 0] = bad
    with pytest.raises(ConversionError) as error:
        convert(ann, [images])
    message = str(error.value)
    assert "\n" not in message and message.startswith("ANN weight 'features.0.weight' holds NaN or inf")
    assert "lower train.lr" in message
