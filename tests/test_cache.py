"""The ANN cache: what changes the key, atomic writes, corruption, one training for parallel jobs."""

import ast
import importlib.util
import json
import multiprocessing
import pkgutil
import shutil
import threading
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from torch import nn

import burstsnn.ann
from burstsnn.atomic import write_json_atomic
from burstsnn.experiment import cache as cache_module
from burstsnn.experiment.cache import ANN_SOURCES, PACKAGE_ROOT, AnnCache, ann_key, source_digest

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


def copy_package(to: Path) -> Path:
    """A copy of the burstsnn package's sources at `to`."""
    shutil.copytree(PACKAGE_ROOT, to, ignore=shutil.ignore_patterns("__pycache__"))
    return to


@pytest.mark.parametrize("edited", ["ann/models/vgg.py", "ann/models/resnet.py", "ann/classifier.py",
                                    "ann/data.py", "ann/datasets.py", "activations.py"])
def test_editing_the_model_or_training_source_changes_the_digest(tmp_path: Path, edited: str) -> None:
    """activations.py too: QCFS (its clip, its rounding) is what a quantised ANN trains with."""
    package = copy_package(tmp_path / "burstsnn")
    assert source_digest(package) == source_digest()
    with (package / edited).open("a") as handle:
        handle.write("# an edit\n")
    assert source_digest(package) != source_digest()


def hashed(package: Path) -> set[Path]:
    return {path.resolve() for pattern in ANN_SOURCES for path in package.glob(pattern)}


def burstsnn_imports(path: Path) -> set[str]:
    """The burstsnn modules a source file imports (``import``/``from ... import``)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name for name in names if name.split(".")[0] == "burstsnn"}


# What the ANN station imports from the rest of burstsnn without it changing any weight:
# exceptions, config checks, atomic file writes and checksums.
NOT_WEIGHTS = {"burstsnn.errors", "burstsnn.rules", "burstsnn.atomic"}


def test_the_digest_covers_every_module_of_the_ann_package(tmp_path: Path) -> None:
    """The key sees the whole ANN station: every module of burstsnn.ann is hashed (a file
    moved there or added later too), and every burstsnn module the station imports is hashed
    or known not to change weights (NOT_WEIGHTS; activations.py was once missed). A pattern
    that matches nothing is an error, not a key that silently stops seeing code changes."""
    modules = {Path(importlib.util.find_spec(m.name).origin).resolve()
               for m in pkgutil.walk_packages(burstsnn.ann.__path__, "burstsnn.ann.")}
    assert modules and modules <= hashed(PACKAGE_ROOT)
    imported = set().union(*(burstsnn_imports(path) for path in modules))
    outside = {name for name in imported if not name.startswith("burstsnn.ann")} - NOT_WEIGHTS
    assert outside == {"burstsnn.activations"}
    assert {Path(importlib.util.find_spec(name).origin).resolve() for name in outside} <= hashed(PACKAGE_ROOT)
    package = copy_package(tmp_path / "burstsnn")
    before = source_digest(package)
    (package / "ann" / "models" / "new_net.py").write_text("# a network added later\n")
    assert source_digest(package) != before
    (package / "activations.py").unlink()
    with pytest.raises(RuntimeError, match="no ANN source file matches .*activations.py"):
        source_digest(package)
    (tmp_path / "empty").mkdir()
    with pytest.raises(RuntimeError, match="no ANN source file matches"):
        source_digest(tmp_path / "empty")


def test_other_code_or_another_version_gets_another_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Entries trained by other code sit under other keys: never loaded."""
    before = key_for()
    version = cache_module.code_version()
    monkeypatch.setattr(cache_module, "code_version", lambda: {**version, "source_sha256": "edited"})
    assert key_for() != before
    monkeypatch.setattr(cache_module, "code_version", lambda: {**version, "version": "0.0.0"})
    assert key_for() != before


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


def _hold_lock(root: str, held, release) -> None:
    with AnnCache(root).lock("k"):
        held.set()
        release.wait(60)


@pytest.mark.parametrize("cached", [False, True])
def test_ddp_rank_above_zero_never_waits_for_the_lock(tmp_path: Path, cached: bool) -> None:
    """While rank 0 holds the lock (it trains inside it, in DDP with the other ranks), a rank
    ≥ 1 goes on without the lock: it trains along when there is no entry, else loads it."""
    cache, calls = AnnCache(tmp_path), []
    if cached:
        cache.save("k", tiny(), {"val_acc": 0.5})
    context = multiprocessing.get_context("spawn")
    held, release = context.Event(), context.Event()
    rank0 = context.Process(target=_hold_lock, args=(str(tmp_path), held, release))
    rank0.start()
    try:
        assert held.wait(60)
        outcome = []
        rank1 = threading.Thread(
            target=lambda: outcome.append(cache.load_or_train("k", tiny(), train_marker(calls), rank_zero=False))
        )
        rank1.start()
        rank1.join(timeout=30)
        assert not rank1.is_alive(), "rank 1 waited for the lock rank 0 holds"
        (meta, trained), = outcome
        assert trained is not cached and calls == ([] if cached else [1])
        assert (meta["val_acc"], "sha256" in meta) == ((0.5, True) if cached else (0.9, False))
    finally:
        release.set()
        rank0.join(60)
    assert (tmp_path / "k" / "meta.json").exists() is cached  # ranks ≥ 1 never store
