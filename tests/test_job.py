"""A whole job on tiny data, through the same code `python run.py` runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from burstsnn.ann.checkpoint import load_checkpoint
from burstsnn.ann.data import ImageDataModule
from burstsnn.ann.models import build_ann
from burstsnn.experiment import job as job_module
from burstsnn.experiment.callbacks import ConversionCallback
from burstsnn.experiment.job import JobContext, run_job
from conftest import REPO, tiny_overrides


def test_job_trains_once_then_reuses_the_ann(job_config, tmp_path: Path, monkeypatch) -> None:
    """A trained ANN is converted by the ConversionCallback inside `fit`; a cached one by the
    same callback's `run`."""
    calls = []
    on_fit_end, run = ConversionCallback.on_fit_end, ConversionCallback.run

    def spy_on_fit_end(self, trainer, pl_module):
        calls.append(("on_fit_end", trainer.state.fn))
        on_fit_end(self, trainer, pl_module)

    def spy_run(self, ann, data, ann_key=None):
        calls.append("run")
        return run(self, ann, data, ann_key)

    monkeypatch.setattr(ConversionCallback, "on_fit_end", spy_on_fit_end)
    monkeypatch.setattr(ConversionCallback, "run", spy_run)
    # With progress bars: the SNN test's Trainer runs inside the training Trainer's fit.
    first = run_job(job_config("trainer.enable_progress_bar=true"), JobContext(tmp_path / "job1"))
    assert first["ann"]["trained"] is True
    assert calls == [("on_fit_end", "fit"), "run"]
    calls.clear()
    second = run_job(job_config("gamma=2", "T=8", "p=99"), JobContext(tmp_path / "job2"))
    assert second["ann"]["trained"] is False
    assert calls == ["run"] and len(second["snn"]["acc_over_t"]) == 8
    assert second["ann"]["key"] == first["ann"]["key"]
    assert second["ann"]["test_acc"] == first["ann"]["test_acc"]
    # The ANN accuracy (measured in the SNN's test pass) is the cached ANN's, counted here.
    cfg = job_config()
    model = build_ann(OmegaConf.to_container(cfg.model, resolve=True)).eval()
    load_checkpoint(model, Path(second["ann"]["checkpoint"]))
    data = ImageDataModule(**cfg.data)
    data.setup()
    correct = total = 0
    with torch.no_grad():
        for x, y in data.test_dataloader():
            correct += int((model(x).argmax(-1) == y).sum())
            total += len(y)
    assert total > 0 and second["ann"]["test_acc"] == correct / total
    # A job on the same ANN and images reads the predictions the last one kept: no ANN pass.
    forwards = []

    def counted_ann(config):
        built = build_ann(config)
        built.register_forward_hook(lambda *_: forwards.append(1))
        return built

    monkeypatch.setattr(job_module, "build_ann", counted_ann)
    third = run_job(job_config("gamma=3", "T=4"), JobContext(tmp_path / "job2b"))
    assert not forwards and third["ann"]["test_acc"] == second["ann"]["test_acc"]
    retrained = run_job(job_config("seed=1"), JobContext(tmp_path / "job3"))
    assert retrained["ann"]["trained"] is True and retrained["ann"]["key"] != first["ann"]["key"]


@pytest.mark.slow
def test_run_py_entry_point(tiny_idx_root: Path, tmp_path: Path) -> None:
    """`python run.py ...` as a user runs it: exit 0, logs training then reuse, writes results."""
    overrides = tiny_overrides(tiny_idx_root, tmp_path / "cache")
    env = {**os.environ, "WANDB_MODE": "disabled"}

    def run(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "run.py", *overrides, f"hydra.run.dir={tmp_path}/run", *extra],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
        )

    first = run()
    assert first.returncode == 0, first.stderr[-3000:]
    assert "Trained the ANN" in first.stdout + first.stderr
    second = run("gamma=2")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Reused cached" in second.stdout + second.stderr
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["ann"]["trained"] is False
