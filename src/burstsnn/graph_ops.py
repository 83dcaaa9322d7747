"""The graph operations a convertible ANN may use, by role, and the windows of its pools:
one list and one geometry, shared by the conversion (`burstsnn.conversion`), the graph walk
that gives every value its spike unit (`burstsnn.conversion.units`, which the energy counter
reads) and the simulation (`burstsnn.snn`)."""

from __future__ import annotations

import builtins
import operator

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from burstsnn.activations import QCFS
from burstsnn.errors import ConversionError

# ReLU call sites (and QCFS, a ReLU clipped and quantised): each becomes a spiking neuron.
RELU_MODULES = (nn.ReLU, QCFS)
RELU_FUNCTIONS = (F.relu, torch.relu, torch.relu_)
RELU_METHODS = ("relu", "relu_")

# Max pools: each becomes a spiking pool (LIPool / SpikeMaxPool) or an average pool.
MAX_POOL_MODULES = (nn.MaxPool2d, nn.AdaptiveMaxPool2d)
MAX_POOL_FUNCTIONS = (F.max_pool2d, F.adaptive_max_pool2d)

# Removed by the conversion (eval mode: identity).
DROPOUT_MODULES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout)
DROPOUT_FUNCTIONS = (F.dropout, F.dropout1d, F.dropout2d)

# Synapses: weighted sums of their inputs (spikes cost ACs, analog inputs MACs).
SYNAPTIC_MODULES = (nn.Conv1d, nn.Conv2d, nn.Linear)
# Per-channel affine maps left unfolded (a BatchNorm that follows a concat or an add).
AFFINE_MODULES = (nn.BatchNorm1d, nn.BatchNorm2d)

# Carry spikes along: move, select, join or copy values without changing them.  The
# views may return a view of their input (the joins copy).
VIEW_FUNCTIONS = (torch.flatten, torch.transpose, torch.permute, torch.chunk, torch.split, operator.getitem)
VIEW_METHODS = ("view", "reshape", "flatten", "contiguous", "transpose", "permute", "chunk", "split")
MOVE_MODULES = (nn.Flatten, nn.Identity)
MOVE_FUNCTIONS = (*VIEW_FUNCTIONS, torch.cat, torch.concat, torch.stack)
MOVE_METHODS = VIEW_METHODS
# Carry spikes along averaged (a linear pool of values of one unit).
AVERAGE_MODULES = (nn.AvgPool2d, nn.AdaptiveAvgPool2d)
AVERAGE_FUNCTIONS = (F.avg_pool2d, F.adaptive_avg_pool2d)
AVERAGE_METHODS = ("mean",)

# Sums of two values (residual connections); add_ works in place.
ADD_FUNCTIONS = (operator.add, torch.add)
ADD_METHODS = ("add", "add_")
IN_PLACE_METHODS = ("add_",)

# Shapes and arithmetic on them (ints, not tensors), e.g. a channel shuffle's view sizes.
SHAPE_METHODS = ("size", "dim")
SHAPE_ARITHMETIC = (operator.floordiv, operator.mul, operator.sub, operator.add, operator.getitem)

# Joins and splits by name -> position of their ``dim`` argument (default 0): along dim 0,
# the batch, they would mix the time steps that a simulation folds into it.
DIM_POSITIONS = {"cat": 1, "concat": 1, "stack": 1, "chunk": 2, "split": 2}

# Activations that are not ReLU: refused by name (a spiking neuron computes a ReLU).
OTHER_ACTIVATION_MODULES = (
    nn.Hardswish, nn.Hardsigmoid, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.GELU, nn.ReLU6, nn.LeakyReLU,
    nn.ELU, nn.SELU, nn.CELU, nn.Mish, nn.Softplus, nn.PReLU, nn.Hardtanh, nn.Softmax, nn.LogSoftmax,
)
OTHER_ACTIVATION_FUNCTIONS = (
    F.hardswish, F.hardsigmoid, F.silu, torch.sigmoid, F.sigmoid, torch.tanh, F.tanh, F.gelu, F.relu6,
    F.leaky_relu, F.elu, F.selu, F.celu, F.mish, F.softplus, F.hardtanh, F.softmax, F.log_softmax,
)

SUPPORTED = (
    "Conv1d/Conv2d, Linear, BatchNorm, ReLU (module, F.relu, torch.relu) and QCFS, MaxPool2d and "
    "AdaptiveMaxPool2d (modules or F.max_pool2d/F.adaptive_max_pool2d), AvgPool2d/AdaptiveAvgPool2d "
    "(modules or functions), mean, Flatten/flatten/view/reshape, torch.cat/stack, transpose/permute, "
    "chunk/split, indexing, Dropout, Identity, residual add (+, torch.add, add_), parameters and "
    "buffers used as constants"
)


def describe(gm: fx.GraphModule, node: fx.Node) -> str:
    """``node`` for an error message: its layer name and type, or its op and target."""
    if node.op == "call_module":
        return f"layer '{node.target}' ({type(gm.get_submodule(node.target)).__name__})"
    target = getattr(node.target, "__name__", node.target)
    return f"node '{node.name}' ({node.op} {target})"


def is_call(node: fx.Node, module: nn.Module | None, modules: tuple, functions: tuple, methods: tuple = ()) -> bool:
    """Whether ``node`` (``module``: its module, for a call_module) calls one of these."""
    if node.op == "call_module":
        return isinstance(module, modules)
    if node.op == "call_function":
        return node.target in functions
    return node.op == "call_method" and node.target in methods


def is_shape_value(node: object) -> bool:
    """Whether ``node`` is a shape (an int or a tuple of ints computed from sizes), not a tensor."""
    if not isinstance(node, fx.Node):
        return isinstance(node, (int, tuple, list))
    if node.op == "call_method":
        return node.target in SHAPE_METHODS
    if node.op == "call_function" and node.target is builtins.getattr:
        return node.args[1] == "shape"
    return (
        node.op == "call_function"
        and node.target in SHAPE_ARITHMETIC
        and all(is_shape_value(a) for a in node.args)
    )


def bind(names: tuple[str, ...], args: tuple, kwargs: dict) -> dict:
    """A call's arguments by name, given the function's leading parameter ``names``
    (defaults are left out)."""
    return {**dict(zip(names, args)), **kwargs}


# --- pool windows: the one place where a pool (a module or a function call) becomes geometry

Windows = tuple  # (kernel_size, stride, padding, ceil_mode) for fixed windows, (output_size,) for adaptive
MAX_POOL_PARAMETERS = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
AVG_POOL_PARAMETERS = ("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                       "divisor_override")


def pool_windows(node: fx.Node, module: nn.Module | None) -> Windows:
    """The windows of the max or average pool that ``node`` calls (``module``: its module, for a
    call_module). ConversionError for dilated windows or ``return_indices``, which spiking
    pools do not have (the caller names the node)."""
    if isinstance(module, (nn.AdaptiveMaxPool2d, nn.AdaptiveAvgPool2d)):
        options, windows = vars(module), (module.output_size,)
    elif module is not None:
        options = vars(module)
        windows = (module.kernel_size, module.stride, module.padding, module.ceil_mode)
    elif node.target in (F.adaptive_max_pool2d, F.adaptive_avg_pool2d):
        options = bind(("input", "output_size", "return_indices"), node.args, node.kwargs)
        windows = (options["output_size"],)
    else:
        names = MAX_POOL_PARAMETERS if node.target is F.max_pool2d else AVG_POOL_PARAMETERS
        options = bind(names, node.args, node.kwargs)
        kernel = options["kernel_size"]
        stride = options.get("stride") or kernel  # None or an empty list: the kernel size
        windows = (kernel, stride, options.get("padding", 0), options.get("ceil_mode", False))
    if options.get("dilation", 1) not in (1, (1, 1), [1, 1]) or options.get("return_indices", False):
        raise ConversionError("max pooling with dilation or return_indices is not supported")
    return windows


def window_max(x: Tensor, windows: Windows) -> Tensor:
    """x: ``[N, C, H, W]`` -> the max over each window, ``[N, C, H', W']``."""
    if len(windows) == 1:
        return F.adaptive_max_pool2d(x, windows[0])
    kernel_size, stride, padding, ceil_mode = windows
    return F.max_pool2d(x, kernel_size, stride, padding, ceil_mode=ceil_mode)


def window_count(shape: torch.Size, windows: Windows) -> Tensor:
    """How many input elements of ``shape`` ``[..., H, W]`` each window holds (padding left
    out): ``[..., H', W']`` (float)."""
    ones = torch.ones(1, 1, *shape[-2:])
    if len(windows) == 1:  # adaptive window i along a side of n: [⌊i·n/m⌋, ⌈(i+1)·n/m⌉)
        sides = [n if m is None else m for n, m in zip(shape[-2:], _pair(windows[0]))]
        lengths = [torch.ceil((torch.arange(m) + 1) * n / m) - torch.floor(torch.arange(m) * n / m)
                   for n, m in zip(shape[-2:], sides)]
        counts = torch.outer(*lengths)
    else:
        kernel_size, stride, padding, ceil_mode = windows
        counts = F.avg_pool2d(ones, kernel_size, stride, padding, ceil_mode, divisor_override=1)[0, 0]
    return counts.expand(*shape[:-2], *counts.shape)


def _pair(value: object) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)
