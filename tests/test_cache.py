"""The ANN cache: what changes the key, atomic writes, corruption, one training for parallel jobs."""

import json
import multiprocessing
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from torch import nn

from burstsnn.atomic import write_json_atomic
from burstsnn.cache import AnnCache, ann_key

CONF = str(Path(__file__).resolve().parents[1] / "conf")


def key_for(*overrides: str) -> str:
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return ann_key(compose(config_name="config", overrides=list(overrides)))


@pytest.mark.parametrize(
    "override",
    ["gamma=2", "T=16", "p=99", "pooling=spikemax", "reset=hard", "v_init=0.5",
     "theta_scale=1", "calib_batches=4", "channel_wise=true", "chunk=4",
     "data.root=/elsewhere", "data.num_workers=2", "data.eval_batch_size=64",
     "trainer=gpu", "logger=none"],
)
def test_conversion_and_hardware_settings_reuse_the_ann(override: str) -> None:
    assert key_for(override) == key_for()


@pytest.mark.parametrize(
    "override",
    ["seed=1", "model=resnet20", "model.width=0.5", "train.epochs=3", "train.lr=0.05",
     "data=mnist", "data.batch_size=64", "data.augment=false", "data.val_size=1000"],
)
def test_ann_settings_change_the_key(override: str) -> None:
    assert key_for(override) != key_for()


def tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Linear(3, 2)


def train_marker(calls: list) -> callable:
    def train(model: nn.Module) -> dict:
        calls.append(1)
        with torch.no_grad():
            model.weight.fill_(0.5)
        return {"val_acc": 0.9}
    return train


def test_train_once_then_reuse(tmp_path: Path) -> None:
    cache, calls = AnnCache(tmp_path), []
    meta, trained = cache.load_or_train("k", tiny(), train_marker(calls))
    assert trained and meta["val_acc"] == 0.9 and len(meta["sha256"]) == 64
    reused = tiny()
    meta2, trained2 = cache.load_or_train("k", reused, train_marker(calls))
    assert not trained2 and calls == [1] and meta2 == meta
    assert torch.all(reused.weight == 0.5)


def test_corrupt_checkpoint_is_retrained_with_a_warning(tmp_path: Path) -> None:
    cache, calls = AnnCache(tmp_path), []
    cache.load_or_train("k", tiny(), train_marker(calls))
    checkpoint = cache.entry("k") / "model.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[:-10])  # truncated
    with pytest.warns(UserWarning, match="corrupt"):
        _, trained = cache.load_or_train("k", tiny(), train_marker(calls))
    assert trained and calls == [1, 1]


def test_entry_without_meta_is_not_used(tmp_path: Path) -> None:
    cache, calls = AnnCache(tmp_path), []
    cache.load_or_train("k", tiny(), train_marker(calls))
    (cache.entry("k") / "meta.json").unlink()  # as if killed between checkpoint and meta
    _, trained = cache.load_or_train("k", tiny(), train_marker(calls))
    assert trained and calls == [1, 1]


def test_failed_training_leaves_no_entry(tmp_path: Path) -> None:
    cache = AnnCache(tmp_path)

    def crash(model: nn.Module) -> dict:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.load_or_train("k", tiny(), crash)
    assert not (cache.entry("k") / "meta.json").exists()
    assert cache.load("k", tiny()) is None


def test_atomic_json_write_keeps_the_old_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "results.json"
    write_json_atomic(target, {"a": 1})
    with pytest.raises(TypeError):
        write_json_atomic(target, {"a": object()})  # not serialisable: fails mid-way
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temp files left


def _parallel_job(root: str, counter: str) -> None:
    def train(model: nn.Module) -> dict:
        with open(counter, "a") as handle:
            handle.write("trained\n")
        return {}
    AnnCache(root).load_or_train("k", tiny(), train)


def test_parallel_jobs_train_once(tmp_path: Path) -> None:
    counter = tmp_path / "count.txt"
    context = multiprocessing.get_context("spawn")
    jobs = [context.Process(target=_parallel_job, args=(str(tmp_path / "c"), str(counter)))
            for _ in range(3)]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join(timeout=120)
    assert all(job.exitcode == 0 for job in jobs)
    assert counter.read_text().count("trained") == 1
