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


def test_the_rest_of_a_job_is_timed_against_its_floor(tiny_idx_root, tmp_path):
    """bench --job's parts on tiny data: a training row per data.pipeline against the same bare
    step, and the lowlatency calibration (new ANN, then reused) against its T = 2 simulation."""
    from burstsnn import bench_job

    overrides = [f"data.root={tiny_idx_root}", "data.batch_size=16", "data.eval_batch_size=16", "data.val_size=16",
                 "model.width=0.0625", f"cache_dir={tmp_path}"]
    rows = bench_job.training_rows(overrides, steps=2, warmup=1)
    assert [r.what for r in rows] == ["data.pipeline=batched", "data.pipeline=per_sample"]
    assert len({r.floor_seconds for r in rows}) == 1
    rows += bench_job.calibration_rows(overrides, images=32, repeats=1)
    assert [r.part for r in rows[2:]] == ["calibration", "calibration"]
    assert rows[2].floor == rows[3].floor == "simulation, T=2, 32 images"
    for r in rows:
        assert r.seconds > 0 and r.floor_seconds > 0 and r.ratio == r.seconds / r.floor_seconds
    out = str(bench_job.table(rows, "t").columns[5]._cells)
    assert f"{rows[0].ratio:.2f}" in out


def test_each_turn_starts_one_run_later():
    calls = []
    runs = [lambda k=k: calls.append(k) for k in range(3)]
    times = bench.seconds_in_turns(runs, repeats=3, device=torch.device("cpu"))
    assert calls == [0, 1, 2, 0, 1, 2, 1, 2, 0, 2, 0, 1]  # warm-up, then turns rotated
    assert [len(t) for t in times] == [3, 3, 3]
