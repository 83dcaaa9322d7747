"""SNN evaluation metrics (torchmetrics; states sum across DDP ranks).

Accuracy at every t ≤ T, firing rate per spiking layer (Fig. 5c), pooling correct
ratio (§4.2, Fig. 5b), and ``SNNMetrics``, which bundles them with the energy
estimate (§4.4) for one ``SpikingNetwork``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics import Metric, MetricCollection

from burstsnn.measure.energy import energy_over_t, energy_report
from burstsnn.measure.synapses import SynapticOps, count_macs, synaptic_layers
from burstsnn.rules import check
from burstsnn.snn.network import SpikingNetwork


class AccuracyOverTime(Metric):
    """Accuracy at every t = 1..T of one simulation of T steps.

    update(outputs ``[T, B, K]`` per-step output currents, target ``[B]`` class
    indices): the prediction at t is argmax_k Σ_{τ≤t} outputs[τ] (ties: the lowest k).
    compute() -> ``[T]`` correct / samples (weighted per sample).
    """

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    def __init__(self, T: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        check("T", T)
        self.T = T
        self.add_state("correct", torch.zeros(T, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, outputs: Tensor, target: Tensor) -> None:
        if outputs.dim() != 3 or outputs.shape[0] != self.T or outputs.shape[1] != target.shape[0]:
            raise ValueError(f"outputs must be [T={self.T}, B, K] with B = len(target), got {tuple(outputs.shape)}")
        predictions = outputs.cumsum(0).argmax(-1)
        self.correct += (predictions == target.unsqueeze(0)).sum(1)
        self.total += target.shape[0]

    def compute(self) -> Tensor:
        return self.correct.double() / self.total


class AgreementOverTime(AccuracyOverTime):
    """Agreement with the ANN at every t = 1..T: the share of samples whose SNN prediction at t
    is the ANN's prediction (a fidelity measure that needs no labels).

    update(outputs ``[T, B, K]``, ann_predictions ``[B]``: the ANN's argmax on the same inputs).
    compute() -> ``[T]`` agreeing / samples."""

    def update(self, outputs: Tensor, ann_predictions: Tensor) -> None:
        super().update(outputs, ann_predictions)


class AnnAccuracy(Metric):
    """The ANN's accuracy on the images the SNN is tested on, from the predictions the
    agreement needs anyway (one ANN pass per job, not two).

    update(ann_predictions ``[B]``: the ANN's argmax, target ``[B]``).  compute() -> 0-d
    correct / samples (float64)."""

    full_state_update = False
    is_differentiable = False
    higher_is_better = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("correct", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, ann_predictions: Tensor, target: Tensor) -> None:
        self.correct += (ann_predictions == target).sum()
        self.total += target.shape[0]

    def compute(self) -> Tensor:
        return self.correct.double() / self.total


class _RatioPerName(Metric):
    """Two counts per name, summed over updates (and DDP ranks); compute() -> {name:
    numerator / denominator} (0-d float64 tensors)."""

    full_state_update = False
    is_differentiable = False

    def __init__(self, names: Sequence[str], dtype: torch.dtype, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.names = list(names)
        for state in ("numerator", "denominator"):
            self.add_state(state, torch.zeros(len(self.names), dtype=dtype), dist_reduce_fx="sum")

    def compute(self) -> dict[str, Tensor]:
        ratios = self.numerator.double() / self.denominator
        return {name: ratios[i] for i, name in enumerate(self.names)}


class FiringRates(_RatioPerName):
    """Firing rate of each spiking layer: spikes per neuron per step (a burst of k counts k).

    update(spike_totals {layer: 0-d total spikes of the forward, over steps, batch and
    neurons}, neuron_counts {layer: neurons per sample}, batch_size, T: the forward's steps)
    — the ``SpikingNetwork`` probes.  compute() -> {layer: total spikes / (neurons · samples
    · T)} (0-d tensors).
    """

    def __init__(self, layer_names: Sequence[str], **kwargs: Any) -> None:
        super().__init__(layer_names, torch.float64, **kwargs)

    def update(
        self, spike_totals: Mapping[str, Tensor], neuron_counts: Mapping[str, int], batch_size: int, T: int
    ) -> None:
        spikes = [spike_totals[name].to(self.numerator.device, torch.float64) for name in self.names]
        steps = [neuron_counts[name] * batch_size * T for name in self.names]
        if spikes:
            self.numerator += torch.stack(spikes)
            self.denominator += torch.tensor(steps, dtype=torch.float64, device=self.denominator.device)


class PoolingCorrectRatio(_RatioPerName):
    """Share of pooled positions passed on correctly by each spiking max pool (§4.2, Fig. 5b).

    update(pool_states {pool: (cumulative input ``[B, C, H, W]``, cumulative output
    ``[B, C, H', W']``) in spike counts}, pools {pool: LIPool | SpikeMaxPool}, T): target
    rate = maxpool(cumulative input) / T over the pool's windows, output rate = cumulative
    output / T; among positions with target > 0, counts those with |output − target| < 2/T
    (two spikes of the feeding neurons).  compute() -> {pool: correct / positive positions}.
    """

    higher_is_better = True

    def __init__(self, pool_names: Sequence[str], **kwargs: Any) -> None:
        super().__init__(pool_names, torch.long, **kwargs)

    def update(
        self, pool_states: Mapping[str, tuple[Tensor, Tensor]], pools: Mapping[str, nn.Module], T: int
    ) -> None:
        for i, name in enumerate(self.names):
            cumulative_input, cumulative_output = pool_states[name]
            target = pools[name].max_pool(cumulative_input) / T
            positive = target > 0
            correct = positive & ((cumulative_output / T - target).abs() < 2 / T)
            self.numerator[i] += correct.sum().to(self.numerator.device)
            self.denominator[i] += positive.sum().to(self.denominator.device)


class SNNMetrics(nn.Module):
    """All evaluation metrics of one ``SpikingNetwork`` simulated for T steps, in one
    ``MetricCollection`` (one update feeds each metric what its ``update`` takes; states
    move with the module and sum across DDP ranks).

    ``input_shape``: one sample's shape, for the graph walk that gives the ANN's MACs and
    tells which layers spikes reach (``count_macs``, ``synaptic_layers``).
    Usage::

        with metrics.attach(snn):
            for x, y in loader:
                metrics.update(snn, snn(x, T), y)
        results = metrics.compute()
    """

    def __init__(self, snn: SpikingNetwork, T: int, input_shape: Sequence[int]) -> None:
        super().__init__()
        self.T = T
        layers = synaptic_layers(snn, input_shape)
        self.mac_layers = [layer.name for layer in layers if layer.theta is None]
        self.macs = count_macs(snn, input_shape)
        self.collection = MetricCollection({
            "accuracy": AccuracyOverTime(T),
            "agreement": AgreementOverTime(T),
            "ann_accuracy": AnnAccuracy(),
            "firing_rates": FiringRates([name for name, _ in snn.neurons()]),
            "pooling": PoolingCorrectRatio([name for name, _ in snn.pools()]),
            "synaptic_ops": SynapticOps(layers, T),
        }, compute_groups=False)

    @contextmanager
    def attach(self, snn: SpikingNetwork) -> Iterator[SNNMetrics]:
        """Within the block, ``snn`` records spike counts and its synaptic events are
        counted (outputs are unchanged); ``record`` is restored afterwards."""
        record = snn.record
        snn.record = True
        try:
            with self.collection["synaptic_ops"].hooks(snn):
                yield self
        finally:
            snn.record = record

    def update(self, snn: SpikingNetwork, outputs: Tensor, target: Tensor, ann_predictions: Tensor) -> None:
        """After one forward ``outputs = snn(x, T)`` (``[T, B, K]``) inside ``attach``;
        ``target``: ``[B]`` class indices; ``ann_predictions``: ``[B]`` the ANN's classes for x."""
        self.collection.update(
            outputs=outputs, target=target, ann_predictions=ann_predictions, batch_size=target.shape[0],
            spike_totals=snn.spike_totals(), neuron_counts=snn.neuron_counts(),
            pool_states=snn.pool_states(), pools=dict(snn.pools()), T=outputs.shape[0],
        )

    def compute(self) -> dict[str, Any]:
        """Plain Python numbers: acc_over_t (T floats, t = 1..T), acc_at_T, best_acc,
        best_t (1-based, the first best), agreement_over_t (T floats: the share of samples
        whose prediction at t is the ANN's), agreement_at_T, ann_acc (the ANN's accuracy on the
        same images), firing_rates {layer: spikes per neuron per step},
        pooling_correct_ratio {pool: ratio}, energy (``energy_report``, pJ per image over
        the T steps), energy_over_t (T floats: the SNN/ANN energy ratio had the run stopped
        at t = 1..T)."""
        metrics = self.collection
        acc = metrics["accuracy"].compute().reshape(-1)  # [T]; torchmetrics squeezes T = 1 to 0-d
        agreement = metrics["agreement"].compute().reshape(-1)
        best = int(torch.argmax(acc))
        acs_per_step = metrics["synaptic_ops"].compute()  # {layer: [T] ACs per image}
        return {
            "acc_over_t": acc.tolist(),
            "acc_at_T": float(acc[-1]),
            "best_acc": float(acc[best]),
            "best_t": best + 1,
            "agreement_over_t": agreement.tolist(),
            "agreement_at_T": float(agreement[-1]),
            "ann_acc": float(metrics["ann_accuracy"].compute()),
            "firing_rates": {name: float(v) for name, v in metrics["firing_rates"].compute().items()},
            "pooling_correct_ratio": {name: float(v) for name, v in metrics["pooling"].compute().items()},
            "energy": energy_report(self.macs, {name: float(v.sum()) for name, v in acs_per_step.items()},
                                    self.T, self.mac_layers),
            "energy_over_t": energy_over_t(self.macs, acs_per_step, self.T, self.mac_layers),
        }

    def reset(self) -> None:
        """Clear every metric's state."""
        self.collection.reset()
