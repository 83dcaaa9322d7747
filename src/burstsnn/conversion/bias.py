"""Bias correction: shift the bias feeding each spiking neuron so that, at the first step, its
mean input current equals the ANN's mean pre-activation, channel by channel (post-training
quantisation's empirical bias correction, applied to the burst neurons' first step)."""

from __future__ import annotations

import torch
from torch import Tensor, fx, nn

from burstsnn.conversion.recording import channel_rows
from burstsnn.conversion.units import Analog, Current, Unit
from burstsnn.errors import ConversionError
from burstsnn.graph_ops import AFFINE_MODULES
from burstsnn.snn.network import SpikingNetwork


def _biased_layer(gm: fx.GraphModule, node: fx.Node, units: dict[fx.Node, Unit]) -> nn.Module:
    """The conv/linear (or unfolded BatchNorm) whose bias is part of the neuron ``node``'s input
    current: the first layer summed directly into that input (the module computing it, or a
    summand of the add computing it, as a residual block's last conv) whose output reaches the
    neuron and nothing else (every value on the way has one user), so that shifting its bias
    shifts that neuron's input and nothing else. ConversionError if there is none."""
    unit = units[node.args[0]]
    for source in unit.sources if isinstance(unit, (Analog, Current)) else ():
        layer = gm.get_submodule(source.target)
        if not _feeds_only(source, node) or (layer.bias is None and isinstance(layer, AFFINE_MODULES)):
            continue  # shared output, or an affine=False BatchNorm: no bias to shift
        if layer.bias is None:
            out = layer.out_channels if isinstance(layer, nn.Conv1d | nn.Conv2d) else layer.out_features
            layer.bias = nn.Parameter(torch.zeros(out, device=layer.weight.device, dtype=layer.weight.dtype))
        return layer
    raise ConversionError(
        f"bias_correction: neuron '{node.target}' is not fed by a conv/linear/BatchNorm with a bias "
        "(directly or through an add) whose output goes nowhere else; set bias_correction=false"
    )


def _feeds_only(source: fx.Node, neuron: fx.Node) -> bool:
    """Whether ``source``'s value reaches ``neuron`` and nothing else: every node from it to
    the neuron's input has exactly one user."""
    node = source
    while len(node.users) == 1:
        (node,) = node.users
        if node is neuron:
            return True
    return False


class _ShiftToTarget:
    """Forward pre-hook on a neuron: shifts ``layer``'s bias by target − the mean of the
    neuron's input ``[B, C, ...]`` (per channel), and that input by the same amount (the
    layer's output reaches the neuron alone, through adds: the two are the same change)."""

    def __init__(self, layer: nn.Module, target: Tensor) -> None:
        self.layer, self.target = layer, target

    def __call__(self, module: nn.Module, args: tuple) -> tuple:
        x = args[0]
        shift = self.target - channel_rows(x.detach().to(torch.float64)).mean(1)
        self.layer.bias += shift.to(self.layer.bias.dtype)
        return (x + shift.to(x.dtype).view(1, -1, *[1] * (x.dim() - 2)), *args[1:])


@torch.no_grad()
def correct_bias(snn: SpikingNetwork, targets: dict[str, Tensor], x: Tensor, units: dict[fx.Node, Unit]) -> None:
    """Shift biases of ``snn`` in place so that each neuron's mean input current at the first
    step on ``x`` ``[B, ...]`` equals ``targets[name]`` ``[C]`` (the ANN's mean pre-activation at
    that ReLU call site on the same inputs: ``Recording.input_means``).

    One first step does it: each neuron, reached in graph order, shifts the bias of the layer
    feeding it and its own input by the same amount before it fires, so later neurons see the
    corrected first step of the layers before them (as if the network were run again after each
    correction). ``units``: the graph walk of ``snn.net`` (``value_units``), which names the
    layers feeding each neuron."""
    graph = snn.net
    nodes = {node.target: node for node in graph.graph.nodes if node.op == "call_module"}
    hooks = {name: _ShiftToTarget(_biased_layer(graph, nodes[name], units), targets[name])
             for name, _ in snn.neurons()}
    handles = [graph.get_submodule(name).register_forward_pre_hook(hook) for name, hook in hooks.items()]
    try:
        snn(x.to(next(graph.parameters()).device), 1)
    finally:
        for handle in handles:
            handle.remove()
