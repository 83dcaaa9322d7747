"""ANN -> SNN conversion (paper §3.1): fold BN, calibrate λ, swap ReLU/MaxPool call sites."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from burstsnn.conversion.bias import correct_bias, input_means
from burstsnn.conversion.calibrate import LAMBDA_RULES, FirstStep, batch_inputs, calibrate
from burstsnn.errors import ConversionError
from burstsnn.graph_ops import (
    ADD_FUNCTIONS, ADD_METHODS, AFFINE_MODULES, AVERAGE_FUNCTIONS, AVERAGE_METHODS, AVERAGE_MODULES,
    DIM_POSITIONS, DROPOUT_FUNCTIONS, DROPOUT_MODULES, MAX_POOL_FUNCTIONS, MAX_POOL_MODULES, MOVE_FUNCTIONS,
    MOVE_METHODS, MOVE_MODULES, OTHER_ACTIVATION_FUNCTIONS, OTHER_ACTIVATION_MODULES, RELU_FUNCTIONS,
    RELU_METHODS, RELU_MODULES, SUPPORTED, SYNAPTIC_MODULES, bind, describe, is_call, is_shape_value,
)
from burstsnn.snn.network import MultiStep, SpikingNetwork
from burstsnn.snn.neurons import RESETS, BurstNeuron
from burstsnn.snn.pooling import LIPool, SpikeMaxPool
from burstsnn.conversion.units import SpikeUnit, per_channel, spike_units

POOLINGS = ("lipool", "spikemax", "avg")


def _trace(model: nn.Module) -> fx.GraphModule:
    try:
        return fx.symbolic_trace(model)
    except Exception as exc:  # fx raises many kinds on untraceable code
        raise ConversionError(f"cannot trace {type(model).__name__} with torch.fx: {exc}") from exc


def fold_bn(model: nn.Module) -> fx.GraphModule:
    """A copy of ``model`` (eval mode) with each BatchNorm that directly follows a
    conv/linear folded into it (Eq. 7); eval-mode outputs are unchanged.
    ``model`` is not modified.  BatchNorms without such a predecessor stay as they are."""
    gm = _trace(copy.deepcopy(model).eval())
    modules = dict(gm.named_modules())
    calls = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or not isinstance(modules[node.target], AFFINE_MODULES):
            continue
        bn, prev = modules[node.target], node.args[0]
        if (
            bn.running_mean is None
            or not isinstance(prev, fx.Node)
            or prev.op != "call_module"
            or len(prev.users) != 1
            or calls[prev.target] != 1
        ):
            continue
        layer = modules[prev.target]
        if isinstance(layer, (nn.Conv1d, nn.Conv2d)):
            fused = fuse_conv_bn_eval(layer, bn)
        elif isinstance(layer, nn.Linear) and isinstance(bn, nn.BatchNorm1d):
            fused = fuse_linear_bn_eval(layer, bn)
        else:
            continue
        _set_module(gm, prev.target, fused)
        node.replace_all_uses_with(prev)
        gm.graph.erase_node(node)
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm


def _set_module(gm: fx.GraphModule, target: str, module: nn.Module) -> None:
    parent, _, name = target.rpartition(".")
    setattr(gm.get_submodule(parent) if parent else gm, name, module)


def _free_name(gm: fx.GraphModule, base: str) -> str:
    name, k = base, 0
    while _has_path(gm, name):
        k += 1
        name = f"{base}_{k}"
    return name


def _has_path(gm: fx.GraphModule, target: str) -> bool:
    try:
        gm.get_submodule(target)
        return True
    except AttributeError:
        return False


def _site(gm: fx.GraphModule, node: fx.Node, module: nn.Module, taken: set[str]) -> fx.Node:
    """Give the ReLU/max-pool call site ``node`` its own module (``module`` for a function or
    method call; a reused module gets a copy per call site); returns the call_module node."""
    if node.op == "call_module" and node.target not in taken:
        taken.add(node.target)
        return node
    base = node.target if node.op == "call_module" else node.name
    name = _free_name(gm, base)
    gm.add_submodule(name, copy.deepcopy(module) if node.op == "call_module" else module)
    taken.add(name)
    with gm.graph.inserting_after(node):
        new = gm.graph.call_module(name, (node.args[0],))
    node.replace_all_uses_with(new)
    gm.graph.erase_node(node)
    return new


def _max_pool_module(node: fx.Node, module: nn.Module | None) -> nn.Module:
    """The max-pool module of a max-pool call site; ConversionError for options LIPool lacks."""
    if module is None:
        if node.target is F.adaptive_max_pool2d:
            a = bind(("input", "output_size", "return_indices"), node.args, node.kwargs)
            module = nn.AdaptiveMaxPool2d(a["output_size"], a.get("return_indices", False))
        else:
            a = bind(("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"),
                     node.args, node.kwargs)
            module = nn.MaxPool2d(a["kernel_size"], a.get("stride"), a.get("padding", 0), a.get("dilation", 1),
                                  a.get("return_indices", False), a.get("ceil_mode", False))
    if getattr(module, "dilation", 1) not in (1, (1, 1)) or module.return_indices:
        raise ConversionError("max pooling with dilation or return_indices is not supported")
    return module


def _batch_dim_use(node: fx.Node) -> str | None:
    """What ``node`` does along dimension 0 (the batch, where a simulation folds in the
    time steps), or None."""
    if node.op not in ("call_function", "call_method"):
        return None
    name = getattr(node.target, "__name__", node.target)
    if name in DIM_POSITIONS:
        dim = bind(("input",) + ("_",) * (DIM_POSITIONS[name] - 1) + ("dim",), node.args, node.kwargs).get("dim", 0)
        return f"{name} along dim 0 (the batch)" if dim == 0 else None
    if name == "transpose":
        return "transpose of dim 0 (the batch)" if 0 in node.args[1:3] else None
    if name == "permute":
        dims = node.args[1] if isinstance(node.args[1], (tuple, list)) else node.args[1:]
        return "permute moving dim 0 (the batch)" if dims[0] != 0 else None
    if name == "mean":
        dim = bind(("self", "dim"), node.args, node.kwargs).get("dim")
        dims = dim if isinstance(dim, (tuple, list)) else (dim,)
        return "mean over dim 0 (the batch)" if dim is None or 0 in dims else None
    return None


def _refusal(gm: fx.GraphModule, node: fx.Node, module: nn.Module | None) -> str | None:
    """Why ``node`` cannot be converted, or None if it can (ReLUs and max pools aside)."""
    if is_call(node, module, OTHER_ACTIVATION_MODULES, OTHER_ACTIVATION_FUNCTIONS):
        kind = type(module).__name__ if module is not None else node.target.__name__
        return (f"cannot convert {describe(gm, node)}: {kind} is not ReLU, and only ReLU activations "
                f"become spiking neurons; supported: {SUPPORTED}")
    supported = (
        is_shape_value(node)
        or is_call(node, module, SYNAPTIC_MODULES + AFFINE_MODULES, (), ())
        or is_call(node, module, MOVE_MODULES, MOVE_FUNCTIONS, MOVE_METHODS)
        or is_call(node, module, AVERAGE_MODULES, AVERAGE_FUNCTIONS, AVERAGE_METHODS)
        or is_call(node, module, (), ADD_FUNCTIONS, ADD_METHODS)
    )
    if not supported:
        return f"cannot convert {describe(gm, node)}; supported: {SUPPORTED}"
    use = _batch_dim_use(node)
    return None if use is None else f"cannot convert {describe(gm, node)}: {use} is not supported"


def _prepare(gm: fx.GraphModule) -> tuple[list[str], list[str]]:
    """Check every node is supported, drop dropouts, give each ReLU and max-pool call
    site its own module.  Returns (relu site names, max-pool site names) in graph order."""
    relus, pools, taken = [], [], set()
    for node in list(gm.graph.nodes):
        if node.op in ("placeholder", "output", "get_attr"):
            continue
        module = gm.get_submodule(node.target) if node.op == "call_module" else None
        if is_call(node, module, DROPOUT_MODULES, DROPOUT_FUNCTIONS):
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)
        elif is_call(node, module, RELU_MODULES, RELU_FUNCTIONS, RELU_METHODS):
            relus.append(_site(gm, node, nn.ReLU(), taken).target)
        elif is_call(node, module, MAX_POOL_MODULES, MAX_POOL_FUNCTIONS):
            try:
                pool = _max_pool_module(node, module)
            except ConversionError as error:
                raise ConversionError(f"{describe(gm, node)}: {error}") from None
            pools.append(_site(gm, node, pool, taken).target)
        elif (reason := _refusal(gm, node, module)) is not None:
            raise ConversionError(reason)
    gm.delete_all_unused_submodules()
    gm.recompile()
    return relus, pools


def _spiking_pool(pool: nn.Module, kind: str) -> nn.Module:
    """The replacement of a MaxPool2d / AdaptiveMaxPool2d for ``pooling=kind``."""
    if isinstance(pool, nn.AdaptiveMaxPool2d):
        if kind == "avg":
            return nn.AdaptiveAvgPool2d(pool.output_size)
        return MultiStep((LIPool if kind == "lipool" else SpikeMaxPool)(output_size=pool.output_size))
    args = (pool.kernel_size, pool.stride, pool.padding, pool.ceil_mode)
    if kind == "avg":
        return nn.AvgPool2d(*args)
    return MultiStep((LIPool if kind == "lipool" else SpikeMaxPool)(*args))


def _check_args(p, gamma, pooling, reset, v_init, theta_scale, calib_batches, lambda_rule) -> None:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p <= 100:
        raise ValueError(f"p must be a number in (0, 100], got {p!r}")
    if isinstance(gamma, bool) or not isinstance(gamma, int) or gamma < 1:
        raise ValueError(f"gamma must be an int >= 1, got {gamma!r}")
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    if reset not in RESETS:
        raise ValueError(f"reset must be one of {RESETS}, got {reset!r}")
    if not isinstance(v_init, (int, float)) or not math.isfinite(v_init):
        raise ValueError(f"v_init must be a finite number, got {v_init!r}")
    if not isinstance(theta_scale, (int, float)) or not (math.isfinite(theta_scale) and theta_scale > 0):
        raise ValueError(f"theta_scale must be a positive number, got {theta_scale!r}")
    if isinstance(calib_batches, bool) or not isinstance(calib_batches, int) or calib_batches < 1:
        raise ValueError(f"calib_batches must be an int >= 1, got {calib_batches!r}")
    if lambda_rule not in LAMBDA_RULES:
        raise ValueError(f"lambda_rule must be one of {LAMBDA_RULES}, got {lambda_rule!r}")


def _check_finite(ann: nn.Module) -> None:
    """ConversionError naming the first parameter or buffer holding NaN or inf."""
    for name, tensor in [*ann.named_parameters(), *ann.named_buffers()]:
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ConversionError(f"ANN weight '{name}' holds NaN or inf: the ANN diverged or "
                                  "its checkpoint is corrupt; retrain it")


def convert(
    ann: nn.Module,
    calib_loader: Iterable,
    *,
    p: float = 99.9,
    gamma: int = 1,
    pooling: str = "lipool",
    reset: str = "soft",
    v_init: float = 0.0,
    theta_scale: float = 1.0,
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
    the method as written; 1/Γ reproduces the paper's released code.  ``lambda_rule="mse"``
    sets λ_l instead to the value whose first burst step, θ·clamp(⌊a/θ + v_init⌋, 0, Γ), is
    closest to the layer's outputs a in mean squared error (p is then unused).
    ``bias_correction=True`` then shifts the bias of the conv/linear feeding each neuron (in
    graph order) so that the neuron's mean input current at the first step on the calibration
    batches equals the ANN's mean pre-activation there, per channel (see
    ``burstsnn.conversion.bias.correct_bias``).  Unsupported layers
    (docs/conversion.md lists the supported ones) and NaN/inf weights or activations ->
    ConversionError naming the layer.
    """
    _check_args(p, gamma, pooling, reset, v_init, theta_scale, calib_batches, lambda_rule)
    _check_finite(ann)
    gm = fold_bn(ann)
    relus, pools = _prepare(gm)
    inputs: list[torch.Tensor] = []
    mse_step = FirstStep(gamma, theta_scale, v_init) if lambda_rule == "mse" else None
    # With bias_correction, the ANN's mean pre-activations at each ReLU site on the same batches.
    with input_means(gm, relus if bias_correction else []) as preactivations:
        lambdas = calibrate(gm, _recorded(calib_loader, inputs), relus, p=p, channel_wise=channel_wise,
                            calib_batches=calib_batches, mse_step=mse_step)
    for name in relus:
        neuron = BurstNeuron(theta_scale * lambdas[name], gamma=gamma, reset=reset, v_init=v_init)
        _set_module(gm, name, MultiStep(neuron))
    for name in pools:
        _set_module(gm, name, _spiking_pool(gm.get_submodule(name), pooling))
    gm.recompile()
    _set_pool_units(gm, inputs[0][:1])
    snn = SpikingNetwork(gm)
    if bias_correction:
        correct_bias(snn, {name: mean.mean for name, mean in preactivations.items()}, torch.cat(inputs))
    return snn


def _recorded(calib_loader: Iterable, inputs: list[torch.Tensor]) -> Iterator:
    """The batches of ``calib_loader``; appends each one's inputs to ``inputs``."""
    for batch in calib_loader:
        inputs.append(batch_inputs(batch))
        yield batch


def _set_pool_units(gm: fx.GraphModule, sample: torch.Tensor) -> None:
    """Each spiking pool's ``unit``: the θ of the neurons feeding it, per input channel
    (the largest where a sum joins spike trains of different θ), or 1 for analog input."""
    units = spike_units(gm, sample)
    for node in gm.graph.nodes:
        module = gm.get_submodule(node.target) if node.op == "call_module" else None
        if isinstance(module, MultiStep) and isinstance(module.module, (LIPool, SpikeMaxPool)):
            unit = units[node.args[0]]
            if isinstance(unit, SpikeUnit):
                module.module.unit = per_channel(unit.theta)
