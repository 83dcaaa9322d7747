"""Spiking max pooling: LIPool (paper Eq. 12) and the SpikeMaxPool baseline (Eq. 11).

Both take burst spike trains (values s·θ, s in 0..Γ) ``[T, B, C, H, W]`` and keep
``cumulative_input`` ``[B, C, H, W]`` and ``cumulative_output`` ``[B, C, H', W']``
(sums over all steps since ``reset()``, in the input's units) readable after a run.
``unit`` is the θ of the neuron feeding the pool (set by ``convert``; 1 otherwise):
cumulative state / unit is in spike counts.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from burstsnn.snn.kernels import fused_lipool_step


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def _steps_like(like: Tensor, steps: int) -> Tensor:
    """An empty ``[steps, *like.shape]`` whose steps are laid out like ``like``
    (channels-last when it is, as the next convolution prefers)."""
    channels_last = like.dim() == 4 and like.is_contiguous(memory_format=torch.channels_last)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    flat = torch.empty((steps * like.shape[0], *like.shape[1:]), dtype=like.dtype, device=like.device, memory_format=fmt)
    return flat.view(steps, *like.shape)


class _SpikingPool(nn.Module):
    """Shared arguments and state of the spiking max pools."""

    def __init__(
        self,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] | None = None,
        padding: int | tuple[int, int] = 0,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__()
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride) if stride is not None else self.kernel_size
        self.padding = _pair(padding)
        self.ceil_mode = ceil_mode
        self.register_buffer("unit", torch.tensor(1.0))
        self.cumulative_input: Tensor | None = None
        self.cumulative_output: Tensor | None = None

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, ceil_mode={self.ceil_mode}"
        )

    def reset(self) -> None:
        """Forget the cumulative input and output."""
        self.cumulative_input = None
        self.cumulative_output = None

    def _maxpool(self, x: Tensor) -> Tensor:
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, ceil_mode=self.ceil_mode)


class LIPool(_SpikingPool):
    """Lateral-inhibition pooling: cumulative output = max-pool of cumulative input.

    out(t) = maxpool(C(t)) − maxpool(C(t−1)), the closed form of Eq. 12, for any
    kernel/stride/padding/ceil_mode that ``nn.MaxPool2d`` accepts.
    forward(x: [T, B, C, H, W]) -> [T, B, C, H', W'].
    """

    def forward(self, x: Tensor) -> Tensor:
        if self.cumulative_input is None:
            self.cumulative_input = torch.zeros_like(x[0])
            self.cumulative_output = self._maxpool(self.cumulative_input)  # zeros [B, C, H', W']
        total, pooled = self.cumulative_input, self.cumulative_output  # updated in place
        out = _steps_like(pooled, x.shape[0])
        for t in range(x.shape[0]):  # step by step, as in any chunking
            fused_lipool_step(total, pooled, x[t], out[t], self.kernel_size, self.stride, self.padding, self.ceil_mode)
        return out


class SpikeMaxPool(_SpikingPool):
    """Baseline spiking max pool (Eq. 11): pass the current winner's input.

    In each window, the winner is the position with the largest cumulative input
    (this step included); among equal cumulative inputs the larger current input
    wins.  The output is the winner's input of this step, so the cumulative output
    lies between the max and the sum of the window's cumulative inputs.
    forward(x: [T, B, C, H, W]) -> [T, B, C, H', W'].
    """

    def forward(self, x: Tensor) -> Tensor:
        steps, batch = x.shape[:2]
        c = self._cumulate(x).flatten(0, 1)
        out = self._select(c, x.flatten(0, 1))
        out = out.view(steps, batch, *out.shape[1:])
        total = out.sum(0)
        prev = self.cumulative_output
        self.cumulative_output = total if prev is None else prev + total
        return out

    def _cumulate(self, x: Tensor) -> Tensor:
        """x: [T, B, C, H, W] -> cumulative input after each step, same shape."""
        c = torch.empty_like(x)
        total = self.cumulative_input
        if total is None:
            total = torch.zeros_like(x[0])
        # A step-by-step sum (not torch.cumsum, which accumulates in another precision
        # or order) keeps the result independent of how the steps are chunked.
        for t in range(x.shape[0]):
            total = torch.add(total, x[t], out=c[t])
        self.cumulative_input = total.clone()
        return c

    def _select(self, c: Tensor, x: Tensor) -> Tensor:
        """c, x: [N, C, H, W] -> x at each window's winner, [N, C, H', W'].

        The winner has the largest c; among equal c, the largest x (this step's input).
        """
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        tiled = (kh, kw) == (sh, sw) and ph == pw == 0 and c.shape[-2] % kh == c.shape[-1] % kw == 0
        return self._select_tiled(c, x) if tiled else self._select_windows(c, x)

    def _select_tiled(self, c: Tensor, x: Tensor) -> Tensor:
        """`_select` for windows that tile the input (stride = kernel, no padding): ~3× faster."""
        best_c = self._maxpool(c)
        best_c = best_c.repeat_interleave(self.kernel_size[0], -2)
        best_c = best_c.repeat_interleave(self.kernel_size[1], -1)
        return self._maxpool(torch.where(c == best_c, x, float("-inf")))

    def _select_windows(self, c: Tensor, x: Tensor) -> Tensor:
        """`_select` for any kernel, stride, padding and ceil_mode."""
        out_h, out_w = self._maxpool(c).shape[-2:]
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        pad = (pw, pw + kw, ph, ph + kh)  # extra right/bottom room for ceil_mode
        c, x = F.pad(c, pad, value=float("-inf")), F.pad(x, pad, value=0.0)

        def windows(t: Tensor) -> Tensor:  # [N, C, Hp, Wp] -> [N, C, H', W', kh·kw] (a view)
            t = t.unfold(2, kh, sh)[:, :, :out_h].unfold(3, kw, sw)[:, :, :, :out_w]
            return t.flatten(-2)

        c_win, x_win = windows(c), windows(x)
        best_c = c_win.amax(-1, keepdim=True)
        return torch.where(c_win == best_c, x_win, float("-inf")).amax(-1)
