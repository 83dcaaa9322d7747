"""The job config's schema (dataclasses in Hydra's ConfigStore) and its checks.

`validate(cfg)` runs when a job starts: the composed config is merged into the schema
(unknown keys and wrong types are refused) and each range is checked. Every failure is
a `ConfigError` whose one-line message names the key, the value and what is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from burstsnn.conversion.calibrate import LAMBDA_RULES
from burstsnn.conversion.convert import POOLINGS
from burstsnn.ann.data import SPECS
from burstsnn.errors import ConfigError
from burstsnn.ann.models import MODELS
from burstsnn.snn.neurons import RESETS

INVERSE_GAMMA = "1/gamma"


# The allowed choices come from the modules that implement them (one list each).
Pooling = Enum("Pooling", {name: name for name in POOLINGS})
Reset = Enum("Reset", {name: name for name in RESETS})
LambdaRule = Enum("LambdaRule", {name: name for name in LAMBDA_RULES})


def _require(ok: bool, key: str, value: object, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is not allowed: {allowed}")


def _positive_int(key: str, value: Optional[int]) -> None:
    _require(value is None or value >= 1, key, value, "an integer ≥ 1")


def resolved_config(cfg: DictConfig) -> dict[str, Any]:
    """The config as plain data (interpolations resolved), as results.json and W&B store it."""
    return OmegaConf.to_container(cfg, resolve=True)


def theta_scale_value(theta_scale: float | str, gamma: int) -> float:
    """θ_l / λ_l as a number: `theta_scale`, or 1/Γ when it is the string '1/gamma'."""
    allowed = f"a number > 0 or '{INVERSE_GAMMA}'"
    if isinstance(theta_scale, str):
        _require(theta_scale.replace(" ", "") == INVERSE_GAMMA, "theta_scale", theta_scale, allowed)
        return 1.0 / gamma
    _require(
        isinstance(theta_scale, (int, float)) and not isinstance(theta_scale, bool)
        and theta_scale > 0,
        "theta_scale", theta_scale, allowed,
    )
    return float(theta_scale)


@dataclass
class DataConfig:
    name: str = "fashion_mnist"
    root: Optional[str] = None
    download: bool = False
    image_size: int = 32
    in_channels: int = 1
    num_classes: int = 10
    batch_size: int = 128
    eval_batch_size: int = 128
    num_workers: int = 0
    val_size: int = 5000
    split_seed: int = 0
    augment: bool = True
    crop_padding: int = 4
    autoaugment: bool = False
    cutout: bool = False
    limit_train_samples: Optional[int] = None
    limit_test_samples: Optional[int] = None

    def __post_init__(self) -> None:
        _require(self.name in SPECS, "data.name", self.name, f"one of {', '.join(SPECS)}")
        _require(self.image_size >= 32 and self.image_size % 32 == 0, "data.image_size",
                 self.image_size, "a multiple of 32")
        _positive_int("data.batch_size", self.batch_size)
        _positive_int("data.eval_batch_size", self.eval_batch_size)
        _require(self.num_workers >= 0, "data.num_workers", self.num_workers, "an integer ≥ 0")
        _require(self.val_size >= 0, "data.val_size", self.val_size, "an integer ≥ 0")
        _require(self.crop_padding >= 0, "data.crop_padding", self.crop_padding, "an integer ≥ 0")
        _positive_int("data.limit_train_samples", self.limit_train_samples)
        _positive_int("data.limit_test_samples", self.limit_test_samples)


@dataclass
class ModelConfig:
    name: str = "vgg16"
    width: float = 0.25
    in_channels: int = 1
    num_classes: int = 10
    image_size: int = 32
    classifier_hidden: int = 0

    def __post_init__(self) -> None:
        _require(self.classifier_hidden >= 0, "model.classifier_hidden", self.classifier_hidden,
                 "an integer ≥ 0 (0 = one Linear, the paper's)")
        _require(self.name in MODELS, "model.name", self.name, f"one of {', '.join(MODELS)}")
        _require(self.width > 0, "model.width", self.width, "a number > 0")


@dataclass
class TrainConfig:
    epochs: int = 8
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    limit_train_batches: Optional[float] = None
    limit_val_batches: Optional[float] = None

    def __post_init__(self) -> None:
        _positive_int("train.epochs", self.epochs)
        _require(self.lr > 0, "train.lr", self.lr, "a number > 0")
        _require(0 <= self.label_smoothing < 1, "train.label_smoothing", self.label_smoothing,
                 "a number in [0, 1)")


@dataclass
class TrainerConfig:
    accelerator: str = "cpu"
    devices: Any = 1
    strategy: str = "auto"
    num_threads: Optional[int] = None
    deterministic: Any = False
    enable_progress_bar: bool = True

    def __post_init__(self) -> None:
        _positive_int("trainer.num_threads", self.num_threads)


@dataclass
class LoggerConfig:
    name: str = "wandb"
    project: Optional[str] = None
    mode: Optional[str] = None
    entity: Optional[str] = None

    def __post_init__(self) -> None:
        _require(self.name in ("wandb", "csv", "none"), "logger.name", self.name,
                 "wandb, csv or none")
        _require(self.mode in (None, "offline", "online", "disabled"), "logger.mode", self.mode,
                 "offline, online or disabled")


@dataclass
class JobConfig:
    """Everything a job reads; see conf/config.yaml for what each knob means."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    seed: int = 0
    p: float = 99.9
    gamma: int = 5
    T: int = 32
    pooling: Pooling = Pooling.lipool
    reset: Reset = Reset.soft
    v_init: float = 0.0
    theta_scale: Any = INVERSE_GAMMA
    channel_wise: bool = False
    lambda_rule: LambdaRule = LambdaRule.percentile
    bias_correction: bool = False
    calib_batches: int = 1
    chunk: Optional[int] = None
    cache_dir: str = "outputs/ann_cache"
    skip_done: bool = False

    def __post_init__(self) -> None:
        _positive_int("gamma", self.gamma)
        _positive_int("T", self.T)
        _require(0 < self.p <= 100, "p", self.p, "a number in (0, 100]")
        _require(0 <= self.v_init < 1, "v_init", self.v_init, "a number in [0, 1)")
        theta_scale_value(self.theta_scale, self.gamma)
        _positive_int("calib_batches", self.calib_batches)
        _positive_int("chunk", self.chunk)


ConfigStore.instance().store(name="job_schema", node=JobConfig)


def _schema_error(error: OmegaConfBaseException) -> ConfigError:
    """One line from OmegaConf's multi-line message: key, value and what is allowed."""
    key = getattr(error, "full_key", None) or "?"
    first = str(error).splitlines()[0]
    if isinstance(error, ConfigKeyError):
        return ConfigError(f"{key} is not a known setting (see conf/config.yaml): {first}")
    value = getattr(error, "value", None)
    return ConfigError(f"{key}={value!r} is not allowed: {first}")


def validate(cfg: DictConfig) -> JobConfig:
    """Check `cfg` against the schema; returns the typed config or raises ConfigError."""
    schema = OmegaConf.structured(JobConfig)
    try:
        merged = OmegaConf.merge(schema, cfg)
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as error:
        if isinstance(error.__cause__, ConfigError):
            raise error.__cause__ from None
        raise _schema_error(error) from None
