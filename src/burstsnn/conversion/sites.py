"""Prepare a folded graph for spiking modules: check that every op converts, drop dropouts, and
give each ReLU and max-pool call site a module of its own (a reused module gets a copy per site)."""

from __future__ import annotations

import copy

from torch import fx, nn

from burstsnn.errors import ConversionError
from burstsnn.graph_ops import (
    ADD_FUNCTIONS, ADD_METHODS, AFFINE_MODULES, AVERAGE_FUNCTIONS, AVERAGE_METHODS, AVERAGE_MODULES,
    DIM_POSITIONS, DROPOUT_FUNCTIONS, DROPOUT_MODULES, MAX_POOL_FUNCTIONS, MAX_POOL_MODULES, MOVE_FUNCTIONS,
    MOVE_METHODS, MOVE_MODULES, OTHER_ACTIVATION_FUNCTIONS, OTHER_ACTIVATION_MODULES, RELU_FUNCTIONS,
    RELU_METHODS, RELU_MODULES, SUPPORTED, SYNAPTIC_MODULES, bind, describe, is_call, is_shape_value,
    Windows, pool_windows,
)


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


def prepare(gm: fx.GraphModule) -> tuple[list[str], dict[str, Windows]]:
    """Check every node of ``gm`` converts, drop dropouts, give each ReLU and max-pool call
    site its own module (in place).  Returns the ReLU site names and each max-pool site's
    name -> windows, in graph order; ConversionError naming the first node that cannot convert."""
    relus, pools, taken = [], {}, set()
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
                windows = pool_windows(node, module)
            except ConversionError as error:
                raise ConversionError(f"{describe(gm, node)}: {error}") from None
            pools[_site(gm, node, max_pool(windows), taken).target] = windows
        elif (reason := _refusal(gm, node, module)) is not None:
            raise ConversionError(reason)
    gm.delete_all_unused_submodules()
    gm.recompile()
    return relus, pools




def max_pool(windows: Windows) -> nn.Module:
    """The ANN's max pool over ``windows`` (fixed, or adaptive for one entry)."""
    if len(windows) == 1:
        return nn.AdaptiveMaxPool2d(windows[0])
    kernel_size, stride, padding, ceil_mode = windows
    return nn.MaxPool2d(kernel_size, stride, padding, ceil_mode=ceil_mode)
