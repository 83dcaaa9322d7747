"""Operation counts of a converted network: MACs of the ANN's layers, synaptic events (ACs) of
the SNN's.

An SNN layer fed by spikes costs one AC per synaptic event: each spike (a burst of k counting
k) reaching each output it is connected to. Behind an average pool a layer receives every
spike of each pooled window, not their mean. Which layers are fed by spikes, and the θ that
turns their input values into spike counts, come from the conversion's graph walk
(``burstsnn.conversion.units``): through moves, joins (concat, channel shuffles) and averages.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import Metric

from burstsnn.conversion.units import Analog, Spikes, value_units
from burstsnn.graph_ops import SYNAPTIC_MODULES
from burstsnn.snn.kernels import sum_over_samples
from burstsnn.snn.network import SpikingNetwork


@dataclass
class SynapticLayer:
    """A Conv/Linear layer of a converted network and what reaches it.

    ``fed_by``: "spikes", "input" (analog values computed from the image without a neuron) or
    "current" (another layer's output, with no neuron between): the last two cost MACs at
    every step. ``theta``: for spikes, the θ that turns its input values into spikes arriving
    at each input element (``[C, ...]``, the input's shape without batch; value / θ = spikes),
    else None; ``peak``: the most spikes an input element receives in one step; ``sources``:
    the spiking modules whose spikes reach it.
    """

    name: str
    module: nn.Module
    fed_by: str
    theta: Tensor | None = None
    peak: int = 0
    sources: tuple[str, ...] = ()


def synaptic_layers(snn: SpikingNetwork, input_shape: Sequence[int]) -> list[SynapticLayer]:
    """The Conv1d/Conv2d/Linear layers of ``snn.net`` in graph order, each with what reaches it
    (``input_shape``: one sample's shape, for the graph walk).  ValueError naming the layer
    when its input is a sum of spike trains of different θ (whose spike count the sum does
    not tell), or it is called more than once."""
    gm = snn.net
    param = next(gm.parameters())
    units = value_units(gm, torch.zeros(1, *input_shape, device=param.device, dtype=param.dtype))
    layers, seen = [], set()
    for node in gm.graph.nodes:
        if node.op != "call_module" or not isinstance(gm.get_submodule(node.target), SYNAPTIC_MODULES):
            continue
        if node.target in seen:
            raise ValueError(f"layer '{node.target}' is called more than once; cannot attribute its operations")
        seen.add(node.target)
        module, source = gm.get_submodule(node.target), node.args[0]
        unit = units[source]
        if isinstance(unit, Spikes) and not unit.exact:
            raise ValueError(f"layer '{node.target}': its input is a sum of spikes of different θ (from "
                             f"{', '.join(unit.sources)}); cannot count its synaptic events")
        if isinstance(unit, Spikes):
            layers.append(SynapticLayer(node.target, module, "spikes", unit.theta[0], unit.peak, unit.sources))
        else:
            layers.append(SynapticLayer(node.target, module, "input" if isinstance(unit, Analog) else "current"))
    return layers


def _fan_in(module: nn.Module) -> int:
    """Inputs summed per output value (MACs per output element)."""
    if isinstance(module, nn.Linear):
        return module.in_features
    return module.in_channels // module.groups * math.prod(module.kernel_size)


def count_macs(model: nn.Module, input_shape: Sequence[int]) -> dict[str, int]:
    """MACs per image of each Conv1d/Conv2d/Linear layer of an ANN or a ``SpikingNetwork``
    (names as in ``model``, or in ``snn.net``): output elements × fan-in
    (Conv2d: C_out·H_out·W_out·(C_in/groups)·kH·kW; Linear: in·out).

    ``input_shape``: one sample's shape, e.g. (3, 32, 32).  Runs one forward of a zero
    input of batch 1 in eval mode; for a ``SpikingNetwork``, the conversion's graph walk
    (``value_units``: the same layers on the same shapes, neurons and pools not stepped, so
    no simulation kernel is run or compiled for batch 1).
    """
    root = model.net if isinstance(model, SpikingNetwork) else model
    macs: dict[str, int] = {}

    def hook(name: str) -> Callable[[nn.Module, tuple, Tensor], None]:
        def count(module: nn.Module, inputs: tuple, output: Tensor) -> None:
            macs[name] = macs.get(name, 0) + output[0].numel() * _fan_in(module)

        return count

    handles = [m.register_forward_hook(hook(n)) for n, m in root.named_modules() if isinstance(m, SYNAPTIC_MODULES)]
    param = next(model.parameters())
    x = torch.zeros(1, *input_shape, device=param.device, dtype=param.dtype)
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            value_units(root, x) if isinstance(model, SpikingNetwork) else model(x)
    finally:
        model.train(training)
        for h in handles:
            h.remove()
    return macs


def _counts_over_samples(values: Tensor, theta: Tensor, peak: int) -> Tensor:
    """Spike counts summed over the samples: values ``[steps, B, C, ...]`` = s·θ with
    integer s in 0..peak per sample -> ``[steps, C, ...]`` Σ_B s (float64, exact integers).

    The values are summed in their own dtype first, then divided by θ (one pass over the
    spikes instead of a division and a rounding of every value). With unit roundoff u
    (2^-24 in float32) a sum of n values, each s·θ rounded once, is within about
    n·u·Σs·θ of θ·Σs, and Σs ≤ n·peak: so n²·peak·u must stay well below ½ for the rounded
    quotient to be the exact count. At most ``⌊√(1/(4·u·peak))⌋`` samples are summed at a
    time (915 in float32 for bursts of up to 5), which keeps the error under ¼ of a spike.
    A spiking pool's output (a difference of cumulative sums) and an average (a window sum
    divided) are off by a few more ulps per value; ``tests/test_energy.py`` checks the
    counts behind an LIPool against one-by-one rounding.
    """
    unit_roundoff = torch.finfo(values.dtype).eps / 2
    samples = max(1, math.isqrt(int(0.25 / (unit_roundoff * peak))))
    counts = [
        (sum_over_samples(part) / theta).round_().double() for part in values.split(samples, dim=1)
    ]
    return torch.stack(counts).sum(0) if len(counts) > 1 else counts[0]


def _events(module: nn.Module, counts: Tensor) -> Tensor:
    """Synaptic events ``[N]`` (float64) of input spike counts ``counts`` ``[N, C_in, ...]``,
    one total per leading index: each spike reaches every output it is connected to."""
    if isinstance(module, nn.Linear):
        return counts.flatten(1).sum(1, dtype=torch.float64) * module.out_features
    conv = F.conv1d if isinstance(module, nn.Conv1d) else F.conv2d
    ones = counts.new_ones(1, 1, *module.kernel_size)
    # Outputs whose receptive field covers each input position, summed over positions.
    reach = conv(counts.sum(1, keepdim=True), ones, None, module.stride, module.padding, module.dilation)
    return reach.flatten(1).sum(1, dtype=torch.float64) * (module.out_channels // module.groups)


class SynapticOps(Metric):
    """Accumulate operations (ACs: synaptic events) of a ``SpikingNetwork``'s spike-fed layers.

    Built from ``synaptic_layers(snn, input_shape)`` and the simulation length ``T``; keeps the
    layers fed by spikes (the MAC layers, fed by analog values, cost MACs instead).  Usage::

        with ops.hooks(snn):
            out = snn(x, T)
            ops.update(x.shape[0])

    Each layer's input values, ``[steps·B, ...]``, are summed over the batch as they enter
    it; the sum divided by the layer's θ and rounded is the exact number of spikes that
    arrived (a burst of k spikes counts k; ``_counts_over_samples``), so the ACs are exact
    integers whatever the batches (and DDP shards). Behind an average pool the layer
    receives, at each pooled position, every spike of the pool's window (not their mean).
    States: ``acs`` ``[L, T]`` (events per layer and step, float64) and ``samples``, both
    summed over DDP ranks.  compute() -> {layer: ACs per image at each step ``[T]``} (0-d
    when T = 1: torchmetrics squeezes single values).
    """

    full_state_update = False
    is_differentiable = False

    def __init__(self, layers: Sequence[SynapticLayer], T: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.T = T
        self._layers = [layer for layer in layers if layer.theta is not None]
        for layer in self._layers:
            if getattr(layer.module, "padding_mode", "zeros") != "zeros":
                raise ValueError(f"layer '{layer.name}': only zero padding is supported")
        self.layer_names = [layer.name for layer in self._layers]
        self.add_state("acs", torch.zeros(len(self._layers), T, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("samples", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self._pending: dict[str, list[Tensor]] = {}  # layer -> its spike counts summed over samples, per chunk

    @contextmanager
    def hooks(self, snn: SpikingNetwork) -> Iterator[SynapticOps]:
        """Within the block, count the events of every forward of ``snn`` (outputs are
        unchanged); call ``update(batch_size)`` after each forward."""
        device = next(snn.parameters()).device
        self._pending = {}
        handles = [layer.module.register_forward_pre_hook(self._hook(layer, layer.theta.to(device), snn))
                   for layer in self._layers]
        try:
            yield self
        finally:
            for h in handles:
                h.remove()

    def _hook(self, layer: SynapticLayer, theta: Tensor, snn: SpikingNetwork) -> Callable[[nn.Module, tuple], None]:
        # Events are linear in the spike counts, and a layer treats every sample alike: the
        # events of a step over all samples are those of their summed counts, so each step
        # only adds its counts up over the batch and ``update`` counts the events once per
        # step. Chunks arrive in step order.
        def accumulate(module: nn.Module, args: tuple) -> None:
            values = args[0].view(snn.steps, -1, *args[0].shape[1:])  # [steps, B, ...] = spikes · θ
            counts = _counts_over_samples(values, theta, layer.peak)  # [steps, C, ...]
            self._pending.setdefault(layer.name, []).append(counts)

        return accumulate

    def update(self, batch_size: int) -> None:
        """Add the events of the forwards since the last update, for ``batch_size`` samples."""
        if self._layers and not self._pending:
            raise RuntimeError("no forward ran inside hooks() since the last update")
        acs = []
        for layer in self._layers:
            chunks = self._pending.get(layer.name)
            if chunks is None:
                events = torch.zeros(self.T, dtype=torch.float64)
            else:
                counts = torch.cat(chunks)  # [T, C, ...]
                if counts.shape[0] != self.T:
                    raise RuntimeError(f"layer '{layer.name}' ran {counts.shape[0]} steps, expected T={self.T}")
                events = _events(layer.module, counts)
            acs.append(events.to(self.acs.device))
        if acs:
            self.acs += torch.stack(acs)
        self.samples += batch_size
        self._pending = {}

    def compute(self) -> dict[str, Tensor]:
        per_image = self.acs / self.samples
        return {name: per_image[i] for i, name in enumerate(self.layer_names)}
