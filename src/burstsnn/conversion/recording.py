"""One pass of the ANN over the calibration batches: what every λ rule and the bias
correction read, recorded once and kept for the next conversion of the same ANN.

A frontier search converts one ANN again and again with other knobs (p, Γ, θ, V(0), rules):
the recording does not depend on any of them, so trials after the first reuse it.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

# Recordings larger than this (bytes of outputs) are not kept after the conversion (what the λ
# rules keep with a kept one, its rows sorted per layout, can add up to twice as much).
MEMO_BYTES = 2 << 30


@dataclass(frozen=True)
class Recording:
    """The ANN's calibration pass. ``inputs``: the calibration images ``[N, ...]`` (CPU);
    ``outputs``: layer -> its outputs ``[N, C, ...]`` (float32, CPU); ``input_means``:
    layer -> the mean of its input per channel ``[C]`` (float64, over all but dim 1);
    ``derived``: what readers computed from it (the λ rules' rows and samples), kept with it
    for the next conversion."""

    inputs: Tensor
    outputs: dict[str, Tensor]
    input_means: dict[str, Tensor]
    derived: dict[tuple, object] = field(default_factory=dict, compare=False, repr=False)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.outputs.values())


_last: tuple[str, Recording] | None = None


def forget() -> None:
    """Drop the kept recording: the next conversion records again."""
    global _last
    _last = None


def channel_rows(x: Tensor) -> Tensor:
    """``[N, C, ...]`` -> ``[C, N·...]``: one row per channel."""
    return x.transpose(0, 1).reshape(x.shape[1], -1)


def batch_inputs(batch: object) -> Tensor:
    """The inputs of a calibration batch: ``(inputs, targets)`` or bare inputs."""
    return batch[0] if isinstance(batch, (tuple, list)) else batch


class _Hook:
    """Forward hook: keeps a module's outputs (float32, CPU) and sums its input per channel."""

    def __init__(self) -> None:
        self.outputs: list[Tensor] = []
        self.total: Tensor | None = None
        self.count = 0

    def __call__(self, module: nn.Module, args: tuple, output: Tensor) -> None:
        self.outputs.append(output.detach().to("cpu", torch.float32))
        rows = channel_rows(args[0].detach().to(torch.float64))
        self.total = rows.sum(1) if self.total is None else self.total + rows.sum(1)
        self.count += rows.shape[1]


def tensor_bytes(tensor: Tensor) -> memoryview:
    """The bytes of ``tensor``'s values (copied to CPU, contiguous), flat: what a digest reads."""
    return memoryview(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())


def _digest(model: nn.Module, layers: Sequence[str], inputs: Sequence[Tensor]) -> str:
    """What a recording depends on: the model's weights and buffers, the layers, the inputs."""
    h = hashlib.sha256(repr(list(layers)).encode())
    for name, tensor in itertools.chain(model.state_dict().items(), enumerate(inputs)):
        h.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        h.update(tensor_bytes(tensor))
    return h.hexdigest()


@torch.no_grad()
def record(model: nn.Module, calib_loader: Iterable, layers: Sequence[str], calib_batches: int = 1) -> Recording:
    """Run the first ``calib_batches`` batches of ``calib_loader`` (``(inputs, targets)`` or bare
    inputs) through ``model`` in eval mode, recording each named module's outputs and input
    means. The same weights, layers and images as the last call return the last recording
    (unless it is over ``MEMO_BYTES``). ValueError if the loader yields no batches."""
    global _last
    inputs = [batch_inputs(batch) for batch in itertools.islice(calib_loader, calib_batches)]
    if not inputs:
        raise ValueError("calib_loader yielded no batches")
    key = _digest(model, layers, inputs)
    if _last is not None and _last[0] == key:
        return _last[1]
    _last = None  # free the old one before recording
    device = next(itertools.chain(model.parameters(), model.buffers()), torch.empty(0)).device
    modules = dict(model.named_modules())
    hooks = {name: _Hook() for name in layers}
    handles = [modules[name].register_forward_hook(hook) for name, hook in hooks.items()]
    model.eval()
    try:
        for x in inputs:
            model(x.to(device))
    finally:
        for handle in handles:
            handle.remove()
    recording = Recording(
        torch.cat([x.cpu() for x in inputs]),
        {name: torch.cat(hook.outputs) for name, hook in hooks.items()},
        {name: hook.total / hook.count for name, hook in hooks.items()},
    )
    if recording.nbytes <= MEMO_BYTES:
        _last = (key, recording)
    return recording
