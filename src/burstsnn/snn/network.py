"""SpikingNetwork: multi-step simulation of a converted fx graph, with probes."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, fx, nn

from burstsnn.snn.neurons import BurstNeuron
from burstsnn.snn.pooling import _SpikingPool


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


def _repeat(value: object, steps: int) -> object:
    """[B, ...] -> [steps·B, ...] (the same input current at every step)."""
    if not isinstance(value, Tensor):
        return value
    return value.unsqueeze(0).expand(steps, *value.shape).reshape(-1, *value.shape[1:])


def _split(gm: fx.GraphModule, stateful: set[str]) -> tuple[fx.GraphModule, fx.GraphModule]:
    """Split ``gm`` into a prefix that does not depend on time (everything before the
    first stateful module, run once on [B]) and the time-dependent rest.

    prefix(x) returns a tuple of the values the rest needs; rest(*values repeated
    over steps) returns the output ``[steps·B, ...]``.
    """
    nodes = list(gm.graph.nodes)
    output = nodes[-1]
    dynamic: set[fx.Node] = set()
    for node in nodes[:-1]:
        if (node.op == "call_module" and node.target in stateful) or any(
            arg in dynamic for arg in node.all_input_nodes
        ):
            dynamic.add(node)
    frontier = [
        n for n in nodes[:-1]
        if n not in dynamic and any(u in dynamic or u is output for u in n.users)
    ]

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
        if node in dynamic or node is output:
            env[node] = rest_graph.node_copy(node, lambda a: env[a])
    return prefix, fx.GraphModule(gm, rest_graph)


class SpikingNetwork(nn.Module):
    """A converted network, simulated for T steps with direct (analog) input.

    ``net`` is the converted ``fx.GraphModule``: the ANN's graph with each ReLU
    call site a ``MultiStep(BurstNeuron)`` and each MaxPool a ``MultiStep`` spiking
    pool.  Layer names below are those modules' qualified names in ``net``.

    Probes (no effect on results): set ``record = True`` before a forward, then
    ``spike_counts()``; ``neuron_counts()``, ``thresholds()``, ``pool_states()``.
    The network always stays in eval mode.
    """

    def __init__(self, graph: fx.GraphModule) -> None:
        super().__init__()
        # Channels-last convolutions are several times faster on CPU for these networks.
        self.net = graph.to(memory_format=torch.channels_last)
        stateful = {name for name, m in graph.named_modules() if isinstance(m, MultiStep)}
        self._stepped = [m for name, m in graph.named_modules() if isinstance(m, MultiStep)]
        # Not registered as submodules: they share graph's modules.
        self._parts = _split(graph, stateful)
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
        return self._named(_SpikingPool)

    def reset(self) -> None:
        """Clear every neuron's and pool's state (and recorded spike counts)."""
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
        depend on ``chunk``.  None picks by device: step by step on CPU (T·B-sized
        activations make the time-batched form memory-bound there), all T at once elsewhere.
        """
        if isinstance(T, bool) or not isinstance(T, int) or T < 1:
            raise ValueError(f"T must be an int >= 1, got {T!r}")
        if chunk is None:
            chunk = 1 if x.device.type == "cpu" else T
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
            raise ValueError(f"chunk must be None or an int >= 1, got {chunk!r}")
        prefix, rest = self._parts
        if x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        self.reset()
        outputs = []
        with torch.inference_mode():
            static = prefix(x)
            for start in range(0, T, chunk):
                steps = min(chunk, T - start)
                for m in self._stepped:
                    m.steps = steps
                y = rest(*(_repeat(v, steps) for v in static))
                outputs.append(y.view(steps, x.shape[0], *y.shape[1:]))
        return torch.cat(outputs)

    def spike_counts(self) -> dict[str, Tensor]:
        """layer -> ``[T]`` total spikes per step of the last forward (summed over batch
        and neurons; a burst of k spikes counts k).  Needs ``record = True``."""
        out = {}
        for name, n in self.neurons():
            if n.spike_counts is None:
                raise RuntimeError("no spike counts: set snn.record = True before the forward")
            out[name] = n.spike_counts
        return out

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
