"""Operation counts and energy (paper §4.4): MACs of the ANN, ACs of the SNN.

An ANN layer costs one MAC per weight use.  An SNN layer fed by spikes costs one
AC per synaptic event (each spike, a burst of k counting k, reaching each output it
is connected to); the first layer, fed analog input, costs its MACs at every step.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn
from torch.nn.modules.utils import _pair
from torchmetrics import Metric

from burstsnn.graph_ops import (
    AVERAGE_FUNCTIONS, AVERAGE_MODULES, DROPOUT_FUNCTIONS, DROPOUT_MODULES, MOVE_MODULES, SYNAPTIC_MODULES,
    VIEW_FUNCTIONS, VIEW_METHODS, describe,
)
from burstsnn.snn.network import MultiStep, SpikingNetwork
from burstsnn.snn.neurons import BurstNeuron
from burstsnn.snn.pooling import _SpikingPool

E_MAC_PJ = 4.6
E_AC_PJ = 0.9

# Nodes between a neuron and a synaptic layer that carry its spikes along unchanged (shape
# only) or pooled: one list with convert (burstsnn.graph_ops). Joins (cat, stack), "mean"
# and sums are not followed: a layer fed by them has no single spiking source to count.
_PASS_MODULES = (*MOVE_MODULES, *DROPOUT_MODULES, *AVERAGE_MODULES)
_PASS_FUNCTIONS = (*(f for f in VIEW_FUNCTIONS if f not in (torch.chunk, torch.split, operator.getitem)),
                   *DROPOUT_FUNCTIONS, *AVERAGE_FUNCTIONS)
_PASS_METHODS = tuple(m for m in VIEW_METHODS if m not in ("chunk", "split"))
# Pass-through pools that average their window: a spike reaches every pooled position whose
# window holds it.
_AVG_POOL_FUNCTIONS = {F.avg_pool2d: nn.AvgPool2d, F.adaptive_avg_pool2d: nn.AdaptiveAvgPool2d}


@dataclass
class SynapticLayer:
    """A Conv/Linear layer of a converted network.

    ``input_unit``: θ of the neuron whose spikes it receives (value / θ = spike count;
    0-d or per channel ``[C, 1, ...]``), or None for a layer fed by the analog input;
    ``input_gamma``: that neuron's Γ, the most spikes an input position carries per step.
    ``source``: the spiking module (neuron or spiking pool) whose output spikes reach it;
    ``avg_pools``: the average pools on the way, in forward order.
    """

    name: str
    module: nn.Module
    input_unit: Tensor | None
    input_gamma: int = 1
    source: str | None = None
    avg_pools: tuple[nn.Module, ...] = ()


def _passes_spikes(node: fx.Node, module: nn.Module | None) -> bool:
    """Whether ``node`` (``module``: its module, if a call_module) hands its input's
    spikes on, reshaped or pooled."""
    if node.op == "call_module":
        return isinstance(module, _PASS_MODULES) or (
            isinstance(module, MultiStep) and isinstance(module.module, _SpikingPool)
        )
    if node.op == "call_function":
        return node.target in _PASS_FUNCTIONS
    return node.op == "call_method" and node.target in _PASS_METHODS


def _avg_pool(node: fx.Node, module: nn.Module | None) -> nn.Module | None:
    """The average pool that ``node`` applies (a functional one as its module), else None."""
    if isinstance(module, AVERAGE_MODULES):
        return module
    if node.op == "call_function" and node.target in _AVG_POOL_FUNCTIONS:
        return _AVG_POOL_FUNCTIONS[node.target](*node.args[1:], **node.kwargs)
    return None


def _synaptic_layer(gm: fx.GraphModule, node: fx.Node) -> SynapticLayer:
    """Synaptic layer ``node`` with the spikes that reach it: walks back from its input
    through shape-only and pooling nodes to a neuron (or to the graph input: analog)."""
    layer = SynapticLayer(node.target, gm.get_submodule(node.target), None)
    avg_pools = []
    source = node.args[0]
    while isinstance(source, fx.Node):
        if source.op == "placeholder":
            return layer
        module = gm.get_submodule(source.target) if source.op == "call_module" else None
        if isinstance(module, MultiStep) and layer.source is None:
            layer.source, layer.avg_pools = source.target, tuple(reversed(avg_pools))
        if isinstance(module, MultiStep) and isinstance(module.module, BurstNeuron):
            layer.input_unit, layer.input_gamma = module.module.threshold, module.module.gamma
            return layer
        if not _passes_spikes(source, module):
            break
        if (pool := _avg_pool(source, module)) is not None:
            avg_pools.append(pool)
        source = source.args[0]
    found = describe(gm, source) if isinstance(source, fx.Node) else repr(source)
    raise ValueError(
        f"layer '{node.target}': its input comes from {found}, neither spiking neurons (through "
        "shape-only or pooling nodes) nor the network input; cannot count its synaptic events"
    )


def synaptic_layers(snn: SpikingNetwork) -> list[SynapticLayer]:
    """The Conv1d/Conv2d/Linear layers of ``snn.net`` in graph order, each with the θ of
    the neuron feeding it (None: fed by the analog input).  ValueError naming the
    layer when its input is neither (e.g. a residual sum) or it is called more than once."""
    gm = snn.net
    layers, seen = [], set()
    for node in gm.graph.nodes:
        if node.op != "call_module" or not isinstance(gm.get_submodule(node.target), SYNAPTIC_MODULES):
            continue
        if node.target in seen:
            raise ValueError(f"layer '{node.target}' is called more than once; cannot attribute its operations")
        seen.add(node.target)
        layers.append(_synaptic_layer(gm, node))
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


def _window_sums(pool: nn.Module, counts: Tensor) -> Tensor:
    """Spikes each pooled position receives: ``counts`` ``[N, C, H, W]`` spikes per input
    position -> ``[N, C, H', W']`` sums over each window of ``pool`` (an nn.AvgPool2d or
    nn.AdaptiveAvgPool2d), so a spike in k windows is counted k times."""
    if isinstance(pool, nn.AvgPool2d):
        return F.avg_pool2d(counts, pool.kernel_size, pool.stride, pool.padding, pool.ceil_mode,
                            divisor_override=1)
    size = _pair(pool.output_size)
    size = tuple(n if m is None else m for n, m in zip(counts.shape[-2:], size))

    def window_lengths(n: int, m: int) -> Tensor:  # adaptive window i: [⌊i·n/m⌋, ⌈(i+1)·n/m⌉)
        i = torch.arange(m, dtype=counts.dtype, device=counts.device)
        return torch.ceil((i + 1) * n / m) - torch.floor(i * n / m)

    areas = torch.outer(*(window_lengths(n, m) for n, m in zip(counts.shape[-2:], size)))
    return (F.adaptive_avg_pool2d(counts, size) * areas).round()


def _sum_over_samples(x: Tensor) -> Tensor:
    """x: ``[steps, B, C, ...]`` -> ``[steps, C, ...]``, the sum over B, read in x's memory
    order (a channels-last sum over B in logical order is ~20× slower on CPU)."""
    steps, batch = x.shape[:2]
    if x.dim() == 5 and x[0].is_contiguous(memory_format=torch.channels_last):
        c, h, w = x.shape[2:]
        flat = x.permute(0, 1, 3, 4, 2).reshape(steps, batch, -1)
        return flat.sum(1).view(steps, h, w, c).permute(0, 3, 1, 2)
    return x.reshape(steps, batch, -1).sum(1).view(steps, *x.shape[2:])


def _counts_over_samples(values: Tensor, theta: Tensor, gamma: int) -> Tensor:
    """Spike counts summed over the samples: values ``[steps, B, C, ...]`` = s·θ with
    integer s in 0..Γ per sample -> ``[steps, C, ...]`` Σ_B s (float64, exact integers).

    The values are summed in their own dtype first, then divided by θ (one pass over the
    spikes instead of a division and a rounding of every value). With unit roundoff u
    (2^-24 in float32) a sum of n values, each s·θ rounded once, is within about
    n·u·Σs·θ of θ·Σs, and Σs ≤ n·Γ: so n²·Γ·u must stay well below ½ for the rounded
    quotient to be the exact count. At most ``⌊√(1/(4·u·Γ))⌋`` samples are summed at a
    time (915 in float32 at Γ = 5), which keeps the error under ¼ of a spike. A spiking
    pool's output (a difference of cumulative sums) is off by a few more ulps per value;
    ``tests/test_energy.py`` checks the counts behind an LIPool against one-by-one rounding.
    """
    unit_roundoff = torch.finfo(values.dtype).eps / 2
    samples = max(1, math.isqrt(int(0.25 / (unit_roundoff * gamma))))
    counts = [
        (_sum_over_samples(part) / theta).round_().double() for part in values.split(samples, dim=1)
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

    Built from ``synaptic_layers(snn)`` and the simulation length ``T``; keeps the names of
    the layers fed by spikes (the first, analog-fed layers cost MACs instead).  Usage::

        with ops.hooks(snn):
            out = snn(x, T)
            ops.update(x.shape[0])

    Each hooked layer's spikes are read where they leave their spiking module (a neuron
    or a spiking pool) as values s·θ, ``[steps·B, ...]``, and summed over the batch; the
    sum divided by θ and rounded is the exact spike count (a burst of k spikes counts k;
    ``_counts_over_samples``), so the ACs are exact integers whatever the batches (and
    DDP shards). Behind an average pool the layer receives, at each
    pooled position, every spike of the pool's window (not their mean).
    States: ``acs`` ``[L, T]`` (events per layer and step, float64) and ``samples``, both
    summed over DDP ranks.  compute() -> {layer: ACs per image at each step ``[T]``} (0-d
    when T = 1: torchmetrics squeezes single values).
    """

    full_state_update = False
    is_differentiable = False

    def __init__(self, layers: Sequence[SynapticLayer], T: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.T = T
        self.layer_names = [layer.name for layer in layers if layer.input_unit is not None]
        self.add_state("acs", torch.zeros(len(self.layer_names), T, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("samples", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self._pending: dict[str, list[Tensor]] = {}  # layer -> its spike counts summed over samples, per chunk
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
                source = snn.net.get_submodule(layer.source)
                handles.append(source.register_forward_hook(self._hook(layer, snn)))
            yield self
        finally:
            for h in handles:
                h.remove()

    def _hook(self, layer: SynapticLayer, snn: SpikingNetwork) -> Callable[[nn.Module, tuple, Tensor], None]:
        # Events are linear in the spike counts, and a layer treats every sample alike: the
        # events of a step over all samples are those of their summed counts, so each step
        # only adds its counts up over the batch and ``update`` counts the events once per
        # step. Chunks arrive in step order.
        def accumulate(module: nn.Module, inputs: tuple, output: Tensor) -> None:
            values = output.view(snn.steps, -1, *output.shape[1:])  # [steps, B, ...] spike values s·θ
            counts = _counts_over_samples(values, layer.input_unit, layer.input_gamma)  # [steps, C, ...]
            self._pending.setdefault(layer.name, []).append(counts)

        return accumulate

    def update(self, batch_size: int) -> None:
        """Add the events of the forwards since the last update, for ``batch_size`` samples."""
        if self.layer_names and not self._pending:
            raise RuntimeError("no forward ran inside hooks() since the last update")
        acs = []
        for name in self.layer_names:
            layer, chunks = self._layers[name], self._pending.get(name)
            if chunks is None:
                events = torch.zeros(self.T, dtype=torch.float64)
            else:
                counts = torch.cat(chunks)  # [T, C, ...]
                if counts.shape[0] != self.T:
                    raise RuntimeError(f"layer '{name}' ran {counts.shape[0]} steps, expected T={self.T}")
                for pool in layer.avg_pools:
                    counts = _window_sums(pool, counts)
                events = _events(layer.module, counts)
            acs.append(events.to(self.acs.device))
        if acs:
            self.acs += torch.stack(acs)
        self.samples += batch_size
        self._pending = {}

    def compute(self) -> dict[str, Tensor]:
        per_image = self.acs / self.samples
        return {name: per_image[i] for i, name in enumerate(self.layer_names)}


def energy_over_t(
    macs: Mapping[str, int],
    acs_per_step: Mapping[str, Sequence[float]],
    T: int,
    first_layers: Sequence[str],
    e_mac: float = E_MAC_PJ,
    e_ac: float = E_AC_PJ,
) -> list[float]:
    """SNN/ANN energy ratio had the simulation stopped after step t, for t = 1..T.

    At t: (t·Σ_{first layers} MACs·E_MAC + Σ_{τ ≤ t} Σ_{other layers} ACs(τ)·E_AC) / (Σ MACs·E_MAC).
    ``acs_per_step``: each non-first layer's ACs per image at steps 1..T (T values each).
    """
    acs = torch.zeros(T, dtype=torch.float64)
    for name, values in acs_per_step.items():
        values = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
        if values.numel() != T:
            raise ValueError(f"layer '{name}': {values.numel()} ACs per step, expected T={T}")
        acs += values
    t = torch.arange(1, T + 1, dtype=torch.float64)
    first_energy = sum(macs[name] for name in first_layers) * e_mac
    ann_energy = sum(macs.values()) * e_mac
    return ((t * first_energy + acs.cumsum(0) * e_ac) / ann_energy).tolist()


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
