"""Your own network through the same jobs (docs/own-network.md, each part at tiny size): a
torchvision classifier trained by the CLI, its checkpoint converted again, a `_target_`
factory from your own module; bad checkpoints get one line; energy through concat joins."""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf

from burstsnn.ann.classifier import ANNClassifier
from burstsnn.ann.data import ImageDataModule
from burstsnn.ann.models import build_ann, build_model
from burstsnn.errors import CheckpointError, ConfigError
from burstsnn.experiment.job import JobContext, run_job
from conftest import REPO, tiny_overrides

# Trains on 2 batches and simulates 32 test images for 3 steps: these check plumbing, not accuracy.
QUICK = ("train.limit_train_batches=2", "data.limit_test_samples=32", "T=3")

MY_NETS = '''
from torch import nn


def small_cnn(channels: int, in_channels: int = 1, num_classes: int = 10) -> nn.Module:
    """A user's own network: conv-BN-ReLU-maxpool twice, then one Linear (32×32 inputs)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(channels * 8 * 8, num_classes),
    )
'''


def entries(cache: Path) -> set[str]:
    return {p.name for p in cache.iterdir()} if cache.exists() else set()


def test_a_torchvision_model_is_trained_then_its_checkpoint_converted_again(job_config, tmp_path: Path) -> None:
    trained = run_job(job_config("model=torchvision", "model.arch=resnet18", *QUICK), JobContext(tmp_path / "job1"))
    ann = trained["ann"]
    assert ann["trained"] is True and ann["checkpoint"].endswith("model.pt")
    assert trained["config"]["model"]["arch"] == "resnet18" and trained["config"]["model"]["in_channels"] == 1
    cache_before = entries(tmp_path / "cache")

    again = run_job(job_config("model=torchvision", "model.arch=resnet18", *QUICK, f"checkpoint={ann['checkpoint']}"),
                    JobContext(tmp_path / "job2"))
    assert again["ann"]["trained"] is False and again["ann"]["key"] is None
    assert again["ann"]["checkpoint"] == ann["checkpoint"]
    assert again["ann"]["checkpoint_sha256"] == hashlib.sha256(Path(ann["checkpoint"]).read_bytes()).hexdigest()
    assert entries(tmp_path / "cache") == cache_before  # the cache untouched
    # The same network: the same ANN accuracy and the same SNN accuracy curve as the run that trained it.
    assert again["ann"]["test_acc"] == trained["ann"]["test_acc"]
    assert again["snn"]["acc_over_t"] == trained["snn"]["acc_over_t"]
    assert again["snn"]["agreement_over_t"] == trained["snn"]["agreement_over_t"]
    assert len(again["snn"]["agreement_over_t"]) == 3 and 0 <= again["snn"]["agreement_at_T"] <= 1


def test_a_lightning_checkpoint_converts_like_its_state_dict(job_config, tmp_path: Path, tiny_idx_root: Path) -> None:
    model = build_model("vgg16", 10, 1, width=0.125)
    module = ANNClassifier(model, 10)
    data = ImageDataModule(root=str(tiny_idx_root), batch_size=32, val_size=32)
    trainer = pl.Trainer(max_steps=2, logger=False, enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=False, limit_val_batches=0)
    trainer.fit(module, datamodule=data)
    trainer.save_checkpoint(tmp_path / "net.ckpt")
    torch.save(module.model.state_dict(), tmp_path / "net.pt")
    results = [run_job(job_config(*QUICK, f"checkpoint={tmp_path / name}"), JobContext(tmp_path / f"job_{name}"))
               for name in ("net.ckpt", "net.pt")]
    assert results[0]["ann"]["test_acc"] == results[1]["ann"]["test_acc"]
    assert results[0]["snn"]["acc_over_t"] == results[1]["snn"]["acc_over_t"]


def test_a_network_whose_modules_carry_versions_trains_caches_and_loads(job_config, tmp_path: Path) -> None:
    """MNASNet's loader refuses weights without its module versions (a state dict's _metadata):
    they must survive the hand-over after training, the cache and a Lightning checkpoint."""
    net = ("model=torchvision", "model.arch=mnasnet0_5", *QUICK)
    trained = run_job(job_config(*net), JobContext(tmp_path / "job1"))
    reused = run_job(job_config(*net), JobContext(tmp_path / "job2"))
    assert (trained["ann"]["trained"], reused["ann"]["trained"]) == (True, False)
    module = ANNClassifier(build_ann(OmegaConf.to_container(job_config(*net).model, resolve=True)), 10)
    module.model.load_state_dict(torch.load(trained["ann"]["checkpoint"], weights_only=True))
    torch.save({"state_dict": module.state_dict()}, tmp_path / "net.ckpt")  # as Lightning saves it
    loaded = run_job(job_config(*net, f"checkpoint={tmp_path / 'net.ckpt'}"), JobContext(tmp_path / "job3"))
    for other in (reused, loaded):
        assert other["ann"]["test_acc"] == trained["ann"]["test_acc"]
        assert other["snn"]["acc_over_t"] == trained["snn"]["acc_over_t"]


@pytest.mark.parametrize(("make", "message"), [
    (lambda tmp, good: tmp / "nowhere.pt", "checkpoint={path}: no such file"),
    (lambda tmp, good: (tmp / "cut.pt").write_bytes(good.read_bytes()[:-200]) and tmp / "cut.pt",
     "checkpoint={path} is truncated or not a PyTorch checkpoint"),
    (lambda tmp, good: torch.save(build_model("resnet20", 10, 1, width=0.125).state_dict(), tmp / "other.pt")
     or tmp / "other.pt", "checkpoint={path} does not fit the configured model: missing features.0.weight"),
    (lambda tmp, good: torch.save({"weights": [1, 2]}, tmp / "list.pt") or tmp / "list.pt",
     "checkpoint={path} holds no state dict"),
])
def test_bad_checkpoints_get_one_line_and_write_nothing(job_config, tmp_path: Path, make, message: str) -> None:
    good = tmp_path / "good.pt"
    torch.save(build_model("vgg16", 10, 1, width=0.125).state_dict(), good)
    path = make(tmp_path, good)
    with pytest.raises(CheckpointError) as caught:
        run_job(job_config(*QUICK, f"checkpoint={path}"), JobContext(tmp_path / "job"))
    assert str(caught.value).startswith(message.format(path=path)) and "\n" not in str(caught.value)
    assert not (tmp_path / "job" / "results.json").exists() and not (tmp_path / "cache").exists()


def test_a_factory_from_your_own_module(job_config, tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "my_nets.py").write_text(MY_NETS)
    monkeypatch.syspath_prepend(str(tmp_path))
    results = run_job(job_config("model=custom", "model.net._target_=my_nets.small_cnn", "+model.net.channels=4",
                                 *QUICK), JobContext(tmp_path / "job"))
    assert results["ann"]["trained"] is True
    assert list(results["snn"]["firing_rates"]) == ["2", "6"]
    assert list(results["snn"]["pooling_correct_ratio"]) == ["3", "7"]
    # Editing the module trains anew: the cache key covers the factory's file.
    (tmp_path / "my_nets.py").write_text(MY_NETS.replace("nn.Flatten()", "nn.Dropout(0.1), nn.Flatten()"))
    edited = run_job(job_config("model=custom", "model.net._target_=my_nets.small_cnn", "+model.net.channels=4",
                                *QUICK), JobContext(tmp_path / "job2"))
    assert edited["ann"]["trained"] is True and edited["ann"]["key"] != results["ann"]["key"]


@pytest.mark.parametrize(("overrides", "message"), [
    (("model=torchvision", "model.arch=resnet19"),
     "model.arch='resnet19' is not allowed: the name of a torchvision"),
    (("model=custom", "model.net._target_=no_such_module.make"),
     "model.net._target_='no_such_module.make' cannot be built"),
    (("model=custom", "model.net._target_=builtins.dict"),
     "model.net._target_='builtins.dict' built a dict, not a torch"),
])
def test_unknown_networks_get_one_line(job_config, tmp_path: Path, overrides, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        run_job(job_config(*overrides, *QUICK), JobContext(tmp_path / "job"))
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


@pytest.mark.parametrize(("arch", "stem", "joined"), [
    ("densenet121", "features.conv0", "features.denseblock1.denselayer2.conv1"),  # fed by a concat
    ("googlenet", "conv1.conv", "inception3b.branch1.conv"),                       # fed by a concat
    ("squeezenet1_1", "features.0", "features.4.squeeze"),                         # fed by a concat
])
def test_energy_is_counted_through_concat_joins(job_config, tmp_path: Path, arch: str, stem: str, joined: str) -> None:
    results = run_job(job_config("model=torchvision", f"model.arch={arch}", *QUICK), JobContext(tmp_path / "job"))
    energy = results["snn"]["energy"]
    assert math.isfinite(energy["energy_ratio"]) and energy["snn_acs"] > 0
    assert energy["mac_layers"] == [stem]  # only the stem sees analog values; every other layer spikes
    assert energy["acs_per_layer"][joined] > 0


@pytest.mark.slow
def test_the_walk_through_runs_from_the_command_line(tiny_idx_root: Path, tmp_path: Path) -> None:
    """docs/own-network.md's three commands, at tiny size, as a user types them."""
    base = [*tiny_overrides(tiny_idx_root, tmp_path / "cache"), *QUICK]
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(tmp_path)}
    (tmp_path / "my_nets.py").write_text(MY_NETS)

    def run(name: str, *extra: str) -> dict:
        done = subprocess.run([sys.executable, "run.py", *base, *extra, f"hydra.run.dir={tmp_path}/{name}"],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads((tmp_path / name / "results.json").read_text())

    trained = run("torchvision", "model=torchvision", "model.arch=resnet18")
    again = run("checkpoint", "model=torchvision", "model.arch=resnet18", f"checkpoint={trained['ann']['checkpoint']}")
    assert again["snn"]["acc_over_t"] == trained["snn"]["acc_over_t"]
    custom = run("custom", "model=custom", "model.net._target_=my_nets.small_cnn", "+model.net.channels=4")
    assert custom["ann"]["trained"] is True
