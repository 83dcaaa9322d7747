"""Spiking max pooling: LIPool (paper Eq. 12) and the SpikeMaxPool baseline (Eq. 11).

Both take burst spike trains (values s·θ, s in 0..Γ) ``[T, B, C, H, W]`` and keep
``cumulative_input`` ``[B, C, H, W]`` and ``cumulative_output`` ``[B, C, H', W']``
(sums over all steps since ``reset()``, in the input's units) readable after a run.
Windows are those of ``nn.MaxPool2d`` (kernel, stride, padding, ceil_mode) or, given
``output_size``, of ``nn.AdaptiveMaxPool2d``.
``unit`` is the θ of the neurons feeding the pool, 0-d or per input channel ``[C, 1, 1]``
(set by ``convert``; 1 otherwise): cumulative state / unit is in spike counts.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from burstsnn.graph_ops import Windows, window_max
from burstsnn.snn.kernels import fused_lipool_output


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def _steps_like(like: Tensor, steps: int) -> Tensor:
    """An empty ``[steps, *like.shape]`` whose steps are laid out like ``like``
    (channels-last when it is, as the next convolution prefers)."""
    channels_last = like.dim() == 4 and like.is_contiguous(memory_format=torch.channels_last)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    flat = torch.empty((steps * like.shape[0], *like.shape[1:]), dtype=like.dtype, device=like.device, memory_format=fmt)
    return flat.view(steps, *like.shape)


class SpikingPool(nn.Module):
    """Shared arguments and state of the spiking max pools."""

    def __init__(
        self,
        kernel_size: int | tuple[int, int] | None = None,
        stride: int | tuple[int, int] | None = None,
        padding: int | tuple[int, int] = 0,
        ceil_mode: bool = False,
        *,
        output_size: int | tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        if (kernel_size is None) == (output_size is None):
            raise ValueError("give either kernel_size (fixed windows) or output_size (adaptive windows)")
        self.output_size = None if output_size is None else _pair(output_size)
        self.kernel_size = None if kernel_size is None else _pair(kernel_size)
        self.stride = _pair(stride) if stride is not None else self.kernel_size
        self.padding = _pair(padding)
        self.ceil_mode = ceil_mode
        self.register_buffer("unit", torch.tensor(1.0))
        self.cumulative_input: Tensor | None = None
        self.cumulative_output: Tensor | None = None

    def extra_repr(self) -> str:
        if self.output_size is not None:
            return f"output_size={self.output_size}"
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding}, ceil_mode={self.ceil_mode}"
        )

    def reset(self) -> None:
        """Forget the cumulative input and output."""
        self.cumulative_input = None
        self.cumulative_output = None

    @property
    def windows(self) -> Windows:
        """The windows as ``burstsnn.graph_ops.window_max`` takes them."""
        if self.output_size is not None:
            return (self.output_size,)
        return (self.kernel_size, self.stride, self.padding, self.ceil_mode)

    def max_pool(self, x: Tensor) -> Tensor:
        """x: ``[N, C, H, W]`` -> the max over each of this pool's windows, ``[N, C, H', W']``."""
        return window_max(x, self.windows)

    def window_index(self, size: int, out: int, dim: int) -> Tensor:
        """Input indices ``[out, k]`` of each output's window along spatial dim ``dim``
        (0: H, 1: W) of an input of ``size``; ``size`` itself marks a slot outside the
        window (padding, or a shorter adaptive window)."""
        o = torch.arange(out)
        if self.output_size is not None:
            start, end = o * size // out, -(-(o + 1) * size // out)
        else:
            start = o * self.stride[dim] - self.padding[dim]
            end = start + self.kernel_size[dim]
        index = start.unsqueeze(1) + torch.arange(int((end - start).max()))
        inside = (index >= 0) & (index < end.unsqueeze(1)) & (index < size)
        return torch.where(inside, index, size)


class LIPool(SpikingPool):
    """Lateral-inhibition pooling: cumulative output = max-pool of cumulative input.

    out(t) = maxpool(C(t)) − maxpool(C(t−1)), the closed form of Eq. 12, for any
    kernel/stride/padding/ceil_mode that ``nn.MaxPool2d`` accepts, or adaptive windows.
    forward(x: [T, B, C, H, W]) -> [T, B, C, H', W'].

    A ``BurstNeuron`` whose output goes to this pool alone may run the pool's steps itself
    (see its ``feeds``): it adds its output to C(t) in its own step and writes the pool's
    output (``start``, ``outputs``, ``emit``), then calls ``accept``; the next forward
    passes its input, that output, on.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self._ran = False  # whether the neuron before ran this pool's steps of the next forward

    def reset(self) -> None:
        super().reset()
        self._ran = False

    def start(self, like: Tensor) -> None:
        """Zero state for inputs like ``like`` ``[B, C, H, W]``, unless a run is under way."""
        if self.cumulative_input is None:
            self.cumulative_input = torch.zeros_like(like)
            self.cumulative_output = self.max_pool(self.cumulative_input)  # zeros [B, C, H', W']

    def outputs(self, steps: int) -> Tensor:
        """An empty output ``[steps, B, C, H', W']``, laid out for the next layer."""
        return _steps_like(self.cumulative_output, steps)

    def emit(self, out: Tensor) -> None:
        """Write one step's output ``[B, C, H', W']`` once its input is in ``cumulative_input``."""
        fused_lipool_output(self.cumulative_input, self.cumulative_output, out, self.windows)

    def accept(self) -> None:
        """The neuron feeding this pool has run its steps: the next forward gets their output."""
        self._ran = True

    def forward(self, x: Tensor) -> Tensor:
        if self._ran:
            self._ran = False
            return x
        self.start(x[0])
        out = self.outputs(x.shape[0])
        for t in range(x.shape[0]):  # step by step, as in any chunking
            self.cumulative_input.add_(x[t])
            self.emit(out[t])
        return out


class SpikeMaxPool(SpikingPool):
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
        if self.output_size is None:
            (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
            if (kh, kw) == (sh, sw) and ph == pw == 0 and c.shape[-2] % kh == c.shape[-1] % kw == 0:
                return self._select_tiled(c, x)
        return self._select_windows(c, x)

    def _select_tiled(self, c: Tensor, x: Tensor) -> Tensor:
        """`_select` for windows that tile the input (stride = kernel, no padding): ~3× faster."""
        best_c = self.max_pool(c)
        best_c = best_c.repeat_interleave(self.kernel_size[0], -2)
        best_c = best_c.repeat_interleave(self.kernel_size[1], -1)
        return self.max_pool(torch.where(c == best_c, x, float("-inf")))

    def _select_windows(self, c: Tensor, x: Tensor) -> Tensor:
        """`_select` for any windows (kernel, stride, padding, ceil_mode, or adaptive)."""
        (h, w), (out_h, out_w) = c.shape[-2:], self.max_pool(c).shape[-2:]
        rows, cols = self.window_index(h, out_h, 0).to(c.device), self.window_index(w, out_w, 1).to(c.device)
        # One extra row and column (index h, w) for the slots outside a window.
        c, x = F.pad(c, (0, 1, 0, 1), value=float("-inf")), F.pad(x, (0, 1, 0, 1), value=0.0)

        def gather(t: Tensor) -> Tensor:  # [N, C, H+1, W+1] -> [N, C, H', W', kh·kw]
            t = t[:, :, rows][..., cols]  # [N, C, H', kh, W', kw]
            return t.permute(0, 1, 2, 4, 3, 5).flatten(-2)

        c_win, x_win = gather(c), gather(x)
        best_c = c_win.amax(-1, keepdim=True)
        return torch.where(c_win == best_c, x_win, float("-inf")).amax(-1)
