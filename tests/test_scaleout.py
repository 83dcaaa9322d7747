"""Scale-out: DDP in 2 CPU processes, parallel and submitit sweeps, the trainer configs.

The end-to-end tests run `python run.py` as a user does, on tiny data and a tiny net.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from burstsnn.errors import ConfigError
from burstsnn.experiment.job import JobContext, run_job
from conftest import CONF, REPO, tiny_overrides

# No compiling in the fresh processes (same results, eager), one thread per process.
ENV = {**os.environ, "WANDB_MODE": "disabled", "BURSTSNN_COMPILE": "0", "OMP_NUM_THREADS": "1"}
# 61 test images in batches of 16: DDP shards of 31 and 30 images, uneven last batches.
TEST_OVERRIDES = ["data.limit_test_samples=61", "data.eval_batch_size=16"]


def run_py(*args: str, env: dict[str, str] = ENV) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "run.py", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done


def sweep_results(sweep_dir: Path) -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted(sweep_dir.glob("*/results.json"))]


def trainer_config(name: str) -> dict:
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return OmegaConf.to_container(compose(config_name="config", overrides=[f"trainer={name}"]).trainer)


@pytest.mark.parametrize(
    ("gpu", "cpu", "differing"),
    [("gpu", "cpu", {"accelerator", "deterministic"}),
     ("ddp", "ddp_cpu", {"accelerator", "deterministic", "devices"}),
     ("ddp_cpu", "cpu", {"devices", "strategy"})],
)
def test_trainer_configs_differ_only_in_what_must(gpu: str, cpu: str, differing: set[str]) -> None:
    a, b = trainer_config(gpu), trainer_config(cpu)
    assert a.keys() == b.keys()
    assert {key for key in a if a[key] != b[key]} == differing


def test_ddp_inside_a_local_sweep_is_refused_before_any_work(job_config, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="local sweep.*tasks_per_node"):
        run_job(job_config("trainer=ddp_cpu"), JobContext(tmp_path / "job", group="sweep"))
    assert not (tmp_path / "cache").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_job_reuses_the_cpu_trained_ann(job_config, tmp_path: Path) -> None:
    """trainer=gpu is hardware only: same cache key; the SNN on the GPU within 2 images of the CPU's."""
    cpu = run_job(job_config(), JobContext(tmp_path / "cpu"))
    gpu = run_job(job_config("trainer=gpu"), JobContext(tmp_path / "gpu"))
    assert cpu["ann"]["trained"] is True and gpu["ann"]["trained"] is False
    assert len(gpu["snn"]["acc_over_t"]) == len(cpu["snn"]["acc_over_t"])
    assert abs(gpu["snn"]["acc_at_T"] - cpu["snn"]["acc_at_T"]) <= 2 / 64 + 1e-9


@pytest.mark.slow
def test_ddp_cpu_run_from_an_empty_cache_matches_one_process(tiny_idx_root: Path, tmp_path: Path) -> None:
    """trainer=ddp_cpu (2 processes, gloo) from an empty cache: no deadlock, the ANN trained
    once, one results.json and one W&B run; its metrics equal one process on that ANN."""
    common = [*tiny_overrides(tiny_idx_root, tmp_path / "cache"), *TEST_OVERRIDES]
    # A run dir stamped to the microsecond, like the default one: rank 1 starts later, yet
    # must write into rank 0's dir.
    run_py(*common, "trainer=ddp_cpu", "logger=wandb", f"hydra.run.dir={tmp_path}/ddp/${{now:%H-%M-%S-%f}}",
           env={**ENV, "WANDB_MODE": "offline"})
    single_dir = tmp_path / "single"
    run_py(*common, f"hydra.run.dir={single_dir}")

    ddp_dir, = (tmp_path / "ddp").iterdir()
    assert (ddp_dir / "train_ddp_process_1.log").exists()  # rank 1's Hydra log, same dir

    ddp = json.loads((ddp_dir / "results.json").read_text())
    single = json.loads((single_dir / "results.json").read_text())
    assert ddp["ann"]["trained"] is True and single["ann"]["trained"] is False
    assert len(list((tmp_path / "cache").glob("*/meta.json"))) == 1
    assert len(list((ddp_dir / "wandb").glob("offline-run-*"))) == 1  # rank 0 only
    assert ddp["ann"]["test_acc"] == single["ann"]["test_acc"]
    assert ddp["snn"] == single["snn"]  # acc@t, firing rates, pooling ratios, energy: exact


@pytest.mark.slow
def test_parallel_joblib_jobs_on_an_empty_cache_train_once(tiny_idx_root: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    run_py("-m", *tiny_overrides(tiny_idx_root, tmp_path / "cache"), "hydra/launcher=local",
           "trainer.num_threads=1", "gamma=1,2", f"hydra.sweep.dir={sweep}")
    results = sweep_results(sweep)
    assert len(results) == 2 and len({r["ann"]["key"] for r in results}) == 1
    assert sorted(r["ann"]["trained"] for r in results) == [False, True]


@pytest.mark.slow
def test_submitit_local_sweep(tiny_idx_root: Path, tmp_path: Path) -> None:
    """submitit's local executor, the code Slurm jobs run through (hydra/launcher=slurm)."""
    sweep = tmp_path / "sweep"
    run_py("-m", *tiny_overrides(tiny_idx_root, tmp_path / "cache"), "hydra/launcher=submitit_local",
           "T=4,6", f"hydra.sweep.dir={sweep}")
    results = sweep_results(sweep)
    assert [len(r["snn"]["acc_over_t"]) for r in results] == [4, 6]
    assert sorted(r["ann"]["trained"] for r in results) == [False, True]
    assert list((sweep / ".submitit").glob("*/*_result.pkl"))  # ran as submitit jobs
