"""Activation calibration: λ_l = p-th percentile of a layer's ReLU outputs (paper §3.1), the
λ whose first burst step quantises those outputs with the least squared error, or the clip λ
a QCFS activation learned in training. The outputs come from ``recording.record``."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from burstsnn.activations import QCFS
from burstsnn.conversion.recording import Recording, channel_rows
from burstsnn.errors import ConversionError


def percentile(x: Tensor, p: float, dim: int | None = None, *, is_sorted: bool = False) -> Tensor:
    """p-th percentile (0 ≤ p ≤ 100) of ``x``, equal to ``numpy.percentile(method="linear")``.

    Exact for any size (uses ``kthvalue``, not ``torch.quantile``, which refuses
    inputs above 16M elements; with ``is_sorted``, x is sorted along ``dim`` already and the
    two neighbours are read off).  ``dim=None``: over all elements (a 0-d tensor);
    otherwise along ``dim`` (that dim is removed).  Interpolated in float64 (the two
    neighbours are picked in x's own dtype: the same values).
    """
    x = x.detach()
    if dim is None:
        x, dim = x.reshape(-1), 0
    n = x.shape[dim]
    rank = p / 100.0 * (n - 1)
    lo = int(rank)
    hi = min(lo + 1, n - 1)

    def smallest(k: int) -> Tensor:  # the (k+1)-th smallest along dim, in float64
        value = x.select(dim, k) if is_sorted else torch.kthvalue(x, k + 1, dim=dim).values
        return value.to(torch.float64)

    v_lo = smallest(lo)
    if hi == lo:
        return v_lo
    return v_lo + (smallest(hi) - v_lo) * (rank - lo)


# The "mse" rule tries λ = max·k/MSE_CANDIDATES, k = 1..MSE_CANDIDATES (max over all of a
# row's activations), scoring each on at most MSE_SAMPLES activations per layer (split evenly
# over its channels), drawn with a fixed seed.
MSE_CANDIDATES = 100
MSE_SAMPLES = 1 << 18
MSE_TIE = 1e-9  # errors closer than this (relative to the row's mean square) are equal


@dataclass(frozen=True)
class FirstStep:
    """The knobs of a burst neuron's first step, a quantiser of its input a:
    θ·clamp(⌊a/θ + v_init⌋, 0, Γ) with θ = theta_scale·λ (V(0) = v_init·θ, soft or hard reset
    alike); ``mse_lambda`` scores λ by it."""

    gamma: int
    theta_scale: float
    v_init: float


@dataclass(frozen=True)
class MseSample:
    """What the "mse" rule scores candidates on, for rows of activations ``[R, N]``: ``top``
    ``[R, 1]`` each row's largest activation, ``values`` ``[R, n]`` the same n ≤
    MSE_SAMPLES // R columns of every row (all N when that many fit), each row sorted; float64.
    Independent of the first step's knobs: a search's conversions share it."""

    top: Tensor
    values: Tensor

    @classmethod
    def of(cls, acts: Tensor) -> MseSample:
        acts = acts.to(torch.float64)
        per_row = max(1, MSE_SAMPLES // acts.shape[0])
        top = acts.amax(1, keepdim=True)
        if acts.shape[1] > per_row:
            keep = torch.randperm(acts.shape[1], generator=torch.Generator().manual_seed(0))[:per_row]
            acts = acts[:, keep]
        return cls(top, acts.sort(1).values)


def mse_lambda(acts: Tensor | MseSample, step: FirstStep) -> Tensor:
    """acts ``[R, N]`` (a row per channel, or one row; or its ``MseSample``) -> λ ``[R]``: the
    candidate λ = max_r·k/MSE_CANDIDATES (k = 1..MSE_CANDIDATES) with the least mean squared
    error mean_n (step(a, λ) − a)² of each row (the first, smallest of equal ones: see MSE_TIE),
    the mean taken over the same MSE_SAMPLES // R columns of every row when N is larger.

    All candidates at once: with each row sorted, the activations that ``step`` sends to
    level j (0..Γ) are a contiguous run, a ∈ [(j − v_init)·θ, (j + 1 − v_init)·θ), so the
    squared error of each run follows from prefix sums of a and a² (no pass over the
    activations per candidate).
    """
    sample = acts if isinstance(acts, MseSample) else MseSample.of(acts)
    top, a = sample.top, sample.values
    rows, n = a.shape
    zero = a.new_zeros(rows, 1)
    sums = torch.cat([zero, a.cumsum(1)], 1)  # [R, n + 1]: sums[:, i] = Σ of the i smallest
    squares = torch.cat([zero, a.square().cumsum(1)], 1)
    lam = top * (torch.arange(1, MSE_CANDIDATES + 1, dtype=torch.float64) / MSE_CANDIDATES)  # [R, K]: max·(k/K)
    theta = step.theta_scale * lam
    levels = torch.arange(step.gamma + 1, dtype=torch.float64)  # [Γ + 1]
    # How many activations lie below level j's lower edge, j = 1..Γ; level 0 starts at 0, Γ ends at n.
    edges = theta.unsqueeze(2) * (levels[1:] - step.v_init)  # [R, K, Γ]
    below = torch.searchsorted(a, edges.reshape(rows, -1)).view(rows, MSE_CANDIDATES, step.gamma)
    bounds = torch.cat([below.new_zeros(rows, MSE_CANDIDATES, 1), below,
                        below.new_full((rows, MSE_CANDIDATES, 1), n)], 2)  # [R, K, Γ + 2]
    lo, hi = bounds[..., :-1].reshape(rows, -1), bounds[..., 1:].reshape(rows, -1)
    count = (hi - lo).view(rows, MSE_CANDIDATES, -1).to(torch.float64)
    total = (sums.gather(1, hi) - sums.gather(1, lo)).view_as(count)
    total_sq = (squares.gather(1, hi) - squares.gather(1, lo)).view_as(count)
    value = theta.unsqueeze(2) * levels  # [R, K, Γ + 1]: the level's output
    err = (total_sq - 2 * value * total + count * value.square()).sum(2) / n  # [R, K]
    # Equal errors (e.g. a row whose sample has one non-zero value a: 3θ = a and 2θ' = a are
    # two candidates) differ here only by rounding: the first within MSE_TIE of the row's mean
    # square (the error of quantising everything to 0) counts as equal to the least.
    tied = err <= err.amin(1, keepdim=True) + MSE_TIE * squares[:, -1:] / n
    first = tied.to(torch.int8).argmax(1, keepdim=True)
    return lam.gather(1, first).squeeze(1)


def _derived(recording: Recording, key: tuple, make: Callable[[], object]) -> object:
    """``make()``, computed once per recording and kept with it (``Recording.derived``)."""
    if key not in recording.derived:
        recording.derived[key] = make()
    return recording.derived[key]


def _layer_rows(recording: Recording, name: str, channel_wise: bool) -> Tensor:
    """The layer's recorded outputs ``[N, C, ...]`` as rows: ``[C, N·...]`` (channel_wise) or
    ``[1, N·C·...]``. ConversionError if any is NaN or inf."""
    acts = recording.outputs[name]
    if not bool(torch.isfinite(acts).all()):
        raise ConversionError(f"layer '{name}': NaN or inf in activations during calibration")
    return channel_rows(acts) if channel_wise else acts.reshape(1, -1)


def _layer_lambda(
    name: str, recording: Recording, p: float, channel_wise: bool, mse_step: FirstStep | None
) -> Tensor:
    """λ of the layer's recorded outputs ``[N, C, ...]``, a scalar or (channel_wise) ``[C, 1, ...]``,
    broadcastable to [B, C, ...]: the p-th percentile, or (``mse_step`` given) the λ that
    ``mse_step`` quantises best. What the rule reads of the rows (sorted, or the mse rule's
    sample) is kept with the recording for the next conversion."""
    def rows() -> Tensor:
        return _layer_rows(recording, name, channel_wise)

    if mse_step is not None:
        lam = mse_lambda(_derived(recording, ("mse", name, channel_wise), lambda: MseSample.of(rows())), mse_step)
    else:
        ordered = _derived(recording, ("sorted", name, channel_wise), lambda: rows().sort(1).values)
        lam = percentile(ordered, p, dim=1, is_sorted=True)
    spatial = recording.outputs[name].dim() - 2
    lam = lam.view(-1, *([1] * spatial)) if channel_wise else lam.reshape(())
    lam = lam.to(torch.get_default_dtype())
    if bool((lam <= 0).any()):
        warnings.warn(
            f"layer '{name}' never activated during calibration (λ = 0"
            f"{' in some channels' if channel_wise else ''}); using λ = 1.0 there",
            stacklevel=3,
        )
        lam = torch.where(lam > 0, lam, torch.ones_like(lam))
    return lam


def _trained_lambda(name: str, module: nn.Module) -> Tensor:
    """The clip λ a QCFS activation learned (0-d, or ``[C, 1, 1]`` / ``[C]`` per channel)."""
    if not isinstance(module, QCFS):
        raise ConversionError(f"lambda_rule=trained reads λ from QCFS activations, but layer '{name}' is "
                              f"{type(module).__name__}: train with model.activation=qcfs, or choose "
                              "lambda_rule=percentile or mse")
    lam = module.lam.detach().to(torch.get_default_dtype())
    if not bool((lam > 0).all() and torch.isfinite(lam).all()):
        raise ConversionError(f"layer '{name}': its trained clip λ is not positive and finite")
    return lam.clone()


def layer_lambdas(
    model: nn.Module,
    recording: Recording,
    layers: Sequence[str],
    *,
    p: float = 99.9,
    channel_wise: bool = False,
    mse_step: FirstStep | None = None,
    trained: bool = False,
) -> dict[str, Tensor]:
    """λ per layer: the p-th percentile of each named module's outputs in ``recording``
    (zeros included; p = 100 is max-norm); with ``mse_step``, instead the λ whose first burst
    step ``mse_step`` quantises them with the least mean squared error (see ``mse_lambda``);
    with ``trained``, the clip λ that each (QCFS) module of ``model`` learned, as it holds it.

    Returns name -> λ (0-d, or ``[C, 1, ...]`` per channel). A layer that never activates gets
    λ = 1 and a warning; NaN/inf -> ConversionError naming the layer.
    """
    modules = dict(model.named_modules())
    if trained:
        return {name: _trained_lambda(name, modules[name]) for name in layers}
    return {name: _layer_lambda(name, recording, p, channel_wise, mse_step) for name in layers}
