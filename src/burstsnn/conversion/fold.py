"""Fold BatchNorm into the preceding conv/linear (paper Eq. 7), on a torch.fx trace of the ANN."""

from __future__ import annotations

import copy

from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from burstsnn.errors import ConversionError
from burstsnn.graph_ops import AFFINE_MODULES, RELU_MODULES


class _Tracer(fx.Tracer):
    """torch.fx's tracer, with the activations conversion replaces (QCFS) kept as modules."""

    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return isinstance(module, RELU_MODULES) or super().is_leaf_module(module, qualified_name)


def _trace(model: nn.Module) -> fx.GraphModule:
    try:
        return fx.GraphModule(model, _Tracer().trace(model), type(model).__name__)
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
        set_module(gm, prev.target, fused)
        node.replace_all_uses_with(prev)
        gm.graph.erase_node(node)
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm


def set_module(gm: fx.GraphModule, target: str, module: nn.Module) -> None:
    parent, _, name = target.rpartition(".")
    setattr(gm.get_submodule(parent) if parent else gm, name, module)
