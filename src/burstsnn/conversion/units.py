"""The one graph walk of a converted network: every value's spike unit and its sources.

A neuron outputs s·θ.  Ops that move, join or average values carry θ along with them, so
a concat of branches with different θ has one θ per channel, and a channel shuffle shuffles
them.  ``value_units(gm, sample)`` follows one sample through the graph (a neuron passes its
input on, a spiking pool max-pools it; no state is touched) and gives every node one of:

- ``Analog(sources)``: computed from the input (or constants) without any neuron;
- ``Spikes(theta, exact, peak, sources)``: value / θ is the number of spikes arriving at
  each element; behind an average that is every spike of the element's window, so θ there
  is the neurons' θ divided by the average's divisor.  ``exact``: that number is whole (no
  sum of spike trains of different θ, one θ in every averaged window); ``peak``: the most
  spikes an element receives in one step; ``sources``: the names of the spiking modules
  (neurons, spiking pools) whose spikes it carries;
- ``Current(sources)``: anything else (a synaptic layer's output, spikes plus current);
- None: not a tensor (a size, or a number computed from sizes).

For analog values and currents, ``sources`` are the conv/linear/BatchNorm nodes whose
outputs are summed into the value directly (through adds only, never through a move or a
pool): the layers whose bias is part of it.

Conversion reads θ to give each spiking pool its unit and the layer sources to correct
biases; the energy counter reads θ and ``peak`` at the input of every synaptic layer.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Union

import torch
from torch import Tensor, fx, nn

from burstsnn.graph_ops import (
    ADD_FUNCTIONS, ADD_METHODS, AFFINE_MODULES, AVERAGE_FUNCTIONS, AVERAGE_METHODS, AVERAGE_MODULES,
    MOVE_FUNCTIONS, MOVE_METHODS, MOVE_MODULES, SYNAPTIC_MODULES, is_call, pool_windows, window_count, window_max,
)
from burstsnn.snn.network import MultiStep
from burstsnn.snn.neurons import BurstNeuron
from burstsnn.snn.pooling import SpikingPool

Theta = Union[Tensor, tuple[Tensor, ...]]  # a tuple for the pieces of a chunk/split


@dataclass(frozen=True)
class Analog:
    """A value computed without any neuron; ``sources``: layers summed directly into it."""

    sources: tuple[fx.Node, ...] = ()


@dataclass(frozen=True, eq=False)  # holds tensors: compared by identity
class Spikes:
    """A spike value: value / ``theta`` spikes arrive at each element (see the module doc).
    ``theta`` has the value's shape with batch 1."""

    theta: Theta
    exact: bool
    peak: int
    sources: tuple[str, ...]


@dataclass(frozen=True)
class Current:
    """A synaptic current (or spikes plus current); ``sources``: layers summed directly into it."""

    sources: tuple[fx.Node, ...] = ()


Unit = Union[None, Analog, Spikes, Current]


def value_units(gm: fx.GraphModule, sample: Tensor) -> dict[fx.Node, Unit]:
    """node -> its unit (see the module doc), following ``sample`` ``[1, ...]`` (one input)
    through the converted graph ``gm``."""
    sample = sample.to(next(itertools.chain(gm.parameters(), gm.buffers()), sample).device)
    values: dict[fx.Node, object] = {}
    units: dict[fx.Node, Unit] = {}
    for node in gm.graph.nodes:
        if node.op == "output":
            break
        if node.op == "placeholder":
            values[node] = sample
        elif node.op == "get_attr":
            values[node] = _fetch(gm, node.target)
        else:
            args, kwargs = fx.node.map_arg((node.args, node.kwargs), values.__getitem__)
            values[node] = _run(node, _module(gm, node), args, kwargs)
        units[node] = _unit(gm, node, values, units) if _is_tensors(values[node]) else None
    return units


def _unit(gm: fx.GraphModule, node: fx.Node, values: dict[fx.Node, object], units: dict[fx.Node, Unit]) -> Unit:
    if node.op in ("placeholder", "get_attr"):
        return Analog()
    module = _module(gm, node)
    if isinstance(module, MultiStep) and isinstance(module.module, BurstNeuron):
        neuron = module.module
        return Spikes(torch.zeros_like(values[node]) + neuron.threshold, True, neuron.gamma, (node.target,))
    tensors = [n for n in node.all_input_nodes if units[n] is not None]
    inputs = [units[n] for n in tensors]
    if is_call(node, module, SYNAPTIC_MODULES + AFFINE_MODULES, ()):
        return Analog((node,)) if all(isinstance(u, Analog) for u in inputs) else Current((node,))
    summed = _layer_sources(inputs) if is_call(node, module, (), ADD_FUNCTIONS, ADD_METHODS) else ()
    if all(isinstance(u, Analog) for u in inputs):
        return Analog(summed)
    if not all(isinstance(u, Spikes) for u in inputs):
        return Current(summed)
    return _spike_unit(node, module, values, dict(zip(tensors, inputs)))


def _spike_unit(node: fx.Node, module: nn.Module | None, values: dict[fx.Node, object],
                spiking: dict[fx.Node, Spikes]) -> Spikes | Current:
    """The unit of ``node``, all of whose tensor inputs (``spiking``: node -> unit) carry spikes."""
    inputs = list(spiking.values())
    exact = all(u.exact for u in inputs)
    sources = tuple(dict.fromkeys(name for u in inputs for name in u.sources))
    if isinstance(module, MultiStep):  # a spiking pool: its own output spikes
        pool, theta = module.module, inputs[0].theta
        high, low = pool.max_pool(theta), -pool.max_pool(-theta)
        return Spikes(high, exact and torch.equal(high, low), inputs[0].peak, (node.target,))
    args, kwargs = fx.node.map_arg((node.args, node.kwargs), lambda n: spiking[n].theta if n in spiking else values[n])
    if is_call(node, module, MOVE_MODULES, MOVE_FUNCTIONS, MOVE_METHODS):
        return Spikes(_run(node, module, args, kwargs), exact, max(u.peak for u in inputs), sources)
    if is_call(node, module, AVERAGE_MODULES, AVERAGE_FUNCTIONS, AVERAGE_METHODS):
        return _average(node, module, args, kwargs, inputs[0], sources)
    if is_call(node, module, (), ADD_FUNCTIONS, ADD_METHODS) and len(inputs) == 2:
        a, b = (u.theta for u in inputs)
        same = torch.equal(a, b)
        return Spikes(a if same else torch.maximum(a, b), exact and same, inputs[0].peak + inputs[1].peak, sources)
    return Current()


def _average(node: fx.Node, module: nn.Module | None, args: tuple, kwargs: dict, unit: Spikes,
             sources: tuple[str, ...]) -> Spikes:
    """Spikes behind an average of ``unit``'s values: every spike of a window arrives at the
    window's output, so θ there is the window's θ over the average's divisor (the window's
    element count over the average of ones)."""
    theta, rest = args[0], args[1:]
    ones = torch.ones_like(theta)
    if node.op == "call_method":  # x.mean(dim, keepdim): a sum over the same dims, divided
        high = theta.amax(*rest, **kwargs)
        low = theta.amin(*rest, **kwargs)
        count = ones.sum(*rest, **kwargs)
    else:
        windows = pool_windows(node, module)
        high, low = window_max(theta, windows), -window_max(-theta, windows)
        count = window_count(theta.shape, windows)
    divisor = count / _run(node, module, (ones, *rest), kwargs)
    exact = unit.exact and torch.equal(high, low)
    return Spikes(high / divisor, exact, unit.peak * int(count.max()), sources)


def _layer_sources(inputs: list[Unit]) -> tuple[fx.Node, ...]:
    """The layers summed directly into the analog values and currents among ``inputs``."""
    nodes = (n for u in inputs if isinstance(u, (Analog, Current)) for n in u.sources)
    return tuple(dict.fromkeys(nodes))


def compact(theta: Tensor) -> Tensor:
    """θ ``[1, ...]`` -> 0-d if it is one value, ``[C, 1, ...]`` if one per channel, else ``[...]``."""
    theta = theta[0]
    if bool((theta == theta.reshape(-1)[0]).all()):
        return theta.reshape(-1)[0].clone()
    if theta.dim() >= 2:
        per_channel = theta.flatten(1)[:, :1]
        if bool((theta.flatten(1) == per_channel).all()):
            return per_channel.reshape(-1, *[1] * (theta.dim() - 1)).clone()
    return theta.clone()


def per_channel(theta: Tensor) -> Tensor:
    """θ ``[1, C, H, W]`` -> the largest θ of each channel ``[C, 1, 1]`` (0-d if all are equal)."""
    return compact(theta.amax((2, 3), keepdim=True))


def _fetch(gm: fx.GraphModule, target: str) -> object:
    value: object = gm
    for name in target.split("."):
        value = getattr(value, name)
    return value


def _module(gm: fx.GraphModule, node: fx.Node) -> nn.Module | None:
    return gm.get_submodule(node.target) if node.op == "call_module" else None


def _run(node: fx.Node, module: nn.Module | None, args: tuple, kwargs: dict) -> object:
    """The node's value; a neuron passes its input on, a spiking pool max-pools it."""
    if isinstance(module, MultiStep):
        inner = module.module
        return inner.max_pool(args[0]) if isinstance(inner, SpikingPool) else args[0]
    if node.op == "call_module":
        return module(*args, **kwargs)
    if node.op == "call_function":
        return node.target(*args, **kwargs)
    return getattr(args[0], node.target)(*args[1:], **kwargs)


def _is_tensors(value: object) -> bool:
    """A tensor, or a tuple/list of tensors (the pieces of a chunk)."""
    if isinstance(value, (tuple, list)):
        return len(value) > 0 and all(isinstance(v, Tensor) for v in value)
    return isinstance(value, Tensor)
