"""Faults provoked through the user's entry points: bad config, missing/corrupt data, a
corrupt or half-written cache, killed and parallel jobs, re-run sweeps, NaNs, secrets."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import typing
from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException
from torch import nn

from burstsnn.conversion.convert import convert
from burstsnn.errors import ConfigError, ConversionError, DatasetError
from burstsnn.experiment.cache import AnnCache
from burstsnn.experiment.config import JobConfig
from burstsnn.experiment.job import JobContext, run_job
from burstsnn.rules import RULES
from conftest import REPO, tiny_overrides
from datafiles import make_idx_dataset


def run_py(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "run.py", *args], cwd=REPO, capture_output=True, text=True,
        timeout=timeout, env={**os.environ, "WANDB_MODE": "disabled", **(env or {})},
    )


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("gamma=0", "gamma=0 is not allowed: an integer ≥ 1"),
        ("T=0", "T=0 is not allowed: an integer ≥ 1"),
        ("p=0", "p=0.0 is not allowed: a number in (0, 100]"),
        ("p=100.5", "p=100.5 is not allowed"),
        ("pooling=max", "pooling='max' is not allowed: one of lipool, spikemax, avg"),
        ("reset=zero", "reset='zero' is not allowed"),
        ("v_init=1", "v_init=1.0 is not allowed: a number in [0, 1)"),
        ("theta_scale=-1", "theta_scale=-1 is not allowed: a number > 0 or '1/gamma'"),
        ("theta_scale=1/Gamma", "theta_scale='1/Gamma' is not allowed"),
        ("model.width=0", "model.width=0.0 is not allowed: a number > 0"),
        ("calib_batches=0", "calib_batches=0 is not allowed: an integer ≥ 1"),
        ("data.batch_size=0", "data.batch_size=0 is not allowed: an integer ≥ 1"),
        ("data.eval_batch_size=-2", "data.eval_batch_size=-2 is not allowed"),
        ("+gama=2", "gama is not a known setting"),
        ("+model.depth=3", "model.depth is not a known setting"),
        ("channel_wise=2", "channel_wise=2 is not allowed: true or false"),  # OmegaConf's bool would say true
        ("trainer.devices=0", "trainer.devices=0 is not allowed: an integer ≥ 1, -1 (all)"),
        ("trainer.accelerator=tpus", "trainer.accelerator='tpus' is not allowed: one of cpu, gpu"),
        ("data.name=svhn", "data.name='svhn' is not allowed: one of fashion_mnist, mnist"),
        ("train.momentum=1.5", "train.momentum=1.5 is not allowed: a number in [0, 1)"),
        ("logger.mode=cloud", "logger.mode='cloud' is not allowed"),
    ],
)
def test_bad_config_values_are_refused_before_any_work(job_config, tmp_path: Path,
                                                        override: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        run_job(job_config(override), JobContext(tmp_path / "job"))
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "cache").exists()  # nothing trained, nothing written


@pytest.mark.parametrize(("override", "message"), [
    ("gamma=1.5", "Value '1.5' of type 'float' could not be converted to Integer"),
    ("gama=2", "Key 'gama' not in 'JobConfig'"),
    ("p=high", "Value 'high' of type 'str' could not be converted to Float"),
])
def test_wrong_types_and_unknown_keys_are_refused_by_hydra_when_composing(job_config, override: str,
                                                                         message: str) -> None:
    """The schema is first in conf/config.yaml's defaults list: Hydra itself refuses these."""
    with pytest.raises(ConfigCompositionException) as caught:
        job_config(override)
    assert message in f"{caught.value} {caught.value.__cause__}"


def test_every_setting_of_the_schema_has_a_rule_or_is_free_text() -> None:
    """One rule per knob (burstsnn.rules) for every field of every group; the rest are names,
    paths and the like, which their own code checks."""
    free = {"data.root", "data.in_channels", "data.num_classes", "model.in_channels", "model.num_classes",
            "model.image_size", "trainer.strategy", "logger.project", "logger.entity", "cache_dir",
            "data.name", "model.name", "model.arch", "model.net", "checkpoint"}

    def keys(schema: type, prefix: str = "") -> set[str]:
        out = set()
        for f in dataclasses.fields(schema):
            hint = typing.get_type_hints(schema)[f.name]
            out |= keys(hint, f"{prefix}{f.name}.") if dataclasses.is_dataclass(hint) else {prefix + f.name}
        return out

    assert keys(JobConfig) - free == set(RULES)


@pytest.mark.slow
def test_bad_value_on_the_command_line_is_one_line_without_traceback(
    tiny_idx_root: Path, tmp_path: Path
) -> None:
    done = run_py(*tiny_overrides(tiny_idx_root, tmp_path / "cache"), "gamma=0",
                  f"hydra.run.dir={tmp_path}/run")
    assert done.returncode != 0
    assert error_lines(done.stderr) == ["error: gamma=0 is not allowed: an integer ≥ 1"]
    assert "Traceback" not in done.stderr + done.stdout


@pytest.mark.slow
def test_missing_data_set_names_the_fix(tmp_path: Path) -> None:
    done = run_py(f"data.root={tmp_path}/nowhere", "logger=none", f"cache_dir={tmp_path}/c",
                  f"hydra.run.dir={tmp_path}/run")
    assert done.returncode != 0 and "Traceback" not in done.stderr
    [line] = error_lines(done.stderr)
    assert "Fashion-MNIST not found in" in line
    assert "apt-get install dataset-fashion-mnist" in line and "data.download=true" in line


@pytest.mark.slow
def test_a_bad_job_in_a_sweep_does_not_stop_the_others(tiny_idx_root: Path,
                                                        tmp_path: Path) -> None:
    done = run_py("-m", "gamma=0,2", *tiny_overrides(tiny_idx_root, tmp_path / "cache"),
                  f"hydra.sweep.dir={tmp_path}/sweep")
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "error: gamma=0 is not allowed: an integer ≥ 1" in error_lines(done.stderr)
    assert not (tmp_path / "sweep" / "0" / "results.json").exists()
    good = json.loads((tmp_path / "sweep" / "1" / "results.json").read_text())
    assert good["config"]["gamma"] == 2


@pytest.mark.parametrize(
    ("corrupt", "match"),
    [
        (lambda p: p.write_bytes(p.read_bytes()[:1000]), "truncated|corrupt|gz"),
        (lambda p: p.write_bytes(b"\x1f\x8b" + b"\0" * 40), "truncated|corrupt|gz"),
    ],
)
def test_corrupt_data_files_are_reported_clearly(job_config, tmp_path: Path, corrupt,
                                                 match: str) -> None:
    root = make_idx_dataset(tmp_path / "data", n_train=96, n_test=32)
    corrupt(root / "train-images-idx3-ubyte.gz")
    with pytest.raises(DatasetError, match=match) as caught:
        run_job(job_config(f"data.root={root}"), JobContext(tmp_path / "job"))
    assert "train-images-idx3-ubyte.gz" in str(caught.value)


def test_image_and_label_counts_must_agree(job_config, tmp_path: Path) -> None:
    root = make_idx_dataset(tmp_path / "data", n_train=96, n_test=32)
    other = make_idx_dataset(tmp_path / "other", n_train=95, n_test=32)
    (root / "train-labels-idx1-ubyte.gz").write_bytes(
        (other / "train-labels-idx1-ubyte.gz").read_bytes())
    with pytest.raises(DatasetError, match="96|95"):
        run_job(job_config(f"data.root={root}"), JobContext(tmp_path / "job"))


def test_corrupt_cached_ann_is_retrained_never_used(job_config, tmp_path: Path) -> None:
    first = run_job(job_config(), JobContext(tmp_path / "job1"))
    checkpoint = Path(first["ann"]["checkpoint"])
    checkpoint.write_bytes(checkpoint.read_bytes()[:-100])
    with pytest.warns(UserWarning, match="corrupt"):
        second = run_job(job_config(), JobContext(tmp_path / "job2"))
    assert second["ann"]["trained"] is True
    assert second["snn"]["acc_over_t"] == first["snn"]["acc_over_t"]


@pytest.mark.slow
def test_job_killed_while_training_leaves_no_entry_and_no_stale_lock(tmp_path: Path) -> None:
    """SIGKILL mid-training: the lock file stays, yet the next run trains cleanly at once."""
    root = make_idx_dataset(tmp_path / "data", n_train=800, n_test=32)
    args = [*tiny_overrides(root, tmp_path / "cache"), "train.epochs=10",
            f"hydra.run.dir={tmp_path}/run"]
    job = subprocess.Popen([sys.executable, "run.py", *args], cwd=REPO,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           env={**os.environ, "WANDB_MODE": "disabled"})
    deadline = time.time() + 120
    while not list((tmp_path / "cache").glob("*.lock")) and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(3)  # inside trainer.fit, holding the lock
    job.send_signal(signal.SIGKILL)
    job.wait(timeout=60)
    assert list((tmp_path / "cache").glob("*.lock")), "the killed job left its lock file"
    assert not list((tmp_path / "cache").glob("*/meta.json")), "no entry from a killed job"
    rerun = run_py(*args, timeout=900)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["ann"]["trained"] is True


@pytest.mark.slow
def test_two_parallel_jobs_on_an_empty_cache_train_once(tiny_idx_root: Path,
                                                       tmp_path: Path) -> None:
    done = run_py("-m", "hydra/launcher=local", "gamma=1,2",
                  *tiny_overrides(tiny_idx_root, tmp_path / "cache"),
                  f"hydra.sweep.dir={tmp_path}/sweep", "trainer.num_threads=1")
    assert done.returncode == 0, done.stderr[-3000:]
    results = [json.loads((tmp_path / "sweep" / str(i) / "results.json").read_text())
               for i in (0, 1)]
    assert sorted(r["ann"]["trained"] for r in results) == [False, True]
    assert results[0]["ann"]["key"] == results[1]["ann"]["key"]


def test_skip_done_skips_identical_jobs_and_reruns_changed_ones(job_config,
                                                                tmp_path: Path) -> None:
    context = JobContext(tmp_path / "job")
    first = run_job(job_config("skip_done=true"), context)
    path = context.job_dir / "results.json"
    stamp = path.stat().st_mtime_ns
    again = run_job(job_config("skip_done=true"), context)
    assert again == json.loads(json.dumps(first)) and path.stat().st_mtime_ns == stamp
    changed = run_job(job_config("skip_done=true", "gamma=2"), context)
    assert changed["config"]["gamma"] == 2 and path.stat().st_mtime_ns != stamp
    rerun = run_job(job_config("gamma=2"), context)  # without skip_done: always runs
    assert rerun["timings"] != changed["timings"]


def test_nan_weights_are_caught_naming_the_layer() -> None:
    ann = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3))
    with torch.no_grad():
        ann[3].weight[0, 0] = float("nan")
    with pytest.raises(ConversionError, match="'3.weight'.*NaN"):
        convert(ann, [(torch.rand(2, 1, 4, 4), None)])


def test_same_config_and_seed_give_identical_results(job_config, tmp_path: Path) -> None:
    runs = [run_job(job_config(f"cache_dir={tmp_path}/cache{i}"), JobContext(tmp_path / f"j{i}"))
            for i in (0, 1)]
    assert all(r["ann"]["trained"] for r in runs)
    for part in ("test_acc", "val_acc"):
        assert runs[0]["ann"][part] == runs[1]["ann"][part]
    assert runs[0]["snn"] == runs[1]["snn"]


def test_no_secrets_in_results_or_logs(job_config, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_API_KEY", "sekret-0123456789abcdef")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "sekret-aws-key")
    run_job(job_config("logger=csv"), JobContext(tmp_path / "job"))
    for path in (tmp_path / "job").rglob("*"):
        if path.is_file():
            assert "sekret" not in path.read_text(errors="ignore"), path


def test_checkpoints_load_with_weights_only(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    real_load = torch.load

    def spy(*args, **kwargs):
        seen.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    cache = AnnCache(tmp_path)
    cache.load_or_train("k", nn.Linear(2, 2), lambda m: {})
    monkeypatch.setattr(torch, "load", spy)
    assert cache.load("k", nn.Linear(2, 2)) is not None
    assert seen == [True]


@pytest.mark.parametrize(("value", "expected"), [("2", 2), ("0.5", 0.5), ("null", None)])
def test_batch_limits_keep_their_type(job_config, value: str, expected) -> None:
    """Lightning reads an int as a count of batches and a float as a fraction of them."""
    cfg = job_config(f"train.limit_train_batches={value}")
    assert cfg.train.limit_train_batches == expected and type(cfg.train.limit_train_batches) is type(expected)
