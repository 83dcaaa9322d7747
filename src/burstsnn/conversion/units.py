"""Spike units: the θ that turns each value of a converted graph into spike counts.

A neuron outputs s·θ.  Ops that move, join or average values carry θ along with them,
so a concat of branches with different θ has one θ per channel, and a channel shuffle
shuffles them.  ``spike_units`` follows one sample through the graph (without touching
any state) and gives every node a unit:

- None: an analog value, computed from the input (or constants) without a neuron;
- ``SpikeUnit``: a spike value; value / θ is its spike count (``exact``), or, after a
  sum of spike trains of different θ, θ is the largest of theirs (not exact);
- ``CURRENT``: anything else (a synaptic layer's output, spikes plus current).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Union

import torch
from torch import Tensor, fx, nn

from burstsnn.graph_ops import (
    ADD_FUNCTIONS, ADD_METHODS, AVERAGE_FUNCTIONS, AVERAGE_METHODS, AVERAGE_MODULES, MOVE_FUNCTIONS,
    MOVE_METHODS, MOVE_MODULES, bind, is_call,
)
from burstsnn.snn.kernels import window_max
from burstsnn.snn.network import MultiStep
from burstsnn.snn.neurons import BurstNeuron
from burstsnn.snn.pooling import _SpikingPool


@dataclass(frozen=True)
class SpikeUnit:
    """θ of a spike value, the value's shape with batch 1 (a tuple of such for the pieces
    of a chunk/split); ``exact``: value / θ is a whole spike count."""

    theta: Tensor | tuple[Tensor, ...]
    exact: bool


CURRENT = "current"
Unit = Union[None, SpikeUnit, str]


def spike_units(gm: fx.GraphModule, sample: Tensor) -> dict[fx.Node, Unit]:
    """node -> its unit (see the module doc), following ``sample`` ``[1, ...]`` (one input)
    through ``gm`` with every neuron passing its input on and every spiking pool a max pool."""
    sample = sample.to(next(itertools.chain(gm.parameters(), gm.buffers()), sample).device)
    values: dict[fx.Node, object] = {}
    units: dict[fx.Node, Unit] = {}
    for node in gm.graph.nodes:
        if node.op == "output":
            break
        if node.op == "placeholder":
            values[node], units[node] = sample, None
            continue
        if node.op == "get_attr":
            values[node], units[node] = _fetch(gm, node.target), None
            continue
        module = gm.get_submodule(node.target) if node.op == "call_module" else None
        values[node] = _run(node, module, fx.node.map_arg(node.args, values.__getitem__),
                            fx.node.map_arg(node.kwargs, values.__getitem__))
        units[node] = _unit(node, module, values, units)
    return units


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


def _run(node: fx.Node, module: nn.Module | None, args: tuple, kwargs: dict) -> object:
    """The node's value; a neuron passes its input on, a spiking pool max-pools it."""
    if isinstance(module, MultiStep):
        inner = module.module
        return inner.max_pool(args[0]) if isinstance(inner, _SpikingPool) else args[0]
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


def _unit(node: fx.Node, module: nn.Module | None, values: dict, units: dict) -> Unit:
    if not _is_tensors(values[node]):
        return None  # a size or other number
    if isinstance(module, MultiStep) and isinstance(module.module, BurstNeuron):
        return SpikeUnit(torch.zeros_like(values[node]) + module.module.threshold, exact=True)
    inputs = [n for n in node.all_input_nodes if _is_tensors(values[n])]
    found = [units[n] for n in inputs]
    if all(u is None for u in found):
        return None
    if not all(isinstance(u, SpikeUnit) for u in found):
        return CURRENT
    exact = all(u.exact for u in found)
    if isinstance(module, MultiStep):  # a spiking pool
        return SpikeUnit(module.module.max_pool(found[0].theta), exact)
    thetas = fx.node.map_arg((node.args, node.kwargs), lambda n: units[n].theta if n in inputs else values[n])
    if is_call(node, module, MOVE_MODULES, MOVE_FUNCTIONS, MOVE_METHODS):
        return SpikeUnit(_run(node, module, *thetas), exact)
    if is_call(node, module, AVERAGE_MODULES, AVERAGE_FUNCTIONS, AVERAGE_METHODS):
        return SpikeUnit(_window_max(node, module, *thetas), exact)
    if is_call(node, module, (), ADD_FUNCTIONS, ADD_METHODS) and len(found) == 2:
        a, b = (u.theta for u in found)
        return SpikeUnit(a, exact) if torch.equal(a, b) else SpikeUnit(torch.maximum(a, b), exact=False)
    return CURRENT


def _window_max(node: fx.Node, module: nn.Module | None, args: tuple, kwargs: dict) -> Tensor:
    """θ after an average over windows: the largest θ of each window (θ of one channel is one
    value, so this is that channel's θ; padding does not count)."""
    if isinstance(module, nn.AvgPool2d):
        return window_max(args[0], (module.kernel_size, module.stride, module.padding, module.ceil_mode))
    if isinstance(module, nn.AdaptiveAvgPool2d):
        return window_max(args[0], (module.output_size,))
    if node.op == "call_method":  # mean
        a = bind(("self", "dim", "keepdim"), args, kwargs)
        return a["self"].amax(dim=a["dim"], keepdim=a.get("keepdim", False))
    if node.target is torch.nn.functional.adaptive_avg_pool2d:
        a = bind(("input", "output_size"), args, kwargs)
        return window_max(a["input"], (a["output_size"],))
    a = bind(("input", "kernel_size", "stride", "padding", "ceil_mode"), args, kwargs)
    windows = (a["kernel_size"], a.get("stride") or a["kernel_size"], a.get("padding", 0), a.get("ceil_mode", False))
    return window_max(a["input"], windows)
