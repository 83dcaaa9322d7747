"""Content-addressed ANN checkpoints: a key from the config and the code, a file lock, atomic writes.

An entry is `<root>/<key>/model.pt` (a plain state_dict) and `<root>/<key>/meta.json`
(the config that determined the ANN, its accuracy and the checkpoint's SHA-256). The meta
file is written last, so an entry without it is incomplete and is never used.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock
from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf
from torch import nn

import burstsnn
from burstsnn.ann.checkpoint import cpu_state_dict
from burstsnn.atomic import sha256_of, write_atomic, write_json_atomic

# Data settings that do not change the trained ANN (where the files are, how fast they load,
# how the test set is read); every other data/model/train setting and the seed do.
DATA_KEYS_NOT_IN_KEY = frozenset(
    {"root", "download", "num_workers", "eval_batch_size", "limit_test_samples", "eval_split"}
)
# The source files that determine the trained ANN, relative to the burstsnn package: every
# module of the ANN station (burstsnn.ann: the networks, the training module and the data
# pipeline) and the activations its networks are built with (burstsnn.activations, which sits
# outside it because the conversion reads QCFS too). The station's other imports from burstsnn
# (errors, rules, atomic) check and write, and do not change weights (tests/test_cache.py).
PACKAGE_ROOT = Path(burstsnn.__file__).parent
ANN_SOURCES = ("ann/**/*.py", "activations.py")
CHECKPOINT = "model.pt"
META = "meta.json"


def source_digest(root: Path = PACKAGE_ROOT) -> str:
    """Hex SHA-256 over the `ANN_SOURCES` files under `root` (names and contents).
    RuntimeError if a pattern matches no file: the key would no longer see those changes."""
    files: set[Path] = set()
    for pattern in ANN_SOURCES:
        matched = set(root.glob(pattern))
        if not matched:
            raise RuntimeError(f"no ANN source file matches {root}/{pattern}: "
                               "the ANN cache key would not see changes to the ANN's code")
        files |= matched
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


@cache
def code_version() -> dict[str, str]:
    """What the code does to an ANN: the package version and the digest of its ANN sources."""
    return {"version": burstsnn.__version__, "source_sha256": source_digest()}


def factory_digest(target: str) -> str | None:
    """Hex SHA-256 of the source file that defines `target` (a dotted path), None if it has none."""
    try:
        source = inspect.getsourcefile(get_object(target))
    except (TypeError, ValueError, ImportError):
        return None
    return sha256_of(Path(source)) if source else None


def ann_identity(cfg: DictConfig) -> dict[str, Any]:
    """What determines the trained ANN (and nothing else): the data, model, training and seed
    settings of the job config, and the code that builds and trains the ANN (for a custom
    network, the file that defines its factory too)."""
    data = OmegaConf.to_container(cfg.data, resolve=True)
    model = OmegaConf.to_container(cfg.model, resolve=True)
    code = code_version()
    if model["name"] == "custom":
        code = {**code, "net_source_sha256": factory_digest(model["net"]["_target_"])}
    return {
        "data": {k: v for k, v in data.items() if k not in DATA_KEYS_NOT_IN_KEY},
        "model": model,
        "train": OmegaConf.to_container(cfg.train, resolve=True),
        "seed": cfg.seed,
        "code": code,
    }


def ann_key(cfg: DictConfig) -> str:
    """Stable hex key of `ann_identity(cfg)`."""
    text = json.dumps(ann_identity(cfg), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


class AnnCache:
    """ANN checkpoints under `root`, one folder per key."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def entry(self, key: str) -> Path:
        return self.root / key

    def checkpoint(self, key: str) -> Path:
        """The entry's weights: a plain state dict (what `checkpoint=<path>` also takes)."""
        return self.entry(key) / CHECKPOINT

    @contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Hold the key's file lock (an OS lock: a killed holder releases it)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.root / f"{key}.lock")):
            yield

    def load(self, key: str, model: nn.Module) -> dict[str, Any] | None:
        """Load the entry's weights into `model` and return its meta; None if absent or corrupt."""
        folder = self.entry(key)
        meta_path, checkpoint = folder / META, folder / CHECKPOINT
        if not meta_path.exists():
            return None
        try:
            meta = json.loads(meta_path.read_text())
            if sha256_of(checkpoint) != meta["sha256"]:
                raise ValueError("checksum mismatch")
            model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
        except (OSError, ValueError, KeyError, RuntimeError) as error:
            warnings.warn(f"ANN cache entry {folder} is corrupt ({error}); retraining it.")
            return None
        return meta

    def save(self, key: str, model: nn.Module, meta: dict[str, Any]) -> dict[str, Any]:
        """Store `model`'s weights and `meta` (+ checksum) atomically; returns the stored meta."""
        folder = self.entry(key)
        (folder / META).unlink(missing_ok=True)  # the entry is incomplete until meta is back
        state = cpu_state_dict(model)
        write_atomic(folder / CHECKPOINT, lambda tmp: torch.save(state, tmp))
        stored = {**meta, "sha256": sha256_of(folder / CHECKPOINT)}
        write_json_atomic(folder / META, stored)
        return stored

    def load_or_train(
        self, key: str, model: nn.Module, train: Callable[[nn.Module], dict[str, Any]],
        rank_zero: bool = True,
    ) -> tuple[dict[str, Any], bool]:
        """Fill `model` from the cache, or train it with `train(model) -> meta` and store it.

        Parallel callers with the same key train once: the others wait on the lock and load.
        Returns (meta, trained).

        DDP ranks ≥ 1 (`rank_zero=False`) never take the lock, which their rank 0 holds
        while it trains, and never store: Lightning starts them at rank 0's first Trainer
        call, after rank 0 chose under the lock; they find the same entry (load it) or none
        (call `train` too, which joins rank 0's `fit`). Where a cluster starts every rank at
        once (Slurm), they look before rank 0 has chosen: right unless another job stores
        this key meanwhile (README, "Running on more machines").
        """
        if not rank_zero:
            meta = self.load(key, model)
            return (meta, False) if meta is not None else (train(model), True)
        with self.lock(key):
            meta = self.load(key, model)
            if meta is not None:
                return meta, False
            return self.save(key, model, train(model)), True
