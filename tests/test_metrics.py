"""Accuracy over t, firing rates, pooling correct ratio and SNNMetrics, with values by hand."""

import pytest
import torch
from torch import nn

from burstsnn.conversion.convert import convert
from burstsnn.measure.metrics import AccuracyOverTime, FiringRates, PoolingCorrectRatio, SNNMetrics
from burstsnn.measure.synapses import count_macs
from burstsnn.snn.pooling import SpikeMaxPool


def test_accuracy_over_time_weights_samples_not_batches():
    metric = AccuracyOverTime(T=3)
    # Sample A (class 1): cumulative [1,0], [1,2], [1,2] -> predicts 0, 1, 1.
    metric.update(torch.tensor([[[1.0, 0.0]], [[0.0, 2.0]], [[0.0, 0.0]]]), torch.tensor([1]))
    # B (class 0): 0, 0, 0.  C (class 0): cumulative [0,1], [2,1], [2,1] -> 1, 0, 0.
    # D (class 1): cumulative [0,1], [0,1], [3,1] -> 1, 1, 0.
    outputs = torch.tensor([
        [[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]],
        [[1.0, 0.0], [2.0, 0.0], [0.0, 0.0]],
        [[1.0, 0.0], [0.0, 0.0], [3.0, 0.0]],
    ])
    metric.update(outputs, torch.tensor([0, 0, 1]))
    # Correct at t = 1, 2, 3: A 0,1,1; B 1,1,1; C 0,1,1; D 1,1,0.  (Mean of batch means at t=1: 1/3.)
    assert metric.compute().tolist() == [2 / 4, 4 / 4, 3 / 4]


def test_accuracy_over_time_checks_shapes():
    with pytest.raises(ValueError, match="T=3"):
        AccuracyOverTime(T=3).update(torch.zeros(2, 4, 5), torch.zeros(4, dtype=torch.long))


def burst_spikes_by_hand(current: torch.Tensor, theta: torch.Tensor, gamma: int, T: int) -> float:
    """Total spikes of soft-reset burst neurons fed ``current`` at every step."""
    v, total = torch.zeros_like(current), 0.0
    for _ in range(T):
        v = v + current
        s = torch.floor(v / theta).clamp(0, gamma)
        v = v - s * theta
        total += float(s.sum())
    return total


def test_firing_rates_match_a_hand_simulation():
    torch.manual_seed(0)
    ann = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3)).eval()
    nn.init.uniform_(ann[0].weight, -0.3, 1.0)
    batches = [torch.rand(2, 1, 6, 6), torch.rand(3, 1, 6, 6)]
    snn = convert(ann, [(batches[0], torch.zeros(2))], gamma=2)
    snn.record = True
    theta, T = snn.thresholds()["1"], 5
    metric = FiringRates(["1"])
    spikes = 0.0
    for x in batches:
        snn(x, T)
        metric.update(snn.spike_totals(), snn.neuron_counts(), x.shape[0], T)
        with torch.no_grad():
            spikes += burst_spikes_by_hand(ann[0](x), theta, gamma=2, T=T)
    assert spikes > 0
    rate = metric.compute()["1"]
    assert float(rate) == pytest.approx(spikes / (2 * 4 * 4 * 5 * T))


def alternating_winner_input() -> torch.Tensor:
    """Spike counts [T=4, B=1, C=4, 2, 2], one 2×2 window per channel (a = (0,0), b = (0,1)).

    ch 0: a fires at t = 1, 3 and b at t = 2, 4: the winner alternates, SpikeMaxPool passes
          4 spikes for a maximum of 2 -> error 2/T, not < 2/T: wrong.
    ch 1: a fires every step: 4 of 4, right.
    ch 2: silent: target 0, not counted.
    ch 3: a fires at t = 1, b at t = 2: SpikeMaxPool passes 2 for a maximum of 1 -> error 1/T: right.
    """
    x = torch.zeros(4, 1, 4, 2, 2)
    x[[0, 2], 0, 0, 0, 0] = 1.0
    x[[1, 3], 0, 0, 0, 1] = 1.0
    x[:, 0, 1, 0, 0] = 1.0
    x[0, 0, 3, 0, 0] = 1.0
    x[1, 0, 3, 0, 1] = 1.0
    return x


def test_pooling_correct_ratio_by_hand():
    pool = SpikeMaxPool(2)
    pool(alternating_winner_input())
    metric = PoolingCorrectRatio(["p"])
    metric.update({"p": (pool.cumulative_input, pool.cumulative_output)}, {"p": pool}, T=4)
    assert float(metric.compute()["p"]) == pytest.approx(2 / 3)


def pooled_ann() -> nn.Sequential:
    torch.manual_seed(0)
    ann = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 2 * 2, 3),
    ).eval()
    for layer in (ann[0], ann[3]):
        nn.init.uniform_(layer.weight, -0.2, 0.5)
    return ann


def test_snn_metrics_bundle_everything_and_leave_outputs_identical():
    ann, T = pooled_ann(), 6
    batches = [(torch.rand(3, 1, 8, 8), torch.tensor([0, 1, 2])), (torch.rand(1, 1, 8, 8), torch.tensor([2]))]
    snn = convert(ann, [batches[0]], gamma=2)
    metrics = SNNMetrics(snn, T, (1, 8, 8))
    reference = [snn(x, T) for x, _ in batches]
    accuracy, rates, pooling = AccuracyOverTime(T), FiringRates(["1", "4"]), PoolingCorrectRatio(["2"])
    agreeing = [0] * T  # images whose running SNN output at t has the ANN's top class, counted one by one
    with metrics.attach(snn):
        assert snn.record
        for (x, y), expected in zip(batches, reference):
            outputs = snn(x, T)
            assert torch.equal(outputs, expected)
            with torch.no_grad():
                ann_classes = ann(x).argmax(-1)
            metrics.update(snn, outputs, y, ann_classes)
            for i in range(x.shape[0]):
                total = torch.zeros(outputs.shape[-1])
                for t in range(T):
                    total = total + outputs[t, i]
                    agreeing[t] += int(int(total.argmax()) == int(ann_classes[i]))
            accuracy.update(outputs, y)
            rates.update(snn.spike_totals(), snn.neuron_counts(), x.shape[0], T)
            pooling.update(snn.pool_states(), dict(snn.pools()), T)
    assert not snn.record
    result = metrics.compute()

    acc = accuracy.compute().tolist()
    assert result["acc_over_t"] == acc
    assert result["acc_at_T"] == acc[-1]
    assert result["best_acc"] == max(acc)
    assert result["best_t"] == acc.index(max(acc)) + 1
    assert result["agreement_over_t"] == pytest.approx([a / 4 for a in agreeing])
    assert result["agreement_at_T"] == result["agreement_over_t"][-1] and 0 < sum(agreeing)
    assert result["firing_rates"] == {name: float(v) for name, v in rates.compute().items()}
    assert result["pooling_correct_ratio"] == {name: float(v) for name, v in pooling.compute().items()}
    energy = result["energy"]
    macs = count_macs(ann, (1, 8, 8))
    assert energy["ann_macs"] == sum(macs.values())
    assert energy["snn_macs"] == T * macs["0"]
    assert set(energy["acs_per_layer"]) == {"3", "6"}
    # The linear layer's events: every spike of neuron '4' reaches its 3 outputs.
    assert energy["acs_per_layer"]["6"] == pytest.approx(
        result["firing_rates"]["4"] * (4 * 2 * 2) * T * 3
    )

    over_t = result["energy_over_t"]
    assert len(over_t) == T and over_t[-1] == pytest.approx(energy["energy_ratio"])
    assert over_t[0] > 0 and all(a <= b for a, b in zip(over_t, over_t[1:]))

    metrics.reset()
    assert int(metrics.collection["accuracy"].total) == 0 and int(metrics.collection["synaptic_ops"].samples) == 0



def test_snn_metrics_do_not_depend_on_chunking():
    ann, T = pooled_ann(), 6
    x, y = torch.rand(2, 1, 8, 8), torch.tensor([0, 1])
    snn = convert(ann, [(x, y)], gamma=2)
    results = []
    for chunk in (None, 4):
        metrics = SNNMetrics(snn, T, (1, 8, 8))
        with metrics.attach(snn):
            outputs = snn(x, T, chunk)
        metrics.update(snn, outputs, y, ann(x).argmax(-1))  # after the block, as the evaluation module does
        results.append(metrics.compute())
    assert results[0] == results[1]


def test_snn_metrics_at_a_single_step():
    ann, T = pooled_ann(), 1
    x, y = torch.rand(2, 1, 8, 8), torch.tensor([0, 1])
    snn = convert(ann, [(x, y)], gamma=4)
    metrics = SNNMetrics(snn, T, (1, 8, 8))
    with metrics.attach(snn):
        outputs = snn(x, T)
        metrics.update(snn, outputs, y, ann(x).argmax(-1))
    result = metrics.compute()
    expected = (outputs[0].argmax(-1) == y).double().mean().item()
    assert result["acc_over_t"] == [expected] and result["acc_at_T"] == expected and result["best_t"] == 1
    assert len(result["energy_over_t"]) == 1
    assert result["energy_over_t"][0] == pytest.approx(result["energy"]["energy_ratio"])
