"""The job config's schema: dataclasses in Hydra's ConfigStore, first in conf/config.yaml's
defaults list, so Hydra refuses unknown keys and values of the wrong type when it composes.

`validate(cfg)` runs when a job starts: it builds the typed config, whose `__post_init__`
checks every field against its rule in `burstsnn.rules` (one rule per knob, shared with
`convert` and the spiking modules). Every failure is a `ConfigError` whose one-line message
names the key, the value and what is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, ClassVar, Optional, get_type_hints

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from burstsnn.ann.data import SPECS
from burstsnn.ann.models import KINDS
from burstsnn.ann.models.torchvision import classifiers
from burstsnn.errors import ConfigError
from burstsnn.rules import INVERSE_GAMMA, RULES, check, check_choice, refuse

SCHEMA = "job_schema"  # its name in the ConfigStore, as conf/config.yaml's defaults list names it


class _Checked:
    """Checks each field with its rule (``RULES[PREFIX + name]``), or against its registry
    (``CHOICES[name]``: the data sets, the models), after construction. Booleans are typed
    Any: OmegaConf would turn ``channel_wise=2`` into true, the rule refuses it."""

    PREFIX = ""
    CHOICES: ClassVar[dict[str, Any]] = {}

    def __post_init__(self) -> None:
        for f in fields(self):
            key, value = self.PREFIX + f.name, getattr(self, f.name)
            if f.name in self.CHOICES:
                check_choice(key, value, self.CHOICES[f.name])
            elif key in RULES:
                check(key, value)


@dataclass
class DataConfig(_Checked):
    PREFIX, CHOICES = "data.", {"name": SPECS}
    name: str = "fashion_mnist"
    root: Optional[str] = None
    download: Any = False
    image_size: int = 32
    in_channels: int = 1
    num_classes: int = 10
    batch_size: int = 128
    eval_batch_size: int = 128
    num_workers: int = 0
    val_size: int = 5000
    split_seed: int = 0
    augment: Any = True
    crop_padding: int = 4
    autoaugment: Any = False
    cutout: Any = False
    limit_train_samples: Optional[int] = None
    limit_test_samples: Optional[int] = None
    eval_split: str = "test"
    pipeline: str = "batched"


@dataclass
class ModelConfig(_Checked):
    PREFIX, CHOICES = "model.", {"name": KINDS}
    name: str = "vgg16"
    width: float = 0.25          # the paper's networks
    in_channels: int = 1
    num_classes: int = 10
    image_size: int = 32
    classifier_hidden: int = 0   # the paper's networks
    activation: str = "relu"     # the paper's networks: relu (the paper's) or qcfs (quantised, λ trained)
    levels: int = 4              # activation=qcfs: L, its levels (convert with gamma = L)
    clip_per_channel: Any = False  # activation=qcfs: one trained λ per channel instead of per layer
    arch: Optional[str] = None   # name=torchvision: a torchvision classifier
    kwargs: Any = field(default_factory=dict)  # name=torchvision: more arguments of get_model
    net: Any = None              # name=custom: {_target_: dotted path, its arguments...}

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.name == "torchvision" and self.arch not in classifiers():
            raise refuse("model.arch", self.arch, "the name of a torchvision classification model, e.g. resnet18 "
                                                  "(torchvision.models.list_models(module=torchvision.models))")
        if self.name == "custom" and not (isinstance(self.net, dict) and isinstance(self.net.get("_target_"), str)):
            raise refuse("model.net", self.net, "a _target_ (model.net._target_=<module.factory>) and its arguments")


@dataclass
class TrainConfig(_Checked):
    PREFIX = "train."
    epochs: int = 8
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    limit_train_batches: Any = None  # Any: typed float, OmegaConf would make a count of 2 batches the fraction 2.0
    limit_val_batches: Any = None


@dataclass
class TrainerConfig(_Checked):
    PREFIX = "trainer."
    accelerator: str = "cpu"
    devices: Any = 1
    strategy: str = "auto"
    num_threads: Optional[int] = None
    deterministic: Any = False
    enable_progress_bar: Any = True


@dataclass
class LoggerConfig(_Checked):
    PREFIX = "logger."
    name: str = "wandb"
    project: Optional[str] = None
    mode: Optional[str] = None
    entity: Optional[str] = None


@dataclass
class JobConfig(_Checked):
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
    pooling: str = "lipool"
    reset: str = "soft"
    v_init: float = 0.0
    theta_scale: Any = INVERSE_GAMMA
    channel_wise: Any = False
    lambda_rule: str = "percentile"
    bias_correction: Any = False
    calib_batches: int = 1
    chunk: Optional[int] = None
    checkpoint: Optional[str] = None  # convert these weights instead of training (or reusing) the ANN
    cache_dir: str = "outputs/ann_cache"
    skip_done: Any = False


ConfigStore.instance().store(name=SCHEMA, node=JobConfig)


def resolved_config(cfg: DictConfig) -> dict[str, Any]:
    """The config as plain data (interpolations resolved), as results.json and W&B store it."""
    return OmegaConf.to_container(cfg, resolve=True)


def _schema_error(error: OmegaConfBaseException) -> ConfigError:
    """One line from OmegaConf's multi-line message: key, value and what is allowed."""
    key = getattr(error, "full_key", None) or "?"
    first = str(error).splitlines()[0]
    if isinstance(error, ConfigKeyError):
        return ConfigError(f"{key} is not a known setting (see conf/config.yaml): {first}")
    value = getattr(error, "value", None)
    return ConfigError(f"{key}={value!r} is not allowed: {first}")


def unknown_keys(cfg: DictConfig, schema: type = JobConfig, prefix: str = "") -> list[str]:
    """Keys of `cfg` that `schema` does not have: Hydra lets `+key=value` add them even to a
    structured config."""
    hints = get_type_hints(schema)
    known = {f.name: hints[f.name] for f in fields(schema)}
    found = []
    for key in cfg:
        if key not in known:
            found.append(f"{prefix}{key}")
        elif is_dataclass(known[key]):
            found += unknown_keys(cfg[key], known[key], f"{prefix}{key}.")
    return found


def validate(cfg: DictConfig) -> JobConfig:
    """Check `cfg` against the schema and every knob's rule; returns the typed config or
    raises ConfigError. (Composed by Hydra, `cfg` already has the schema's types; the merge
    also covers configs built by hand.)"""
    if unknown := unknown_keys(cfg):
        raise ConfigError(f"{unknown[0]} is not a known setting (see conf/config.yaml)")
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(JobConfig), cfg))
    except OmegaConfBaseException as error:
        if isinstance(error.__cause__, ConfigError):
            raise error.__cause__ from None
        raise _schema_error(error) from None
