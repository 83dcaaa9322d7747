"""Operation counts and energy (paper §4.4): MACs of the ANN, ACs of the SNN.

An ANN layer costs one MAC per weight use.  An SNN layer fed by spikes costs one
AC per synaptic event (each spike, a burst of k counting k, reaching each output it
is connected to); the first layer, fed analog input, costs its MACs at every step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn
from torchmetrics import Metric

from burstsnn.graph_ops import SYNAPTIC_MODULES, describe
from burstsnn.snn.network import SpikingNetwork
from burstsnn.snn.units import SpikeUnit, Unit, compact, spike_units

E_MAC_PJ = 4.6
E_AC_PJ = 0.9

@dataclass
class SynapticLayer:
    """A Conv/Linear layer of a converted network.

    ``input_unit``: θ of the spikes it receives (input value / θ = spike count): 0-d,
    per channel ``[C, 1, ...]`` (e.g. a concat of branches with different θ) or one per
    input value; None for a layer fed by the analog input.
    """

    name: str
    module: nn.Module
    input_unit: Tensor | None


def _input_unit(gm: fx.GraphModule, node: fx.Node, units: dict[fx.Node, Unit]) -> Tensor | None:
    """θ of the spikes reaching synaptic layer ``node`` (0-d, per channel ``[C, 1, ...]``, or
    one per input value); None for an analog input."""
    source = node.args[0]
    unit = units[source]
    if unit is None:
        return None
    if isinstance(unit, SpikeUnit) and unit.exact:
        return compact(unit.theta)
    raise ValueError(
        f"layer '{node.target}': its input comes from {describe(gm, source)}, neither spiking neurons "
        "(through shape-only, joining or pooling nodes) nor the network input; cannot count its synaptic events"
    )


def synaptic_layers(snn: SpikingNetwork) -> list[SynapticLayer]:
    """The Conv1d/Conv2d/Linear layers of ``snn.net`` in graph order, each with the θ of
    the neuron feeding it (None: fed by the analog input).  ValueError naming the
    layer when its input is neither (e.g. a residual sum) or it is called more than once."""
    gm = snn.net
    if snn.sample_shape is None:
        raise ValueError("the network's sample_shape is unknown: build it with convert() or run it once")
    units = spike_units(gm, torch.zeros(1, *snn.sample_shape, dtype=next(gm.parameters()).dtype))
    layers, seen = [], set()
    for node in gm.graph.nodes:
        if node.op != "call_module" or not isinstance(gm.get_submodule(node.target), SYNAPTIC_MODULES):
            continue
        if node.target in seen:
            raise ValueError(f"layer '{node.target}' is called more than once; cannot attribute its operations")
        seen.add(node.target)
        layers.append(SynapticLayer(node.target, gm.get_submodule(node.target), _input_unit(gm, node, units)))
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
    input of batch 1 (for a ``SpikingNetwork``, T = 1) in eval mode.
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
            model(x, T=1) if isinstance(model, SpikingNetwork) else model(x)
    finally:
        model.train(training)
        for h in handles:
            h.remove()
    return macs


def _spike_counts(x: Tensor, unit: Tensor) -> Tensor:
    """x: input values ``[N, C, ...]`` (or flattened ``[N, C·...]``), unit: θ, 0-d, per
    channel ``[C, 1, ...]`` or one per value -> spike counts, same shape as x."""
    if unit.numel() == 1:
        return x / unit
    c = unit.numel()
    return (x.reshape(x.shape[0], c, -1) / unit.reshape(1, c, 1)).reshape(x.shape)


def _sum_over_samples(x: Tensor) -> Tensor:
    """x: ``[steps, B, C, ...]`` -> ``[steps, C, ...]``, the sum over B, read in x's memory
    order (a channels-last sum over B in logical order is ~20× slower on CPU)."""
    steps, batch = x.shape[:2]
    if x.dim() == 5 and x[0].is_contiguous(memory_format=torch.channels_last):
        c, h, w = x.shape[2:]
        flat = x.permute(0, 1, 3, 4, 2).reshape(steps, batch, -1)
        return flat.sum(1).view(steps, h, w, c).permute(0, 3, 1, 2)
    return x.reshape(steps, batch, -1).sum(1).view(steps, *x.shape[2:])


def _events(module: nn.Module, counts: Tensor) -> Tensor:
    """Synaptic events (0-d, float64) of input spike counts ``counts`` ``[N, C_in, ...]``:
    each spike reaches every output it is connected to."""
    if isinstance(module, nn.Linear):
        return counts.sum(dtype=torch.float64) * module.out_features
    conv = F.conv1d if isinstance(module, nn.Conv1d) else F.conv2d
    ones = counts.new_ones(1, 1, *module.kernel_size)
    # Outputs whose receptive field covers each input position, summed over positions.
    reach = conv(counts.sum(1, keepdim=True), ones, None, module.stride, module.padding, module.dilation)
    return reach.sum(dtype=torch.float64) * (module.out_channels // module.groups)


class SynapticOps(Metric):
    """Accumulate operations (ACs: synaptic events) of a ``SpikingNetwork``'s spike-fed layers.

    Built from ``synaptic_layers(snn)``; keeps the names of the layers fed by spikes
    (the first, analog-fed layers cost MACs instead).  Usage::

        with ops.hooks(snn):
            out = snn(x, T)
            ops.update(x.shape[0])

    Inputs of a hooked layer arrive as ``[steps·B, ...]`` values s·θ; s = value / θ
    (a burst of k spikes counts k).  Behind an average pool s is the pooled (mean)
    count, so the layer's ACs are those of its pooled input.
    States: ``acs`` ``[L]`` (events per layer, float64) and ``samples``, both summed
    over DDP ranks.  compute() -> {layer: ACs per image (0-d tensor)}.
    """

    full_state_update = False
    is_differentiable = False

    def __init__(self, layers: Sequence[SynapticLayer], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.layer_names = [layer.name for layer in layers if layer.input_unit is not None]
        self.add_state("acs", torch.zeros(len(self.layer_names), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("samples", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self._pending: dict[str, Tensor] = {}  # layer -> input summed over steps and samples
        self._layers: dict[str, SynapticLayer] = {}

    @contextmanager
    def hooks(self, snn: SpikingNetwork) -> Iterator[SynapticOps]:
        """Within the block, count the events of every forward of ``snn`` (outputs are
        unchanged); call ``update(batch_size)`` after each forward."""
        layers = {layer.name: layer for layer in synaptic_layers(snn)}
        handles = []
        self._pending, self._layers = {}, {}
        try:
            for name in self.layer_names:
                layer = layers.get(name)
                if layer is None or layer.input_unit is None:
                    raise ValueError(f"layer '{name}' is not a spike-fed synaptic layer of this network")
                if getattr(layer.module, "padding_mode", "zeros") != "zeros":
                    raise ValueError(f"layer '{name}': only zero padding is supported")
                self._layers[name] = layer
                handles.append(layer.module.register_forward_hook(self._hook(name, snn)))
            yield self
        finally:
            for h in handles:
                h.remove()

    def _hook(self, name: str, snn: SpikingNetwork) -> Callable[[nn.Module, tuple, Tensor], None]:
        # Events are linear in the input, and a layer treats every sample alike: the
        # events of all steps and samples are those of their summed input, so each step
        # only adds its input up (one pass) and ``update`` counts the events once.
        # Each step's batch is summed alone, so the result does not depend on chunking.
        def accumulate(module: nn.Module, inputs: tuple, output: Tensor) -> None:
            x = inputs[0]
            per_step = _sum_over_samples(x.view(snn.steps, -1, *x.shape[1:]))  # [steps, C, ...]
            total = per_step.double().sum(0, keepdim=True)  # [1, C, ...]
            self._pending[name] = self._pending[name] + total if name in self._pending else total

        return accumulate

    def update(self, batch_size: int) -> None:
        """Add the events of the forwards since the last update, for ``batch_size`` samples."""
        if self.layer_names and not self._pending:
            raise RuntimeError("no forward ran inside hooks() since the last update")
        zero = torch.zeros((), dtype=torch.float64)
        acs = []
        for name in self.layer_names:
            layer, total = self._layers[name], self._pending.get(name)
            events = zero if total is None else _events(layer.module, _spike_counts(total, layer.input_unit))
            acs.append(events.to(self.acs.device))
        if acs:
            self.acs += torch.stack(acs)
        self.samples += batch_size
        self._pending = {}

    def compute(self) -> dict[str, Tensor]:
        per_image = self.acs / self.samples
        return {name: per_image[i] for i, name in enumerate(self.layer_names)}


def energy_report(
    macs: dict[str, int],
    acs_per_image: dict[str, float],
    T: int,
    first_layers: Sequence[str],
    e_mac: float = E_MAC_PJ,
    e_ac: float = E_AC_PJ,
) -> dict[str, Any]:
    """Energy per image in pJ (paper §4.4, after Rathi & Roy 2021).

    ANN = Σ MACs·E_MAC.  SNN = T·Σ_{first layers} MACs·E_MAC (analog input: MACs at
    every step) + Σ_{other layers} ACs·E_AC.  ``macs``: every layer's MACs per image;
    ``acs_per_image``: ACs per image of every layer not in ``first_layers``.
    Returns ann_macs, snn_macs, snn_acs, ann_energy_pj, snn_energy_pj,
    energy_ratio (SNN / ANN), e_mac_pj, e_ac_pj and acs_per_layer.
    """
    first = set(first_layers)
    if not first <= macs.keys():
        raise ValueError(f"first layers without MACs: {sorted(first - macs.keys())}")
    others = macs.keys() - first
    if others != acs_per_image.keys():
        raise ValueError(
            f"ACs must be given for exactly the non-first layers {sorted(others)}; got {sorted(acs_per_image)}"
        )
    ann_macs = sum(macs.values())
    snn_macs = T * sum(macs[name] for name in first)
    snn_acs = float(sum(acs_per_image.values()))
    ann_energy = ann_macs * e_mac
    snn_energy = snn_macs * e_mac + snn_acs * e_ac
    return {
        "ann_macs": ann_macs,
        "snn_macs": snn_macs,
        "snn_acs": snn_acs,
        "ann_energy_pj": ann_energy,
        "snn_energy_pj": snn_energy,
        "energy_ratio": snn_energy / ann_energy,
        "e_mac_pj": e_mac,
        "e_ac_pj": e_ac,
        "acs_per_layer": {name: float(v) for name, v in acs_per_image.items()},
    }
