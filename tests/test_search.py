"""hydra/sweeper=frontier: a multi-objective Optuna search through run.py, then its report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from burstsnn.report import build_table, load_results
from burstsnn.report.points import frontier
from conftest import REPO, tiny_overrides


@pytest.mark.slow
def test_three_trial_search_writes_results_and_a_pareto_figure(tiny_idx_root: Path, tmp_path: Path) -> None:
    overrides = [o for o in tiny_overrides(tiny_idx_root, tmp_path / "cache") if not o.startswith("T=")]
    sweep = tmp_path / "search"
    env = {**os.environ, "WANDB_MODE": "disabled"}
    done = subprocess.run(
        [sys.executable, "run.py", "-m", "hydra/sweeper=frontier", "hydra.sweeper.n_trials=3",
         "hydra.sweeper.sampler.n_startup_trials=3", "T=int(interval(1, 4))",
         *overrides, f"hydra.sweep.dir={sweep}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/results.json"))]
    assert len(results) == 3
    assert [r["ann"]["trained"] for r in results] == [True, False, False]  # one ANN for the search
    for r in results:  # each trial drew its knobs from the search space
        config = r["config"]
        assert 99.0 <= config["p"] <= 100.0 and 1 <= config["gamma"] <= 16 and 1 <= config["T"] <= 4
        assert 0.03 <= float(config["theta_scale"]) <= 1.0 and 0.0 <= config["v_init"] <= 1.0
        assert config["data"]["limit_test_samples"] == 1000
        assert config["data"]["eval_split"] == "val"  # scored on held-out images, never the test set
    # Optuna's own Pareto set: the values the jobs returned, (accuracy at T, energy ratio at T).
    optimization = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    returned = {(r["snn"]["acc_at_T"], r["snn"]["energy"]["energy_ratio"]) for r in results}
    assert optimization["solutions"] and all(tuple(s["values"]) in returned for s in optimization["solutions"])

    report = subprocess.run([sys.executable, "-m", "burstsnn.report", str(sweep)],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr[-3000:]
    assert (sweep / "frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = build_table(load_results(sweep))
    front = frontier(table, "vgg16")
    # The front is every (trial, t) point that no other point beats, found here by comparing all pairs.
    points = {(100 * a, e) for r in results for a, e in zip(r["snn"]["acc_over_t"], r["snn"]["energy_over_t"])}
    undominated = {p for p in points if not any(q != p and q[0] >= p[0] and q[1] <= p[1] for q in points)}
    assert {(p.acc, p.energy_ratio) for p in front} == undominated
    csv_lines = (sweep / "frontier.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + len(front) and "hydra/sweeper" not in csv_lines[1]
    # Each front point's re-run command simulates it on the full test set.
    assert all("eval_split" not in line and "limit_test_samples" not in line for line in csv_lines[1:])


@pytest.mark.slow
def test_search_goes_on_after_failed_trials_and_resumes_from_its_study(tiny_idx_root: Path, tmp_path: Path) -> None:
    optuna = pytest.importorskip("optuna")
    overrides = [o for o in tiny_overrides(tiny_idx_root, tmp_path / "cache") if not o.startswith("T=")]
    sweep = tmp_path / "search"
    env = {**os.environ, "WANDB_MODE": "disabled"}

    def search(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "run.py", "-m", "hydra/sweeper=frontier", "hydra.sweeper.n_trials=2",
             "hydra.sweeper.sampler.n_startup_trials=2", "T=int(interval(1, 3))",
             *overrides, f"hydra.sweep.dir={sweep}", *extra],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
        )

    # Every trial fails (no such checkpoint): each is logged and the search still ends normally.
    failed = search(f"checkpoint={tmp_path / 'missing.pt'}")
    assert failed.returncode == 0, failed.stderr[-3000:]
    assert (failed.stdout + failed.stderr).count("Failed experiment") == 2
    assert (sweep / "frontier.db").is_file() and not list(sweep.glob("**/results.json"))

    # Running into the same folders again would write over jobs 0 and 1: refused in one line.
    refused = search()
    assert refused.returncode != 0
    assert "add 'hydra.sweep.subdir=resumed-1/${hydra.job.num}'" in refused.stderr.strip().splitlines()[-1]

    resumed = search("hydra.sweep.subdir=resumed-1/${hydra.job.num}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    results = [json.loads(p.read_text()) for p in sorted((sweep / "resumed-1").glob("*/results.json"))]
    assert len(results) == 2
    study = optuna.load_study(study_name="frontier", storage=f"sqlite:///{sweep}/frontier.db")
    states = [trial.state for trial in study.trials]
    assert states == [optuna.trial.TrialState.FAIL] * 2 + [optuna.trial.TrialState.COMPLETE] * 2
    assert [tuple(t.values) for t in study.trials[2:]] == [
        (r["snn"]["acc_at_T"], r["snn"]["energy"]["energy_ratio"]) for r in results]

    report = subprocess.run([sys.executable, "-m", "burstsnn.report", str(sweep)],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr[-3000:]
    assert "2 job folder(s) without results.json (failed or unfinished), not in the report: 0, 1" in report.stdout
