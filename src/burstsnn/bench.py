"""Benchmark of the simulation engine against its dense limit: T forwards of the ANN.

    python -m burstsnn.bench [--model vgg16 resnet20] [--width 0.25] [--T 32]
                             [--batch 256] [--device cpu|cuda] [--repeats 5] [--threads N]

A converted SNN with direct input costs at least T forwards of the ANN; the ratio
``SNN time / T ANN forwards`` is the engine's overhead.  For each model: an ANN with
random weights and BN with non-trivial running statistics (Fashion-MNIST shape,
1×32×32, 10 classes), converted by ``burstsnn.conversion.convert`` on a random
calibration batch (p=99.9, Γ=5, theta_scale=1/5, LIPool).  The baseline is the
fastest form of the same ANN: BN folded into the convolutions, channels-last,
``torch.inference_mode``.  All engines run on one input batch in one process, each
warmed up once, then timed in turns (ANN, each engine, ANN, ...) ``repeats`` times, so
that a slow spell of the machine hits all of them alike; a time is the median of its
repeats and a ratio the median of the per-turn ratios.  CUDA timings are synchronised.
Like a job, the bench first calls ``burstsnn.heap.keep_freed_memory`` (glibc's malloc keeps
what a step frees), so the ANN and every engine are timed with the same allocator settings.

Peak memory: on CUDA, ``torch.cuda.max_memory_allocated`` above the memory allocated
before the run (reset between modes); on CPU (Linux), the growth of the process's
resident set during one run: free heap returned to the OS (``malloc_trim``), the
peak reset (``/proc/self/clear_refs``), then peak RSS (VmHWM) minus RSS before.

With ``spikingjelly`` installed (the ``bench`` extra) the same ANN is also converted
by its ann2snn (rate coding, 99.9 %) and timed at the same T in both of its step
modes; the summary line compares our automatic mode with its faster one.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import ctypes
import ctypes.util
import io
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from torch import Tensor, nn

from burstsnn.ann.models import build_model
from burstsnn.conversion import convert, fold_bn
from burstsnn.heap import keep_freed_memory
from burstsnn.snn.network import SpikingNetwork

IN_CHANNELS, IMAGE_SIZE, CLASSES = 1, 32, 10  # Fashion-MNIST as the experiments load it
GAMMA, PERCENTILE = 5, 99.9
TABLE_WIDTH = 150  # characters the table needs without wrapping its cells


@dataclass
class Row:
    """One timed engine: ``seconds`` (median) for T steps of one batch, ``ann_seconds``
    (median) for T ANN forwards of the same batch, ``ratio`` the median of the per-turn
    ratios of the two; ``peak_bytes`` None where it cannot be measured."""

    model: str
    width: float
    T: int
    batch: int
    device: str
    engine: str
    chunk: str
    seconds: float
    ann_seconds: float
    ratio: float
    peak_bytes: int | None

    @property
    def throughput(self) -> float:
        """images·steps per second."""
        return self.batch * self.T / self.seconds


def build_ann(model: str, width: float, device: torch.device, seed: int = 0) -> nn.Module:
    """The named ANN with random weights and BN running statistics from a few
    train-mode forwards on random data; eval mode, on ``device``."""
    torch.manual_seed(seed)
    ann = build_model(model, CLASSES, IN_CHANNELS, width, IMAGE_SIZE).to(device)
    for m in ann.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.2, 0.3)
    ann.train()
    with torch.no_grad():
        for _ in range(3):
            ann(torch.randn(32, IN_CHANNELS, IMAGE_SIZE, IMAGE_SIZE, device=device))
    return ann.eval()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_in_turns(runs: Sequence[Callable[[], object]], repeats: int, device: torch.device) -> list[list[float]]:
    """Wall times ``[run][repeat]``: each run called once to warm up, then all of them in
    turns, ``repeats`` times, each turn starting one run later (so that no run always follows
    the same one: a run after one that freed much memory pays for it)."""
    for run in runs:
        run()
    times: list[list[float]] = [[] for _ in runs]
    for turn in range(repeats):
        for i in range(len(runs)):
            k = (i + turn) % len(runs)
            synchronize(device)
            start = time.perf_counter()
            runs[k]()
            synchronize(device)
            times[k].append(time.perf_counter() - start)
    return times


def _proc_status(key: str) -> int:
    """A ``/proc/self/status`` memory field (e.g. VmRSS) in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def peak_bytes(run: Callable[[], object], device: torch.device) -> int | None:
    """Peak memory that one ``run()`` adds (see the module docstring); None if the
    platform offers no way to measure it."""
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        run()
        synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    libc = ctypes.util.find_library("c")
    try:
        if libc is not None:
            ctypes.CDLL(libc).malloc_trim(0)
        before = _proc_status("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current RSS
    except (OSError, AttributeError, KeyError):
        return None
    run()
    return max(0, _proc_status("VmHWM") - before)


def spikingjelly_engines(
    ann: nn.Module, calib: Tensor, T: int
) -> dict[str, Callable[[Tensor], Tensor]] | None:
    """SpikingJelly's ann2snn conversion of ``ann`` (channels-last, like ours) as
    {"single-step": x -> [T, B, K], "multi-step": ...}; None without spikingjelly."""
    try:
        from loguru import logger
        from spikingjelly.activation_based import ann2snn, functional
    except ImportError:
        return None
    logger.disable("spikingjelly")
    recipe = ann2snn.RateCodingRecipe(dataloader=[(calib, None)], mode=f"{PERCENTILE}%")
    with contextlib.redirect_stderr(io.StringIO()):  # its calibration progress bar
        net = ann2snn.Converter(recipe).convert(copy.deepcopy(ann))
    net = net.to(memory_format=torch.channels_last)

    def single(x: Tensor) -> Tensor:
        functional.set_step_mode(net, "s")
        functional.reset_net(net)
        with torch.inference_mode():
            return torch.stack([net(x) for _ in range(T)])

    def multi(x: Tensor) -> Tensor:
        functional.set_step_mode(net, "m")
        functional.reset_net(net)
        with torch.inference_mode():
            return net(x.unsqueeze(0).expand(T, *x.shape).contiguous())

    return {"single-step": single, "multi-step": multi}


def engine_modes(T: int, chunk: int) -> dict[str, int | None]:
    """Engine name -> ``chunk`` argument of ``SpikingNetwork.forward``."""
    return {
        "step-by-step": 1,
        "time-batched": T,
        f"chunked ({min(chunk, T)})": min(chunk, T),
        "auto": None,
    }


def bench_model(
    model: str, width: float, T: int, batch: int, device: torch.device, repeats: int, chunk: int
) -> tuple[list[Row], bool]:
    """Time the ANN baseline, each engine mode and (if installed) SpikingJelly on one
    model.  Returns the rows and whether SpikingJelly was timed."""
    ann = build_ann(model, width, device)
    calib = torch.randn(batch, IN_CHANNELS, IMAGE_SIZE, IMAGE_SIZE, device=device)
    snn: SpikingNetwork = convert(ann, [(calib, None)], p=PERCENTILE, gamma=GAMMA, theta_scale=1 / GAMMA)
    x = torch.randn(batch, IN_CHANNELS, IMAGE_SIZE, IMAGE_SIZE, device=device)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    dense = fold_bn(ann).to(memory_format=torch.channels_last)

    def ann_T() -> None:
        with torch.inference_mode():
            for _ in range(T):
                dense(x_cl)

    engines: dict[str, Callable[[], object]] = {f"ANN ×{T} (BN folded)": ann_T}
    modes = engine_modes(T, chunk)
    for engine, c in modes.items():
        engines[engine] = lambda c=c: snn(x, T, chunk=c)
    sj = spikingjelly_engines(ann, calib, T)
    for engine, run in (sj or {}).items():
        engines[f"SpikingJelly {engine}"] = lambda run=run: run(x_cl)

    times = seconds_in_turns(list(engines.values()), repeats, device)
    ann_times = times[0]
    rows = []
    for (engine, run), run_times in zip(engines.items(), times):
        peak = peak_bytes(run, device)
        label = str(snn.last_chunk) if engine in modes else "-"  # of the run just made
        ratio = statistics.median(t / a for t, a in zip(run_times, ann_times))
        rows.append(Row(model, width, T, batch, device.type, engine, label, statistics.median(run_times),
                        statistics.median(ann_times), ratio, peak))
    return rows, sj is not None


def table(rows: Sequence[Row], threads: int) -> Table:
    """The rows as one rich table."""
    t = Table(title=f"Simulation engine vs T ANN forwards ({threads} CPU threads)")
    for name in ("model", "width", "T", "batch", "device", "engine", "chunk", "time (s)",
                 "ANN ×T (s)", "ratio", "img·steps/s", "peak mem (MiB)"):
        t.add_column(name, justify="left" if name in ("model", "device", "engine") else "right")
    for r in rows:
        peak = "n/a" if r.peak_bytes is None else f"{r.peak_bytes / 2**20:.0f}"
        t.add_row(r.model, f"{r.width:g}", str(r.T), str(r.batch), r.device, r.engine, r.chunk,
                  f"{r.seconds:.3f}", f"{r.ann_seconds:.3f}", f"{r.ratio:.2f}",
                  f"{r.throughput:,.0f}", peak)
    return t


def spikingjelly_summary(rows: Sequence[Row]) -> list[str]:
    """Per model: our automatic mode's time / SpikingJelly's faster mode's time."""
    lines = []
    for model in dict.fromkeys(r.model for r in rows):
        ours = next(r for r in rows if r.model == model and r.engine == "auto")
        theirs = [r for r in rows if r.model == model and r.engine.startswith("SpikingJelly")]
        best = min(theirs, key=lambda r: r.seconds)
        lines.append(
            f"{model}: ours (auto) / SpikingJelly ({best.engine.split(' ', 1)[1]}) = "
            f"{ours.seconds / best.seconds:.2f} ({best.seconds / ours.seconds:.2f}× faster)"
        )
    return lines


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m burstsnn.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--model", nargs="+", default=["vgg16"], choices=["vgg16", "resnet20"])
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--T", type=int, default=32)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--chunk", type=int, default=8, help="chunk of the 'chunked' mode")
    parser.add_argument("--job", action="store_true",
                        help="also time the rest of a job: training step vs bare step, lowlatency calibration "
                             "vs its simulation (burstsnn.bench_job; needs the data set of conf/)")
    parser.add_argument("--steps", type=int, default=30, help="--job: training steps timed per pipeline")
    parser.add_argument("--images", type=int, default=2000, help="--job: test images the simulation runs")
    args = parser.parse_args(argv)
    for name in ("T", "batch", "repeats", "chunk", "steps", "images"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device available")
    return args


def main(argv: Sequence[str] | None = None) -> list[Row]:
    """Run the benchmark, print its table; returns the rows."""
    args = parse_args(argv)
    keep_freed_memory()  # as in a job (burstsnn.heap): the ANN and the engines alike
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows, timed_sj = [], True
    for model in args.model:
        model_rows, sj = bench_model(model, args.width, args.T, args.batch, device, args.repeats, args.chunk)
        rows += model_rows
        timed_sj = timed_sj and sj
    console = Console(width=max(Console().width, TABLE_WIDTH))  # whole rows, in any terminal
    console.print(table(rows, torch.get_num_threads()))
    if timed_sj:
        for line in spikingjelly_summary(rows):
            console.print(line)
    else:
        console.print("SpikingJelly: skipped (not installed; `pip install -e .[bench]` adds it)", markup=False)
    if args.job:
        from burstsnn import bench_job

        for model in args.model:
            overrides = [f"model={model}", f"model.width={args.width}"]
            job_rows = bench_job.training_rows(overrides, args.steps)
            job_rows += bench_job.calibration_rows(overrides, args.images, args.repeats)
            console.print(bench_job.table(job_rows, f"The rest of a job: {model} w{args.width:g} "
                                                    f"({torch.get_num_threads()} CPU threads)"))
    return rows


if __name__ == "__main__":
    main()
