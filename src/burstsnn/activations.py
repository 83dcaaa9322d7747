"""The ANN activations that conversion turns into burst neurons: ReLU, and QCFS.

QCFS (quantisation-clip-floor-shift, Bu et al., ICLR 2022) clips at a trainable λ and rounds
to L levels: y = θ·clamp(⌊x/θ + ½⌋, 0, L), θ = λ/L. That is exactly the first step of a burst
neuron with Γ = L, threshold θ and V(0) = θ/2, so a network trained with it converts with no
loss at t = 1 (docs/conversion.md, "One step"). It sits at the bottom of the package because
both the ANN station (which trains it) and the conversion (which reads its λ) use it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

class QCFS(nn.Module):
    """y = θ·clamp(⌊(θ/2 + x)/θ⌋, 0, L) with θ = λ/L; x, y: ``[B, C, ...]``.

    ``clip`` is trainable: one value, or one per channel (``shape=(C, 1, 1)``); λ = |clip|
    (``lam``), so a training step can never turn the quantiser into a negative one that no
    neuron can fire (ResNet20's ``stages.7.relu`` clip crossed zero when λ was the raw clip).
    The floor passes its gradient straight through, as in QCFS. The rounding is written as the
    burst neuron's first step computes it, V = θ/2 + x, then ⌊V/θ⌋, so the two agree bit for bit.
    """

    def __init__(self, levels: int, shape: tuple[int, ...] = (), clip: float = 4.0) -> None:
        super().__init__()
        self.levels = levels
        self.clip = nn.Parameter(torch.full(shape, float(clip)))

    def extra_repr(self) -> str:
        return f"levels={self.levels}, clip shape={tuple(self.clip.shape)}"

    @property
    def lam(self) -> Tensor:
        """The clip λ in use: |clip| (0-d, or ``[C, 1, 1]`` / ``[C]`` per channel)."""
        return self.clip.abs()

    def forward(self, x: Tensor) -> Tensor:
        theta = self.lam / self.levels
        z = (0.5 * theta + x) / theta
        return torch.clamp(z + (torch.floor(z) - z).detach(), 0, self.levels) * theta


Activation = Callable[[int, bool], nn.Module]  # (channels, spatial) -> module


def activation(name: str, levels: int = 8, per_channel: bool = False) -> Activation:
    """(channels, spatial) -> the activation module a network puts after a layer of that many
    channels (spatial: a conv's ``[B, C, H, W]`` output, else a linear's ``[B, C]``):
    ``nn.ReLU()``, or ``QCFS(levels)`` with one λ, or one per channel."""
    if name == "qcfs":
        def qcfs(channels: int, spatial: bool) -> nn.Module:
            shape = ((channels, 1, 1) if spatial else (channels,)) if per_channel else ()
            return QCFS(levels, shape)

        return qcfs
    return lambda channels, spatial: nn.ReLU()
