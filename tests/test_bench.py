"""python -m burstsnn.bench end to end on a tiny configuration (no timing assertions)."""

import os
import subprocess
import sys

import pytest
import torch

from burstsnn import bench

TINY = ["--width", "0.0625", "--T", "4", "--batch", "8", "--repeats", "1"]
COLUMNS = ("model", "width", "batch", "device", "engine", "chunk", "time (s)", "ANN ×T (s)",
           "ratio", "img·steps/s", "peak mem (MiB)")
ENGINES = ("ANN ×4 (BN folded)", "step-by-step", "time-batched", "chunked (4)", "auto")


def test_bench_prints_one_table_with_every_engine(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    threads = torch.get_num_threads()
    try:
        rows = bench.main([*TINY, "--model", "vgg16", "resnet20", "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert out.count("Simulation engine vs T ANN forwards") == 1
    for name in (*COLUMNS, *ENGINES, "vgg16", "resnet20"):
        assert name in out, name
    ours = [r for r in rows if not r.engine.startswith("SpikingJelly")]
    assert [r.engine for r in ours] == [*ENGINES] * 2
    assert {r.chunk for r in ours if r.engine == "auto"} == {"1"}  # CPU: step by step
    for r in rows:
        assert r.seconds > 0 and r.ann_seconds > 0 and r.throughput > 0
    if any(r.engine.startswith("SpikingJelly") for r in rows):
        assert "ours (auto) / SpikingJelly" in out
    else:
        assert "SpikingJelly: skipped" in out


def test_peak_bytes_sees_an_allocation_of_known_size():
    mib = 2**20
    peak = bench.peak_bytes(lambda: torch.ones(64 * mib // 4).sum(), torch.device("cpu"))  # 64 MiB of float32
    assert peak is not None and 0.9 * 64 * mib <= peak < 1.5 * 64 * mib, peak / mib  # RSS: pages may be reused


def test_bench_module_runs():
    result = subprocess.run(
        [sys.executable, "-m", "burstsnn.bench", *TINY, "--width", "0.03125"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "COLUMNS": "250"},
    )
    assert result.returncode == 0, result.stderr
    assert "step-by-step" in result.stdout and "ratio" in result.stdout


@pytest.mark.parametrize("argv", [["--T", "0"], ["--batch", "-1"], ["--model", "lenet"]])
def test_bench_rejects_bad_arguments(argv):
    with pytest.raises(SystemExit):
        bench.parse_args(argv)
