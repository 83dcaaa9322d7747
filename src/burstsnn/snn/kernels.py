"""One simulation step of a neuron or an LIPool's output, fused into one kernel on CPU
(and ``sum_over_samples``, the batch sum the spike counters share).

Each step is a handful of elementwise ops on a ``[B, ...]`` state; run one by one,
every op streams the (cache-sized or larger) tensors from memory again.
``torch.compile`` (Inductor) fuses a step into one loop over the elements, with the
same floating-point operations in the same order per element: results are identical
to the eager code (``tests/test_engine.py``).  On CPU it more than halves the
simulation time (VGG16 w0.25, batch 256: 2.47× → 1.16× T ANN forwards, measured
2026-11-29 with 2 threads); other devices run the eager functions (unmeasured there,
and the time-batched chunks make each op large enough).

The fused kernels need a C++ compiler the first time (cached afterwards).  Without one,
or with ``BURSTSNN_COMPILE=0``, the same functions run eagerly: same results, slower;
a failed compilation is reported once as a warning.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable

import torch
from torch import Tensor

from burstsnn.graph_ops import Windows, window_max


def burst_step(
    v: Tensor,
    x: Tensor,
    theta: Tensor,
    gamma: int,
    out: Tensor | None,
    soft: bool,
    spikes: Tensor | None,
    total: Tensor | None,
) -> None:
    """One step of a burst neuron, in place.

    v, x: ``[B, ...]`` membrane potential (updated) and input current; θ broadcasts
    against them.  V += x; s = clamp(⌊V/θ⌋, 0, Γ); then soft reset V -= s·θ, or hard
    reset V = 0 where s > 0.  The output s·θ goes to ``out`` (``[B, ...]``, written) and/or
    is added to ``total`` (``[B, ...]``: the cumulative input of the LIPool that this
    neuron feeds alone, so the output itself need not be written and read back); either
    may be None.  ``spikes`` (``[B, ...]``, or None): each neuron's spike count so far,
    += s in the same pass (a sum over the neurons here would cost a second pass over the
    tensors: it doubled the step's time in the fused kernel).
    """
    v.add_(x)
    s = torch.floor(v / theta).clamp_(0, gamma)
    current = s * theta
    if out is not None:
        out.copy_(current)
    if soft:
        v.sub_(current)
    else:
        v.masked_fill_(s > 0, 0.0)
    if spikes is not None:
        spikes.add_(s.to(spikes.dtype))  # whole numbers 0..Γ: exact in the counter's dtype
    if total is not None:
        total.add_(current.to(total.dtype))  # as if added from an output of total's dtype


def lipool_output(total: Tensor, pooled: Tensor, out: Tensor, windows: Windows) -> None:
    """One LIPool output, in place, once this step's input is in the cumulative input
    C(t): out = maxpool C(t) − maxpool C(t-1) (paper Eq. 12 in closed form).

    total: ``[B, C, H, W]`` cumulative input C(t); pooled, out: ``[B, C, H', W']`` maxpool
    of the cumulative input (updated from C(t-1) to C(t)) and the output (written);
    ``windows``: as in ``burstsnn.graph_ops.window_max``.  (Adding the input to C in this
    kernel too made Inductor's pooling loop 2-3× slower than a separate add.)
    """
    m = window_max(total, windows)
    out.copy_(m - pooled)
    pooled.copy_(m)


def sum_over_samples(x: Tensor) -> Tensor:
    """x: ``[steps, B, C, ...]`` -> ``[steps, C, ...]``, the sum over B, read in x's memory
    order (a channels-last sum over B in logical order is ~20× slower on CPU)."""
    steps, batch = x.shape[:2]
    if x.dim() == 5 and x[0].is_contiguous(memory_format=torch.channels_last):
        c, h, w = x.shape[2:]
        flat = x.permute(0, 1, 3, 4, 2).reshape(steps, batch, -1)
        return flat.sum(1).view(steps, h, w, c).permute(0, 3, 1, 2)
    return x.reshape(steps, batch, -1).sum(1).view(steps, *x.shape[2:])


class Fused:
    """``fn`` compiled by ``torch.compile`` for CPU tensors (its first argument's device),
    eager elsewhere; if compiling fails, eager from then on (one warning)."""

    enabled = os.environ.get("BURSTSNN_COMPILE", "1") != "0"

    def __init__(self, fn: Callable[..., object]) -> None:
        self.eager = fn
        # One graph per reset rule, recording or not, tensor rank/layout and pool geometry.
        # Shapes are symbolic, and Inductor caches a graph on disk for any later process; it
        # would choose threading from the shapes of the first call (a test's tiny tensors: one
        # thread). dynamic_threads keeps one parallel region and leaves threads to OpenMP.
        self.compiled = torch.compile(fn, dynamic=True, fullgraph=True, recompile_limit=64,
                                      options={"cpp.dynamic_threads": True})
        self.failed = False

    def __call__(self, first: Tensor, *args: object) -> object:
        if self.enabled and not self.failed and first.device.type == "cpu":
            try:
                return self.compiled(first, *args)
            except torch._dynamo.exc.TorchDynamoException as error:  # Inductor's errors too
                self.failed = True  # raised while compiling, before any state was touched
                warnings.warn(
                    f"burstsnn: torch.compile failed for {self.eager.__name__} "
                    f"({type(error).__name__}); simulating with eager ops (same results, slower). "
                    "Set BURSTSNN_COMPILE=0 to skip compiling.",
                    stacklevel=2,
                )
        return self.eager(first, *args)


fused_burst_step = Fused(burst_step)
fused_lipool_output = Fused(lipool_output)
