"""SpikingNetwork: multi-step simulation of a converted fx graph, with probes."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator

import torch
from torch import Tensor, fx, nn
from torch.nn.modules.module import _global_forward_hooks, _global_forward_pre_hooks

from burstsnn.graph_ops import IN_PLACE_METHODS, VIEW_FUNCTIONS, VIEW_METHODS
from burstsnn.rules import check
from burstsnn.snn.neurons import BurstNeuron
from burstsnn.snn.pooling import LIPool, SpikingPool


class MultiStep(nn.Module):
    """Lets a stateful module ``[T, B, ...] -> [T, B, ...]`` sit in a graph that
    carries time folded into the batch: forward(x: [steps·B, ...]) -> [steps·B, ...].

    ``steps`` (the current chunk length) is set by the ``SpikingNetwork``.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module
        self.steps = 1

    def forward(self, x: Tensor) -> Tensor:
        y = self.module(x.view(self.steps, -1, *x.shape[1:]))
        return y.flatten(0, 1)


def _called_once(gm: fx.GraphModule) -> dict[fx.Node, nn.Module]:
    """``gm``'s call_module nodes whose module no other node calls -> that module."""
    calls = Counter(node.target for node in gm.graph.nodes if node.op == "call_module")
    return {node: gm.get_submodule(node.target) for node in gm.graph.nodes
            if node.op == "call_module" and calls[node.target] == 1}


def _stepped(module: nn.Module, kind: type) -> bool:
    """Whether ``module`` is a MultiStep around a ``kind``."""
    return isinstance(module, MultiStep) and isinstance(module.module, kind)


def _neurons_feeding_a_pool_alone(gm: fx.GraphModule) -> list[tuple[MultiStep, MultiStep]]:
    """(neuron, LIPool) pairs of ``gm``'s modules, each called once, where the pool is the only
    user of the neuron's output."""
    once = _called_once(gm)
    pairs = []
    for node, neuron in once.items():
        if not _stepped(neuron, BurstNeuron) or len(node.users) != 1:
            continue
        (user,) = node.users
        pool = once.get(user)
        if pool is not None and user.args == (node,) and not user.kwargs and _stepped(pool, LIPool):
            pairs.append((neuron, pool))
    return pairs


# Layers whose output is a new tensor at every call (a neuron may write over it).
FRESH_OUTPUT_LAYERS = (nn.Conv2d, nn.Linear)


def _neurons_overwriting_their_input(gm: fx.GraphModule, stateful: set[str]) -> list[tuple[nn.Module, MultiStep]]:
    """(layer, neuron) pairs of ``gm``'s modules: a neuron called once on the output of a
    convolution or linear layer that nothing else reads and that is computed at every step (not
    by the time-constant prefix, whose values every step reuses)."""
    dynamic = _time_dependent(list(gm.graph.nodes)[:-1], stateful)
    pairs = []
    for node, neuron in _called_once(gm).items():
        if not _stepped(neuron, BurstNeuron) or len(node.args) != 1 or node.kwargs:
            continue
        (source,) = node.args
        if isinstance(source, fx.Node) and source.op == "call_module" and source in dynamic and len(source.users) == 1:
            layer = gm.get_submodule(source.target)
            if isinstance(layer, FRESH_OUTPUT_LAYERS):
                pairs.append((layer, neuron))
    return pairs


def _hooked(forward: tuple[nn.Module, ...], pre: tuple[nn.Module, ...]) -> bool:
    """Whether a global forward (pre-)hook is set, a forward hook of a module in ``forward``,
    or a forward pre-hook of one in ``pre``."""
    return bool(_global_forward_hooks or _global_forward_pre_hooks
                or any(m._forward_hooks for m in forward) or any(m._forward_pre_hooks for m in pre))


def _watched(neuron: MultiStep, pool: MultiStep) -> bool:
    """Whether a hook may look at what passes from ``neuron`` to ``pool``: a forward hook of
    the neuron, any forward hook of the pool (each module or its MultiStep), or a global one."""
    return _hooked(forward=(neuron, neuron.module, pool, pool.module), pre=(pool, pool.module))


def _overwrite_watched(layer: nn.Module, neuron: MultiStep) -> bool:
    """Whether a hook may hold on to what ``layer`` passes to ``neuron``: a forward hook of the
    layer, any forward hook of the neuron (or its MultiStep), or a global one."""
    return _hooked(forward=(layer, neuron, neuron.module), pre=(neuron, neuron.module))


def _repeat(value: object, steps: int, fresh: bool) -> object:
    """[B, ...] -> [steps·B, ...] (the same input current at every step); ``fresh``: never
    a view of ``value`` (the rest modifies it in place)."""
    if not isinstance(value, Tensor):
        return value
    repeated = value.unsqueeze(0).expand(steps, *value.shape).reshape(-1, *value.shape[1:])
    return repeated.clone() if fresh and steps == 1 else repeated  # steps > 1: reshape copied


def _time_dependent(nodes: list[fx.Node], stateful: set[str]) -> set[fx.Node]:
    """The nodes (in graph order) whose values change from step to step: the calls of the
    stateful modules ``stateful`` and all that depends on them."""
    dynamic: set[fx.Node] = set()
    for node in nodes:
        if (node.op == "call_module" and node.target in stateful) or any(arg in dynamic for arg in node.all_input_nodes):
            dynamic.add(node)
    return dynamic


def _split(gm: fx.GraphModule, stateful: set[str]) -> tuple[fx.GraphModule, fx.GraphModule, set[int]]:
    """Split ``gm`` into a prefix that does not depend on time (what the input gives before
    the first stateful module, run once on [B]) and the time-dependent rest.

    prefix(x) returns a tuple of the values the rest needs; rest(*values repeated over
    steps) returns the output ``[steps·B, ...]``.  Constants (parameters, buffers and what
    is computed from them alone) have no batch dimension: the rest computes them itself,
    so they are never repeated.  Also returns the positions of the rest's inputs that it
    modifies in place (through a view, too), which must be fresh copies at every step.
    """
    nodes = list(gm.graph.nodes)
    output = nodes[-1]
    dynamic = _time_dependent(nodes[:-1], stateful)
    batched: set[fx.Node] = set()
    for node in nodes[:-1]:
        if node not in dynamic and (node.op == "placeholder" or any(arg in batched for arg in node.all_input_nodes)):
            batched.add(node)
    frontier = [n for n in nodes[:-1] if n in batched and any(u in dynamic or u is output for u in n.users)]
    constants: set[fx.Node] = set()
    stack = [a for n in (*dynamic, output) for a in n.all_input_nodes if a not in dynamic and a not in batched]
    while stack:
        node = stack.pop()
        if node not in constants:
            constants.add(node)
            stack.extend(node.all_input_nodes)

    prefix_graph, env = fx.Graph(), {}
    for node in nodes[:-1]:
        if node not in dynamic:
            env[node] = prefix_graph.node_copy(node, lambda a: env[a])
    prefix_graph.output(tuple(env[n] for n in frontier))
    prefix = fx.GraphModule(gm, prefix_graph)
    prefix.graph.eliminate_dead_code()
    prefix.recompile()

    rest_graph = fx.Graph()
    env = {n: rest_graph.placeholder(f"static_{i}") for i, n in enumerate(frontier)}
    for node in nodes:
        if node in dynamic or node in constants or node is output:
            env[node] = rest_graph.node_copy(node, lambda a: env[a])
    mutated = {i for i, n in enumerate(frontier) if _modified_in_place(n, dynamic)}
    return prefix, fx.GraphModule(gm, rest_graph), mutated


def _modified_in_place(node: fx.Node, dynamic: set[fx.Node]) -> bool:
    """Whether a time-dependent node modifies ``node``'s value in place, directly or
    through a view of it."""
    views, stack = set(), [node]
    while stack:
        alias = stack.pop()
        views.add(alias)
        for user in alias.users:
            if user.op == "call_method" and user.target in IN_PLACE_METHODS and user.args[0] is alias:
                if user in dynamic:
                    return True
                stack.append(user)  # add_ returns its input
            elif user.op == "call_method" and user.target in VIEW_METHODS and user not in views:
                stack.append(user)
            elif user.op == "call_function" and user.target in VIEW_FUNCTIONS and user not in views:
                stack.append(user)
    return False


# Share of the free CUDA memory that chunk=None lets one chunk's activations take.
MEMORY_FRACTION = 0.5


def fit_chunk(step_bytes: int, steps: int, budget: int) -> int:
    """The most steps (1..``steps``, at least 1) whose activations, ``step_bytes`` each,
    fit in ``budget`` bytes."""
    return max(1, min(steps, budget // max(1, step_bytes)))


def _storage_bytes(values: Iterable[object]) -> int:
    """Bytes of the distinct storages behind the tensors in ``values`` (in tuples too)."""
    storages: dict[int, int] = {}
    stack = list(values)
    while stack:
        v = stack.pop()
        if isinstance(v, (tuple, list)):
            stack.extend(v)
        elif isinstance(v, Tensor):
            storage = v.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())


class _PeakBytes(fx.Interpreter):
    """Runs a graph like its GraphModule (values freed after their last use) and keeps
    in ``bytes`` the peak of the live values' bytes: one step's activation memory."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.bytes = 0

    def run_node(self, n: fx.Node) -> object:
        result = super().run_node(n)
        self.bytes = max(self.bytes, _storage_bytes([*self.env.values(), result]))
        return result


class SpikingNetwork(nn.Module):
    """A converted network, simulated for T steps with direct (analog) input.

    ``net`` is the converted ``fx.GraphModule``: the ANN's graph with each ReLU
    call site a ``MultiStep(BurstNeuron)`` and each MaxPool a ``MultiStep`` spiking
    pool.  Layer names below are those modules' qualified names in ``net``.

    Probes (no effect on results): set ``record = True`` before a forward, then
    ``spike_totals()``; ``neuron_counts()``, ``thresholds()``, ``pool_states()``.
    The network always stays in eval mode.

    ``memory_budget`` (bytes, default None) bounds the activations of one chunk when
    ``forward`` picks the chunk (``chunk=None``); see ``forward``.
    """

    def __init__(self, graph: fx.GraphModule) -> None:
        super().__init__()
        # Channels-last convolutions are several times faster on CPU for these networks.
        self.net = graph.to(memory_format=torch.channels_last)
        stateful = {name for name, m in graph.named_modules() if isinstance(m, MultiStep)}
        self._stepped = [m for name, m in graph.named_modules() if isinstance(m, MultiStep)]
        self._pooling_neurons = _neurons_feeding_a_pool_alone(graph)
        self._overwriting_neurons = _neurons_overwriting_their_input(graph, stateful)
        # Not registered as submodules: they share graph's modules.
        *self._parts, self._fresh = _split(graph, stateful)
        self.memory_budget: int | None = None
        self.last_chunk = 0  # chunk of the last forward
        self.steps = 1  # steps of the chunk being run: modules see [steps·B, ...]
        self.step_bytes = 0  # one step's activation bytes, when the last forward measured them
        self.eval()

    def train(self, mode: bool = True) -> SpikingNetwork:
        """Always eval: the converted graph has no training behaviour."""
        return super().train(False)

    def _named(self, kind: type) -> Iterator[tuple[str, nn.Module]]:
        for name, m in self.net.named_modules():
            if isinstance(m, MultiStep) and isinstance(m.module, kind):
                yield name, m.module

    def neurons(self) -> Iterator[tuple[str, BurstNeuron]]:
        """(layer name, BurstNeuron) in graph order."""
        return self._named(BurstNeuron)

    def pools(self) -> Iterator[tuple[str, nn.Module]]:
        """(layer name, LIPool | SpikeMaxPool) in graph order."""
        return self._named(SpikingPool)

    def reset(self) -> None:
        """Clear every neuron's and pool's state (and recorded spikes)."""
        for m in self._stepped:
            m.module.reset()

    @property
    def record(self) -> bool:
        """Whether neurons accumulate spike counts during forward (default False)."""
        return any(n.record for _, n in self.neurons())

    @record.setter
    def record(self, value: bool) -> None:
        for _, n in self.neurons():
            n.record = bool(value)

    def forward(self, x: Tensor, T: int, chunk: int | None = None) -> Tensor:
        """x: input ``[B, ...]`` (the input current at every step) -> ``[T, B, classes]``,
        the last layer's output current at each step (cumsum over t / t -> ANN logits).

        Starts from the reset state.  Runs ``chunk`` steps at a time; the result does not
        depend on ``chunk``.  None picks by device: step by step on CPU (there the time-batched
        form's T·B-sized buffers are mapped afresh and faulted in at every call); elsewhere, or on CPU
        when ``memory_budget`` is set, the first step alone, measuring its activations'
        peak bytes (``step_bytes``), then the largest chunks that fit the budget.
        ``last_chunk`` is the chunk used.
        """
        check("T", T)
        check("chunk", chunk)
        if chunk is None and x.device.type == "cpu" and self.memory_budget is None:
            chunk = 1
        prefix, rest = self._parts
        if x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        self.reset()
        for neuron, pool in self._pooling_neurons:  # the neuron runs the pool's steps, unwatched
            neuron.module.feeds = () if _watched(neuron, pool) else (pool.module,)
        for layer, neuron in self._overwriting_neurons:  # its output over its input, unwatched
            neuron.module.overwrites_input = not _overwrite_watched(layer, neuron)
        outputs, start = [], 0
        with torch.inference_mode():
            static = prefix(x)
            if chunk is None:  # measure one step, then fit the chunk to the budget
                peak = _PeakBytes(rest)
                outputs.append(self._run(peak.run, static, 1))
                self.step_bytes = peak.bytes
                start, chunk = 1, fit_chunk(peak.bytes, T - 1, self._budget(x.device))
            for first in range(start, T, chunk):
                outputs.append(self._run(rest, static, min(chunk, T - first)))
        self.last_chunk = chunk
        return torch.cat(outputs)

    def _run(self, rest: Callable[..., Tensor], static: tuple, steps: int) -> Tensor:
        """The next ``steps`` steps: ``rest`` on the static values repeated -> ``[steps, B, ...]``."""
        self.steps = steps
        for m in self._stepped:
            m.steps = steps
        y = rest(*(_repeat(v, steps, i in self._fresh) for i, v in enumerate(static)))
        return y.view(steps, -1, *y.shape[1:])

    def _budget(self, device: torch.device) -> int:
        """Bytes the chunk's activations may take: ``memory_budget``, else
        ``MEMORY_FRACTION`` of the free CUDA memory (no bound on other devices)."""
        if self.memory_budget is not None:
            return self.memory_budget
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
            return int(MEMORY_FRACTION * (free + cached))
        return sys.maxsize

    def spike_totals(self) -> dict[str, Tensor]:
        """layer -> total spikes of the last forward (0-d float64, exact; summed over steps,
        batch and neurons; a burst of k spikes counts k).  Needs ``record = True``."""
        return {name: n.spike_count() for name, n in self.neurons()}

    def neuron_counts(self) -> dict[str, int]:
        """layer -> number of neurons per sample (known after a forward)."""
        return {name: n.num_neurons for name, n in self.neurons()}

    def thresholds(self) -> dict[str, Tensor]:
        """layer -> θ (0-d, or per channel ``[C, 1, ...]``), in the ANN's activation units."""
        return {name: n.threshold for name, n in self.neurons()}

    def pool_states(self) -> dict[str, tuple[Tensor, Tensor]]:
        """pool -> (cumulative input ``[B, C, H, W]``, cumulative output ``[B, C, H', W']``)
        at the end of the last forward, in spike counts (divided by ``pool.unit``)."""
        return {
            name: (p.cumulative_input / p.unit, p.cumulative_output / p.unit)
            for name, p in self.pools()
        }
