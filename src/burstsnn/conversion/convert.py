"""ANN -> SNN conversion (paper §3.1): fold BN, calibrate λ, swap ReLU/MaxPool call sites for
burst neurons and spiking pools, optionally correct biases."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import fx, nn

from burstsnn.conversion.bias import correct_bias
from burstsnn.conversion.calibrate import FirstStep, layer_lambdas
from burstsnn.conversion.fold import fold_bn, set_module
from burstsnn.conversion.recording import record
from burstsnn.conversion.sites import prepare
from burstsnn.conversion.units import Spikes, Unit, per_channel, value_units
from burstsnn.errors import ConversionError
from burstsnn.graph_ops import Windows
from burstsnn.rules import check, theta_scale_value
from burstsnn.snn.network import MultiStep, SpikingNetwork
from burstsnn.snn.neurons import BurstNeuron
from burstsnn.snn.pooling import LIPool, SpikeMaxPool, SpikingPool

__all__ = ["convert", "fold_bn"]


def convert(
    ann: nn.Module,
    calib_loader: Iterable,
    *,
    p: float = 99.9,
    gamma: int = 1,
    pooling: str = "lipool",
    reset: str = "soft",
    v_init: float = 0.0,
    theta_scale: float | str = 1.0,
    channel_wise: bool = False,
    calib_batches: int = 1,
    lambda_rule: str = "percentile",
    bias_correction: bool = False,
) -> SpikingNetwork:
    """Convert ``ann`` (not modified) into a ``SpikingNetwork``.

    Folds BN (Eq. 7), sets λ_l = p-th percentile of each ReLU call site's outputs
    over ``calib_batches`` batches of ``calib_loader`` (iterable of (inputs, targets)),
    then swaps each ReLU call site for ``BurstNeuron(θ_l = theta_scale·λ_l, gamma,
    reset, v_init)`` and each max pool for LIPool / SpikeMaxPool / an average pool over
    the same windows (``pooling`` = "lipool" / "spikemax" / "avg"); a spiking pool's
    ``unit`` is the θ of the neurons feeding it, per input channel.  theta_scale = 1 is
    the method as written; 1/Γ (or the text "1/gamma") reproduces the paper's released code.  ``lambda_rule="mse"``
    sets λ_l instead to the value whose first burst step, θ·clamp(⌊a/θ + v_init⌋, 0, Γ), is
    closest to the layer's outputs a in mean squared error (p is then unused);
    ``lambda_rule="trained"`` reads λ_l from each QCFS activation's trained clip (every
    activation must be one): with Γ = L, theta_scale = 1/Γ and v_init = 0.5 the SNN's first
    step then equals the quantised ANN.
    ``bias_correction=True`` then shifts the bias of the conv/linear feeding each neuron (in
    graph order) so that the neuron's mean input current at the first step on the calibration
    batches equals the ANN's mean pre-activation there, per channel (see
    ``burstsnn.conversion.bias.correct_bias``).  Unsupported layers
    (docs/conversion.md lists the supported ones) and NaN/inf weights or activations ->
    ConversionError naming the layer; a knob outside its range (``burstsnn.rules``) ->
    ConfigError naming it.
    """
    for key, value in (("p", p), ("gamma", gamma), ("pooling", pooling), ("reset", reset), ("v_init", v_init),
                       ("channel_wise", channel_wise), ("calib_batches", calib_batches),
                       ("lambda_rule", lambda_rule), ("bias_correction", bias_correction)):
        check(key, value)
    theta_scale = theta_scale_value(theta_scale, gamma)
    _check_finite(ann)
    gm = fold_bn(ann)
    relus, pools = prepare(gm)
    recording = record(gm, calib_loader, relus, calib_batches)
    mse_step = FirstStep(gamma, theta_scale, v_init) if lambda_rule == "mse" else None
    lambdas = layer_lambdas(gm, recording, relus, p=p, channel_wise=channel_wise, mse_step=mse_step,
                            trained=lambda_rule == "trained")
    for name in relus:
        neuron = BurstNeuron(theta_scale * lambdas[name], gamma=gamma, reset=reset, v_init=v_init)
        set_module(gm, name, MultiStep(neuron))
    for name, windows in pools.items():
        set_module(gm, name, _spiking_pool(windows, pooling))
    gm.recompile()
    units = value_units(gm, recording.inputs[:1])
    _set_pool_units(gm, units)
    snn = SpikingNetwork(gm)
    if bias_correction:
        correct_bias(snn, recording.input_means, recording.inputs, units)
    return snn


def _spiking_pool(windows: Windows, kind: str) -> nn.Module:
    """The replacement of a max pool over ``windows`` for ``pooling=kind``: a spiking pool
    (LIPool, SpikeMaxPool) over the same windows, or an average pool."""
    adaptive = len(windows) == 1
    if kind == "avg":
        return nn.AdaptiveAvgPool2d(windows[0]) if adaptive else nn.AvgPool2d(*windows)
    pool = LIPool if kind == "lipool" else SpikeMaxPool
    return MultiStep(pool(output_size=windows[0]) if adaptive else pool(*windows))


def _set_pool_units(gm: fx.GraphModule, units: dict[fx.Node, Unit]) -> None:
    """Each spiking pool's ``unit``: the θ of the neurons feeding it, per input channel
    (the largest where a sum joins spike trains of different θ), or 1 for analog input."""
    for node in gm.graph.nodes:
        module = gm.get_submodule(node.target) if node.op == "call_module" else None
        if isinstance(module, MultiStep) and isinstance(module.module, SpikingPool):
            unit = units[node.args[0]]
            if isinstance(unit, Spikes):
                module.module.unit = per_channel(unit.theta)


def _check_finite(ann: nn.Module) -> None:
    """ConversionError naming the first parameter or buffer holding NaN or inf."""
    for name, tensor in [*ann.named_parameters(), *ann.named_buffers()]:
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ConversionError(f"ANN weight '{name}' holds NaN or inf: the ANN diverged (retrain it "
                                  "with a lower train.lr) or its checkpoint is corrupt")
