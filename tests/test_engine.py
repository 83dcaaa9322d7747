"""The simulation engine's optimisations leave outputs identical to a plain reference.

The reference below feeds the image through the whole converted graph at every step
(no time-constant prefix) and steps each neuron and LIPool one step at a time with
the equations written out here; the engine (fused kernels or eager ops, in-place state,
first-layer reuse, chunks, the automatic chunk and its memory budget) must match it:
exactly when it steps one step at a time, and with the same spikes when it runs several
steps as one batch. Then the layers' matrix products see a batch of k steps instead of one,
and BLAS libraries pick their kernels by batch size (MKL on Intel CPUs does), which may
round the last bits differently: outputs then agree to float64 rounding (the networks run
in float64 here, so no spike can flip on such a difference).
"""

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, fx

from burstsnn.conversion.convert import convert
from burstsnn.snn import kernels
from burstsnn.snn.network import MultiStep, fit_chunk
from burstsnn.snn.neurons import BurstNeuron
from burstsnn.snn.pooling import LIPool
from conftest import ResidualCNN, SmallCNN, ready


B, T = 5, 12


def neuron_step(n: BurstNeuron, v: Tensor | None, i: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(V, s, s·θ) after one step with input current i ``[B, ...]``."""
    theta = n.threshold
    v = (torch.zeros_like(i) + n.v_init * theta if v is None else v) + i
    s = torch.clamp(torch.floor(v / theta), 0, n.gamma)
    out = s * theta
    v = v - out if n.reset_mode == "soft" else torch.where(s > 0, torch.zeros_like(v), v)
    return v, s, out


def lipool_step(p: LIPool, state: tuple[Tensor, Tensor] | None, i: Tensor) -> tuple[tuple[Tensor, Tensor], Tensor]:
    """((C(t), maxpool C(t)), output) after one step with input i ``[B, C, H, W]``."""
    total = (torch.zeros_like(i) if state is None else state[0]) + i
    pooled = F.max_pool2d(total, p.kernel_size, p.stride, p.padding, ceil_mode=p.ceil_mode)
    prev = torch.zeros_like(pooled) if state is None else state[1]
    return (total, pooled), pooled - prev


class Reference(fx.Interpreter):
    """One step of the whole graph; neurons and pools stepped by the functions above."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.state: dict[str, object] = {}
        self.spikes: dict[str, Tensor] = {}

    def call_module(self, target, args, kwargs):
        module = self.fetch_attr(target)
        if not isinstance(module, MultiStep):
            return super().call_module(target, args, kwargs)
        inner, i = module.module, args[0]
        if isinstance(inner, BurstNeuron):
            v, s, out = neuron_step(inner, self.state.get(target), i)
            self.state[target] = v
            self.spikes[target] = self.spikes.get(target, 0) + s
            return out
        self.state[target], out = lipool_step(inner, self.state.get(target), i)
        return out


def reference(snn, x: Tensor, T: int) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
    """(outputs ``[T, B, K]``, each neuron's spikes over the T steps per neuron layer,
    cumulative pool input)."""
    ref = Reference(snn.net)
    for m in snn.net.modules():
        if isinstance(m, MultiStep):
            m.steps = 1
    x = x.contiguous(memory_format=torch.channels_last)  # the engine's layout, same ops
    with torch.inference_mode():
        outputs = torch.stack([ref.run(x) for _ in range(T)])
    pools = {name: state[0] for name, state in ref.state.items() if isinstance(state, tuple)}
    return outputs, ref.spikes, pools


@pytest.fixture(scope="module", params=["SmallCNN-soft", "ResidualCNN-hard"])
def case(request):
    name, reset = request.param.split("-")
    x = torch.randn(B, 3, 16, 16, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    ann = ready({"SmallCNN": SmallCNN, "ResidualCNN": ResidualCNN}[name]().double(), x)
    snn = convert(ann, [(x, None)], p=99.9, gamma=3, reset=reset, theta_scale=1 / 3)
    return snn, x, reference(snn, x, T)


def simulate(snn, x, T, chunk):
    """(outputs, each neuron's spikes, cumulative pool inputs) of the engine."""
    snn.record = True
    try:
        out = snn(x, T, chunk=chunk)
        spikes = {name: n.spikes.clone() for name, n in snn.neurons()}
    finally:
        snn.record = False
    pools = {name: p.cumulative_input.clone() for name, p in snn.pools()}
    return out, spikes, pools


def assert_identical(engine, expected, step_by_step: bool = True):
    """The engine's outputs, spikes and pool states equal the reference's; outputs of a run in
    chunks of several steps to float64 rounding of the batched matrix products."""
    out, spikes, pools = engine
    ref_out, ref_spikes, ref_pools = expected
    assert out.dtype == torch.float64
    if step_by_step:
        assert torch.equal(out, ref_out)
    else:
        assert torch.allclose(out, ref_out, rtol=1e-12, atol=1e-12 * float(ref_out.abs().max()))
    assert spikes.keys() == ref_spikes.keys() and all(torch.equal(spikes[k], ref_spikes[k]) for k in spikes)
    assert pools.keys() == ref_pools.keys() and all(torch.equal(pools[k], ref_pools[k]) for k in pools)
    assert sum(s.sum() for s in spikes.values()) > 0


def assert_identical_watched(snn, x, expected, watch) -> list:
    """assert_identical for a run of ``snn`` while the hook that ``watch(seen)`` registers (it
    returns its handle) is in place; returns ``seen``, what the hook put there."""
    seen: list = []
    handle = watch(seen)
    try:
        assert_identical(simulate(snn, x, T, None), expected)
    finally:
        handle.remove()
    return seen


@pytest.fixture(params=["compiled", "eager"])
def compiled(request, monkeypatch):
    """Runs the test with the fused (torch.compile) step kernels and with eager ops."""
    monkeypatch.setattr(kernels.Fused, "enabled", request.param == "compiled")
    return request.param == "compiled"


@pytest.mark.parametrize("chunk", [1, 5, T, None])
def test_engine_matches_reference(case, chunk, compiled):
    snn, x, expected = case
    engine = simulate(snn, x, T, chunk)
    assert_identical(engine, expected, step_by_step=snn.last_chunk == 1)


def test_neurons_feeding_an_lipool_alone_run_it_unless_a_hook_watches(case, monkeypatch):
    """Such a neuron adds its spikes to the pool's cumulative input in its own step and returns
    the pool's output; a hook on the neuron or the pool makes the two run apart (it sees s·θ).
    Outputs, spikes and pool states equal the reference both ways."""
    snn, x, expected = case
    neurons, pools = dict(snn.neurons()), dict(snn.pools())
    pool_after = {node.target: users[0].target for node in snn.net.graph.nodes
                  if node.target in neurons and len(users := list(node.users)) == 1 and users[0].target in pools}
    assert pool_after  # SmallCNN: both neurons (2×2 and padded 3×3/2 windows); ResidualCNN: the last one
    snn(x, 1)
    linked = [(name, n.feeds[0]) for name, n in neurons.items() if n.feeds]
    assert [name for name, _ in linked] == list(pool_after)
    assert all(pool is pools[pool_after[name]] for name, pool in linked)
    ran = []
    accept = LIPool.accept
    monkeypatch.setattr(LIPool, "accept", lambda pool: (ran.append(pool), accept(pool)))
    assert_identical(simulate(snn, x, T, None), expected)
    assert {id(p) for p in ran} == {id(p) for _, p in linked} and len(ran) == T * len(linked)

    name, _ = linked[0]
    neuron, pool = snn.net.get_submodule(name), snn.net.get_submodule(pool_after[name])  # MultiSteps
    for watch in (lambda seen: neuron.register_forward_hook(lambda m, i, o: seen.append(o.shape[1:])),
                  lambda seen: pool.register_forward_pre_hook(lambda m, i: seen.append(i[0].shape[1:]))):
        ran.clear()
        seen = assert_identical_watched(snn, x, expected, watch)
        assert seen == [neurons[name].v.shape[1:]] * T  # the neuron's [C, H, W], not the pool's
        assert {id(p) for p in ran} == {id(p) for _, p in linked[1:]}


def test_neurons_fed_by_a_layer_alone_write_over_its_output_unless_a_hook_watches(case, monkeypatch):
    """A neuron called on a convolution's (or linear layer's) output that nothing else reads,
    computed at every step, writes its output over it: not the first neuron (its input is the
    time-constant prefix's, reused by every step). A forward hook on the layer or on the neuron
    makes it write a buffer of its own (the hook keeps what it saw). Results equal the reference
    both ways."""
    snn, x, expected = case
    graph = snn.net.graph
    neurons = dict(snn.neurons())
    fed_alone = []
    for node in graph.nodes:
        if node.target in neurons:
            (source,) = node.args
            layer = snn.net.get_submodule(source.target) if source.op == "call_module" else None
            if isinstance(layer, (torch.nn.Conv2d, torch.nn.Linear)) and len(source.users) == 1:
                fed_alone.append((source.target, node.target))
    first_neuron = next(node.target for node in graph.nodes if node.target in neurons)
    overwriting = [(layer, name) for layer, name in fed_alone if name != first_neuron]
    assert overwriting  # SmallCNN: the neuron before its second pool; ResidualCNN: the block's first
    snn(x, 1)
    assert [name for name, n in neurons.items() if n.overwrites_input] == [name for _, name in overwriting]

    wrote_over = []
    forward = BurstNeuron.forward

    def spy(neuron, current):
        out = forward(neuron, current)
        wrote_over.append(out.data_ptr() == current.data_ptr())
        return out

    monkeypatch.setattr(BurstNeuron, "forward", spy)
    assert_identical(simulate(snn, x, T, None), expected)
    unfused = [name for _, name in overwriting if not neurons[name].feeds]
    assert unfused == (["relu"] if "relu" in neurons else [])  # SmallCNN's runs its LIPool instead
    assert sum(wrote_over) == T * len(unfused)

    layer_name, name = overwriting[-1]
    layer, neuron = snn.net.get_submodule(layer_name), snn.net.get_submodule(name)  # neuron: its MultiStep
    for watch in (lambda kept: layer.register_forward_hook(lambda m, i, o: kept.append((o, o.clone()))),
                  lambda kept: neuron.register_forward_pre_hook(lambda m, i: kept.append((i[0], i[0].clone())))):
        kept = assert_identical_watched(snn, x, expected, watch)
        assert not neurons[name].overwrites_input
        assert len(kept) == T and all(torch.equal(seen, copy) for seen, copy in kept)  # as the hook saw it


def test_auto_chunk_is_step_by_step_on_cpu(case):
    snn, x, expected = case
    assert_identical(simulate(snn, x, T, None), expected)
    assert snn.last_chunk == 1


@pytest.mark.parametrize("steps", [1, 3, T - 1])
def test_memory_budget_bounds_the_chunk(case, steps):
    """A budget of k steps' activations gives chunks of k steps; outputs identical."""
    snn, x, expected = case
    snn.memory_budget = 1 << 40  # measure one step's bytes first
    try:
        snn(x, T)
        assert snn.last_chunk == T - 1 and snn.step_bytes > 0
        snn.memory_budget = steps * snn.step_bytes
        engine = simulate(snn, x, T, None)
    finally:
        snn.memory_budget = None
    assert snn.last_chunk == steps
    assert_identical(engine, expected, step_by_step=steps == 1)


def test_tiny_budget_steps_one_at_a_time(case):
    snn, x, expected = case
    snn.memory_budget = 1
    try:
        engine = simulate(snn, x, T, None)
    finally:
        snn.memory_budget = None
    assert snn.last_chunk == 1 < T
    assert_identical(engine, expected)


def test_step_bytes_cover_the_largest_activation(case):
    """One step's peak bytes lie between the largest activation and all of them."""
    snn, x, _ = case
    sizes = []
    handles = [m.register_forward_hook(lambda m, i, o: sizes.append(o.numel() * o.element_size()))
               for m in snn.net.modules() if isinstance(m, MultiStep)]
    snn.memory_budget = 1
    try:
        snn(x, 1)
    finally:
        snn.memory_budget = None
        for h in handles:
            h.remove()
    assert max(sizes) < snn.step_bytes < 4 * sum(sizes) + x.numel() * x.element_size() * 8


def test_first_layers_run_once(case):
    """The layers before the first neuron see a constant input: computed once per forward."""
    snn, x, _ = case
    first = next(m for m in snn.net.modules() if isinstance(m, torch.nn.Conv2d))
    calls = []
    handle = first.register_forward_hook(lambda m, i, o: calls.append(o.shape[0]))
    try:
        for chunk in (1, 4, None):
            calls.clear()
            snn(x, T, chunk=chunk)
            assert calls == [B]
    finally:
        handle.remove()


def test_fit_chunk():
    assert fit_chunk(100, 31, 1000) == 10
    assert fit_chunk(100, 31, 50) == 1
    assert fit_chunk(100, 31, 10**9) == 31
    assert fit_chunk(0, 7, 0) == 1


@pytest.mark.parametrize("reset", ["soft", "hard"])
def test_neuron_chunks_match_reference(reset, compiled):
    """Per-channel θ, channels-last input, several calls (state carried)."""
    g = torch.Generator().manual_seed(0)
    theta = torch.rand(4, 1, 1, generator=g) + 0.2
    n = BurstNeuron(theta, gamma=3, reset=reset, v_init=0.5)
    x = torch.randn(9, 5, 4, 6, 6, generator=g).flatten(0, 1)
    x = x.contiguous(memory_format=torch.channels_last).view(9, 5, 4, 6, 6)
    n.record = True
    out = torch.cat([n(x[:4]), n(x[4:5]), n(x[5:])])
    v, expected, spikes = None, [], 0
    for t in range(9):
        v, s, o = neuron_step(n, v, x[t])
        expected.append(o)
        spikes = spikes + s
    assert torch.equal(out, torch.stack(expected))
    assert torch.equal(n.v, v)
    assert torch.equal(n.spikes, spikes) and n.spikes.sum() > 0


def test_lipool_chunks_match_reference(compiled):
    g = torch.Generator().manual_seed(1)
    p = LIPool(3, 2, padding=1, ceil_mode=True)
    x = (torch.rand(8, 5, 3, 7, 7, generator=g) < 0.3).float() * 0.7
    out = torch.cat([p(x[:3]), p(x[3:])])
    state, expected = None, []
    for t in range(8):
        state, o = lipool_step(p, state, x[t])
        expected.append(o)
    assert torch.equal(out, torch.stack(expected))
    assert torch.equal(p.cumulative_input, state[0]) and torch.equal(p.cumulative_output, state[1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_auto_chunk_matches_cpu(case):
    snn, x, (ref_out, _, _) = case
    snn.to("cuda")
    try:
        out = snn(x.cuda(), T)
    finally:
        snn.to("cpu")
    assert 1 <= snn.last_chunk <= T - 1
    assert torch.allclose(out.cpu(), ref_out, atol=1e-4)


def test_fused_kernels_run_compiled_on_cpu(case, monkeypatch):
    """With compiling enabled (the default), CPU steps never fall back to eager ops."""
    snn, x, expected = case
    eager_calls = []
    for fused in (kernels.fused_burst_step, kernels.fused_lipool_output):
        monkeypatch.setattr(fused, "eager", lambda *args: eager_calls.append(args))
    monkeypatch.setattr(kernels.Fused, "enabled", True)
    assert_identical(simulate(snn, x, T, None), expected)
    assert eager_calls == []


def test_failed_compilation_warns_once_and_runs_eagerly(monkeypatch):
    def broken(*args):
        raise torch._dynamo.exc.TorchDynamoException("no C++ compiler")

    fused = kernels.Fused(kernels.burst_step)
    monkeypatch.setattr(fused, "compiled", broken)
    monkeypatch.setattr(kernels.Fused, "enabled", True)
    x = torch.rand(2, 3, 4) * 2
    v1, v2, out1, out2 = torch.zeros(3, 4), torch.zeros(3, 4), torch.empty(3, 4), torch.empty(3, 4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fused(v1, x[0], torch.tensor(0.5), 3, out1, True, None, None)
        fused(v1, x[1], torch.tensor(0.5), 3, out1, True, spikes1 := torch.zeros(3, 4), None)
    assert ["torch.compile failed for burst_step" in str(w.message) for w in caught] == [True]
    kernels.burst_step(v2, x[0], torch.tensor(0.5), 3, out2, True, None, None)
    kernels.burst_step(v2, x[1], torch.tensor(0.5), 3, out2, True, spikes2 := torch.zeros(3, 4), None)
    assert torch.equal(out1, out2) and torch.equal(v1, v2) and torch.equal(spikes1, spikes2)
    assert fused.failed


def test_fused_kernels_compiled_on_tiny_tensors_still_use_every_thread():
    """Inductor decides a kernel's threading from the shapes it was first compiled with, and
    the kernel is cached across processes with symbolic shapes: a step first compiled by a test
    on tiny tensors would run single-threaded on a real network's. The steps are compiled to
    leave the thread count to the OpenMP runtime (one parallel region, whatever the shapes)."""
    from torch._inductor.utils import run_and_get_code

    torch._dynamo.reset()  # compile here, not from an earlier test's graph (the on-disk cache still holds)
    v, x, out, spikes = torch.zeros(2, 3), torch.rand(2, 3), torch.empty(2, 3), torch.zeros(2, 3)
    with torch.inference_mode():
        _, sources = run_and_get_code(kernels.fused_burst_step.compiled, v, x, torch.tensor(0.5), 3, out, True, spikes, None)
    assert sources and all("#pragma omp parallel" in source for source in sources)


def test_per_layer_and_per_channel_thresholds_share_one_compiled_step(monkeypatch):
    """A per-layer θ reaches the fused step as one θ per channel: no second compilation."""
    from torch._dynamo.utils import counters

    monkeypatch.setattr(kernels.Fused, "enabled", True)
    torch._dynamo.reset()
    counters.clear()
    x = torch.rand(2, 3, 4, 5, 5, generator=torch.Generator().manual_seed(0))
    per_channel, per_layer = BurstNeuron(torch.full((4, 1, 1), 0.3), gamma=2), BurstNeuron(0.3, gamma=2)
    expected = per_channel(x)
    graphs = counters["stats"]["unique_graphs"]
    assert graphs >= 1
    assert torch.equal(per_layer(x), expected) and torch.equal(per_layer.v, per_channel.v)
    assert counters["stats"]["unique_graphs"] == graphs
