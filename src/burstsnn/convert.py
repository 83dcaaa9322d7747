"""ANN -> SNN conversion (paper §3.1): fold BN, calibrate λ, swap ReLU/MaxPool call sites."""

from __future__ import annotations

import copy
import math
import operator
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from burstsnn.calibrate import LAMBDA_RULES, FirstStep, calibrate
from burstsnn.errors import ConversionError
from burstsnn.snn.network import MultiStep, SpikingNetwork
from burstsnn.snn.neurons import RESETS, BurstNeuron
from burstsnn.snn.pooling import LIPool, SpikeMaxPool

POOLINGS = ("lipool", "spikemax", "avg")

_BN = (nn.BatchNorm1d, nn.BatchNorm2d)
_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout)
_PASS_MODULES = (
    nn.Conv1d, nn.Conv2d, nn.Linear, *_BN, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
    nn.Flatten, nn.Identity,
)
_RELU_FUNCTIONS = (F.relu, torch.relu, torch.relu_)
_DROPOUT_FUNCTIONS = (F.dropout, F.dropout1d, F.dropout2d)
_PASS_FUNCTIONS = (
    operator.add, operator.iadd, torch.add, torch.flatten, operator.getitem,
    F.avg_pool2d, F.adaptive_avg_pool2d,
)
_RELU_METHODS = ("relu", "relu_")
_PASS_METHODS = ("add", "add_", "view", "reshape", "flatten", "size", "contiguous")
SUPPORTED = (
    "Conv1d/Conv2d, Linear, BatchNorm, ReLU (module, F.relu, torch.relu), MaxPool2d, "
    "AvgPool2d/AdaptiveAvgPool2d, Flatten/torch.flatten/view/reshape, Dropout, Identity, "
    "residual add (operator.add/torch.add)"
)


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
        if node.op != "call_module" or not isinstance(modules[node.target], _BN):
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


def _site(gm: fx.GraphModule, node: fx.Node, taken: set[str]) -> fx.Node:
    """Give the ReLU/MaxPool call site ``node`` its own module (a reused module gets
    one per call site); returns the call_module node of that site."""
    if node.op == "call_module" and node.target not in taken:
        taken.add(node.target)
        return node
    module = copy.deepcopy(gm.get_submodule(node.target)) if node.op == "call_module" else nn.ReLU()
    base = node.target if node.op == "call_module" else node.name
    name = _free_name(gm, base)
    gm.add_submodule(name, module)
    taken.add(name)
    with gm.graph.inserting_after(node):
        new = gm.graph.call_module(name, (node.args[0],))
    node.replace_all_uses_with(new)
    gm.graph.erase_node(node)
    return new


def _describe(gm: fx.GraphModule, node: fx.Node) -> str:
    if node.op == "call_module":
        return f"layer '{node.target}' ({type(gm.get_submodule(node.target)).__name__})"
    target = getattr(node.target, "__name__", node.target)
    return f"node '{node.name}' ({node.op} {target})"


def _prepare(gm: fx.GraphModule) -> tuple[list[str], list[str]]:
    """Check every node is supported, drop dropouts, give each ReLU and MaxPool call
    site its own module.  Returns (relu site names, maxpool site names) in graph order."""
    relus, pools, taken = [], [], set()
    for node in list(gm.graph.nodes):
        if node.op in ("placeholder", "output", "get_attr"):
            continue
        module = gm.get_submodule(node.target) if node.op == "call_module" else None
        if isinstance(module, _DROPOUT) or (node.op == "call_function" and node.target in _DROPOUT_FUNCTIONS):
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)
        elif isinstance(module, nn.ReLU) or (
            (node.op == "call_function" and node.target in _RELU_FUNCTIONS)
            or (node.op == "call_method" and node.target in _RELU_METHODS)
        ):
            relus.append(_site(gm, node, taken).target)
        elif isinstance(module, nn.MaxPool2d):
            if module.dilation not in (1, (1, 1)) or module.return_indices:
                raise ConversionError(f"{_describe(gm, node)}: MaxPool2d with dilation or return_indices is not supported")
            pools.append(_site(gm, node, taken).target)
        elif not (
            isinstance(module, _PASS_MODULES)
            or (node.op == "call_function" and node.target in _PASS_FUNCTIONS)
            or (node.op == "call_method" and node.target in _PASS_METHODS)
        ):
            raise ConversionError(f"cannot convert {_describe(gm, node)}; supported: {SUPPORTED}")
    gm.delete_all_unused_submodules()
    gm.recompile()
    return relus, pools


def _spiking_pool(pool: nn.MaxPool2d, kind: str) -> nn.Module:
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
) -> SpikingNetwork:
    """Convert ``ann`` (not modified) into a ``SpikingNetwork``.

    Folds BN (Eq. 7), sets λ_l = p-th percentile of each ReLU call site's outputs
    over ``calib_batches`` batches of ``calib_loader`` (iterable of (inputs, targets)),
    then swaps each ReLU call site for ``BurstNeuron(θ_l = theta_scale·λ_l, gamma,
    reset, v_init)`` and each MaxPool2d for LIPool / SpikeMaxPool / AvgPool2d
    (``pooling`` = "lipool" / "spikemax" / "avg").  theta_scale = 1 is the method
    as written; 1/Γ reproduces the paper's released code.  ``lambda_rule="mse"`` sets
    λ_l instead to the value whose first burst step, θ·clamp(⌊a/θ + v_init⌋, 0, Γ), is
    closest to the layer's outputs a in mean squared error (p is then unused).
    Unsupported layers and NaN/inf weights or activations -> ConversionError naming the layer.
    """
    _check_args(p, gamma, pooling, reset, v_init, theta_scale, calib_batches, lambda_rule)
    _check_finite(ann)
    gm = fold_bn(ann)
    relus, pools = _prepare(gm)
    mse_step = FirstStep(gamma, theta_scale, v_init) if lambda_rule == "mse" else None
    lambdas = calibrate(gm, calib_loader, relus, p=p, channel_wise=channel_wise,
                        calib_batches=calib_batches, mse_step=mse_step)
    neurons = {}
    for name in relus:
        neurons[name] = BurstNeuron(theta_scale * lambdas[name], gamma=gamma, reset=reset, v_init=v_init)
        _set_module(gm, name, MultiStep(neurons[name]))
    sources = {n.target: n.args[0] for n in gm.graph.nodes if n.op == "call_module" and n.target in pools}
    for name in pools:
        pool = _spiking_pool(gm.get_submodule(name), pooling)
        source = sources[name]
        if isinstance(pool, MultiStep) and isinstance(source, fx.Node) and source.target in neurons:
            pool.module.unit = neurons[source.target].threshold.clone()
        _set_module(gm, name, pool)
    gm.recompile()
    return SpikingNetwork(gm)
