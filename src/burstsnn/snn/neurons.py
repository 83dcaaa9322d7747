"""Burst integrate-and-fire neuron (paper Eq. 2-4 and Algorithm 1)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from burstsnn.rules import check
from burstsnn.snn.kernels import fused_burst_step, sum_over_samples
from burstsnn.snn.pooling import LIPool

UINT8_COUNTS = torch.iinfo(torch.uint8).max  # the most spikes a neuron's uint8 counter holds (255)


class BurstNeuron(nn.Module):
    """Integrate-and-fire neuron that may emit up to ``gamma`` spikes per step.

    Per step t:  V += I(t);  s = clamp(floor(V/θ), 0, Γ)  (a spike count);
    soft reset: V -= s·θ;  hard reset: V = 0 where s > 0.  Output: s·θ, so the
    next layer receives current on the ANN's scale (threshold balancing, Eq. 6).
    Γ = 1 is the plain IF neuron.  V starts at ``v_init``·θ.

    Args:
        threshold: θ, a positive float or a tensor broadcastable against one
            step of input ``[B, ...]`` (e.g. ``[C, 1, 1]`` for per-channel θ).
        gamma: Γ, the most spikes per step (int ≥ 1).
        reset: "soft" (subtract s·θ) or "hard" (to zero on firing).
        v_init: initial membrane potential in units of θ, in [0, 1).

    State: ``v`` (membrane potential ``[B, ...]``, None after ``reset()``) carries
    over between calls; θ is read at the first call after a reset.  With ``record = True``
    each call adds every neuron's spikes (a burst of k counts k) to ``spikes`` (``[B, ...]``),
    counted since the last reset:
    uint8 while no count can pass 255 (steps·Γ ≤ 255: a quarter of the memory traffic of
    float32 in every recorded step), widened to float32 (exact up to 2^24) before a call
    that could pass it; ``spike_count()`` is their total.  ``num_neurons`` is the number of
    neurons per sample seen in the last call.

    ``feeds``: ``(pool,)``, the ``LIPool`` that this neuron's output goes to alone, or ``()``
    (``SpikingNetwork`` sets it before each forward, to ``()`` while a hook watches what
    passes between the two).  Then the neuron's output is never written: each step adds
    s·θ to the pool's cumulative input in the same pass, and the pool's output is returned
    instead (the pool passes it on).  Same numbers, one full-size tensor fewer written and
    read per step.

    ``overwrites_input``: whether the output is written over the input current ``x`` (which
    nobody reads afterwards: ``SpikingNetwork`` sets it before each forward, for a neuron fed by
    a convolution or linear layer alone, unless a hook could hold on to that input).  Same
    numbers, one full-size buffer fewer per step.
    """

    def __init__(
        self,
        threshold: float | Tensor,
        gamma: int = 1,
        reset: str = "soft",
        v_init: float = 0.0,
    ) -> None:
        super().__init__()
        check("gamma", gamma)
        check("reset", reset)
        check("v_init", v_init)
        threshold = torch.as_tensor(threshold, dtype=torch.get_default_dtype())
        if not bool(torch.all(threshold > 0)) or not bool(torch.all(torch.isfinite(threshold))):
            raise ValueError("threshold must be positive and finite")
        self.register_buffer("threshold", threshold.clone())
        self.gamma = gamma
        self.reset_mode = reset
        self.v_init = float(v_init)
        self.record = False
        self.v: Tensor | None = None
        self._step_theta = self.threshold  # θ as the fused step takes it, set with v
        self.spikes: Tensor | None = None
        self.recorded_steps = 0
        self.num_neurons = 0
        self.feeds: tuple[LIPool, ...] = ()  # in a tuple: the pool is not a submodule of the neuron
        self.overwrites_input = False

    def extra_repr(self) -> str:
        theta = self.threshold
        shown = f"{theta.item():.4g}" if theta.numel() == 1 else f"tensor{tuple(theta.shape)}"
        return f"threshold={shown}, gamma={self.gamma}, reset={self.reset_mode}, v_init={self.v_init}"

    def reset(self) -> None:
        """Forget the membrane potential and the recorded spikes."""
        self.v = None
        self.spikes = None
        self.recorded_steps = 0

    def forward(self, x: Tensor) -> Tensor:
        """x: input current ``[T, B, ...]`` -> output ``[T, B, ...]`` = s·θ (or, running
        the pool it ``feeds``, that pool's output ``[T, B, C, H', W']``)."""
        if self.v is None:
            theta = self.threshold
            dtype = torch.promote_types(x.dtype, theta.dtype)
            self.v = torch.empty_like(x[0], dtype=dtype).copy_(self.v_init * theta)  # one pass, x's layout
            if theta.dim() == 0 and x.dim() >= 3:
                # One θ per channel, all equal: the fused step compiled for per-channel θ serves
                # per-layer θ too (one compilation fewer per process; the same numbers).
                theta = theta.expand(x.shape[2], *[1] * (x.dim() - 3)).contiguous()
            self._step_theta = theta  # until the next reset
        theta = self._step_theta
        self.num_neurons = x[0, 0].numel()
        soft = self.reset_mode == "soft"
        spikes = None
        if self.record:
            steps = self.recorded_steps + x.shape[0]
            if self.spikes is None:
                self.spikes = torch.zeros_like(self.v, dtype=torch.uint8)
            if self.spikes.dtype == torch.uint8 and steps * self.gamma > UINT8_COUNTS:
                self.spikes = self.spikes.to(torch.promote_types(self.v.dtype, torch.float32))
            spikes, self.recorded_steps = self.spikes, steps
        pool = self.feeds[0] if self.feeds else None
        if pool is None:
            out = x if self.overwrites_input else torch.empty_like(x)
            for t in range(x.shape[0]):
                fused_burst_step(self.v, x[t], theta, self.gamma, out[t], soft, spikes, None)
            return out
        pool.start(x[0])
        out = pool.outputs(x.shape[0])
        for t in range(x.shape[0]):
            fused_burst_step(self.v, x[t], theta, self.gamma, None, soft, spikes, pool.cumulative_input)
            pool.emit(out[t])
        pool.accept()
        return out

    def spike_count(self) -> Tensor:
        """Total spikes (0-d, float64: exact) of every neuron and sample since the last reset;
        needs ``record = True`` during the forwards."""
        if self.spikes is None:
            raise RuntimeError("no spikes recorded: set record = True before the forward")
        spikes = self.spikes
        if spikes.dtype == torch.uint8 or (
            spikes.dtype == torch.float32 and spikes.shape[0] * self.recorded_steps * self.gamma < 2**24
        ):
            # Summed over the batch first (in int64, or in float32, 4x faster than summing all in
            # float64: every partial sum is an integer ≤ B·steps·Γ < 2^24, so exact).
            return sum_over_samples(spikes.unsqueeze(0)).sum(dtype=torch.float64)
        return spikes.sum(dtype=torch.float64)

