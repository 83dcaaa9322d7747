"""Experiment tracking: results.json, CSV and W&B offline runs of single jobs and sweeps."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from burstsnn.experiment.job import JobContext, run_job
from conftest import REPO, tiny_overrides


def check_results(results: dict, T: int) -> None:
    snn = results["snn"]
    assert len(snn["acc_over_t"]) == T and snn["T"] == T
    assert snn["acc_at_T"] == snn["acc_over_t"][-1]
    assert snn["best_acc"] == max(snn["acc_over_t"])
    assert snn["acc_over_t"][snn["best_t"] - 1] == snn["best_acc"]
    assert snn["conversion_loss"] == pytest.approx(results["ann"]["test_acc"] - snn["acc_at_T"])
    assert len(snn["firing_rates"]) == 13  # VGG16: one spiking layer per conv
    layers = list(snn["firing_rates"])  # graph order (features.2, .5, .9, …), not sorted text
    assert layers == sorted(layers, key=lambda name: int(name.split(".")[1])) != sorted(layers)
    assert len(snn["pooling_correct_ratio"]) == 5
    assert snn["energy"]["ann_macs"] > 0 and snn["energy"]["energy_ratio"] > 0
    # Energy had the run stopped at t: grows with t, and at T it is the job's energy ratio.
    energy = snn["energy_over_t"]
    assert len(energy) == T and all(a < b for a, b in zip(energy, energy[1:]))
    assert energy[-1] == pytest.approx(snn["energy"]["energy_ratio"], rel=1e-12)
    t1 = snn["t_within_1pt"]
    ann = results["ann"]["test_acc"]
    assert t1 is None or (snn["acc_over_t"][t1 - 1] >= ann - 0.01 - 1e-12
                          and all(a < ann - 0.01 for a in snn["acc_over_t"][: t1 - 1]))
    assert set(results["timings"]) >= {"ann_s", "calibration_s", "simulation_s", "logging_s"}


def test_results_json_and_csv_logger(job_config, tmp_path: Path) -> None:
    results = run_job(job_config("logger=csv", "T=6"), JobContext(tmp_path / "job"))
    written = json.loads((tmp_path / "job" / "results.json").read_text())
    assert written == json.loads(json.dumps(results))
    check_results(written, 6)
    assert written["config"]["theta_scale"] == "1/gamma"
    assert written["snn"]["theta_scale"] == pytest.approx(1 / 5)
    with open(tmp_path / "job" / "csv" / "metrics.csv") as handle:
        rows = list(csv.DictReader(handle))
    curve = {int(float(r["snn/t"])): float(r["snn/acc"]) for r in rows if r.get("snn/acc")}
    assert curve == {t: pytest.approx(a) for t, a in enumerate(written["snn"]["acc_over_t"], 1)}
    energy = {int(float(r["snn/t"])): float(r["snn/energy_ratio"]) for r in rows if r.get("snn/energy_ratio")}
    assert energy == {t: pytest.approx(e) for t, e in enumerate(written["snn"]["energy_over_t"], 1)}
    [summary] = [r for r in rows if r.get("ann/test_acc")]
    assert float(summary["ann/test_acc"]) == pytest.approx(written["ann"]["test_acc"])
    # Every layer's firing rate and pooling ratio, logged under its own name as results.json has it.
    assert {k: float(summary[f"firing_rate/{k}"]) for k in written["snn"]["firing_rates"]} == pytest.approx(
        written["snn"]["firing_rates"])
    assert {k: float(summary[f"pooling_ratio/{k}"]) for k in written["snn"]["pooling_correct_ratio"]} == pytest.approx(
        written["snn"]["pooling_correct_ratio"])


def wandb_records(run_dir: Path) -> list[dict]:
    """The records of an offline W&B run, read by W&B's own CLI."""
    out = subprocess.run(
        [str(Path(sys.executable).parent / "wandb"), "leet", "inspect", "--json", str(run_dir)],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


@pytest.mark.slow
def test_sweep_writes_one_result_and_one_offline_wandb_run_per_job(
    tiny_idx_root: Path, tmp_path: Path
) -> None:
    """`python run.py -m gamma=1,2 T=4,6` with W&B offline: 4 jobs, one ANN, one W&B group."""
    overrides = [o for o in tiny_overrides(tiny_idx_root, tmp_path / "cache")
                 if not o.startswith(("logger=", "T="))]
    env = {**os.environ, "WANDB_MODE": "offline"}
    done = subprocess.run(
        [sys.executable, "run.py", "-m", "gamma=1,2", "T=4,6", *overrides, "logger=wandb",
         f"hydra.sweep.dir={tmp_path}/sweep"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    jobs = sorted((tmp_path / "sweep").glob("*/results.json"))
    assert len(jobs) == 4
    results = [json.loads(p.read_text()) for p in jobs]
    assert [r["ann"]["trained"] for r in results] == [True, False, False, False]
    assert len({r["ann"]["key"] for r in results}) == 1
    for r in results:
        check_results(r, r["config"]["T"])
    groups = set()
    for job in jobs:
        runs = list((job.parent / "wandb").glob("offline-run-*"))
        assert len(runs) == 1
        records = wandb_records(runs[0])
        run = next(r["run"] for r in records if r["type"] == "run")
        groups.add(run["run_group"])
        assert "gamma=" in run["display_name"] and "T=" in run["display_name"]
        history = [r for r in records if r["type"] == "history"]
        assert len(history) >= json.loads(job.read_text())["config"]["T"]
    assert len(groups) == 1 and groups != {""}
