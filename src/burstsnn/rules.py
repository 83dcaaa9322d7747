"""Every knob's allowed values, one rule each, in one place.

The job config's schema (`burstsnn.experiment.config`) checks every field with `check`
when a job starts, and the library entry points that take the same knobs (`convert`,
`BurstNeuron`, `SpikingNetwork`, the data module) call the same rules, so a value is
judged alike wherever it comes from. A refusal is a `ConfigError` whose one-line message
names the key, the value and what is allowed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from burstsnn.errors import ConfigError

POOLINGS = ("lipool", "spikemax", "avg")
RESETS = ("soft", "hard")
LAMBDA_RULES = ("percentile", "mse", "trained")
ACTIVATIONS = ("relu", "qcfs")
INVERSE_GAMMA = "1/gamma"  # theta_scale written as text: θ = λ/Γ
ACCELERATORS = ("cpu", "gpu", "cuda", "mps", "tpu", "auto")
LOGGERS = ("wandb", "csv", "none")
LOGGER_MODES = (None, "offline", "online", "disabled")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _int_at_least(low: int, optional: bool = False) -> Callable[[Any], bool]:
    return lambda v: (optional and v is None) or (_is_int(v) and v >= low)


def _number_in(low: float, high: float, *, open_low: bool = False, open_high: bool = False,
               optional: bool = False) -> Callable[[Any], bool]:
    def ok(v: Any) -> bool:
        if optional and v is None:
            return True
        if not _is_number(v):
            return False
        above = v > low if open_low else v >= low
        below = v < high if open_high else v <= high
        return above and below
    return ok


def _one_of(options: tuple) -> Callable[[Any], bool]:
    return lambda v: v in options and (v is None or isinstance(v, str))


def _devices(value: Any) -> bool:
    """Lightning's `devices`: a count ≥ 1, -1 (all), "auto", or a non-empty list of indices."""
    if value == "auto" or value == -1:
        return True
    if isinstance(value, (list, tuple)):
        return len(value) > 0 and all(_is_int(i) and i >= 0 for i in value)
    return _is_int(value) and value >= 1


def _theta_scale(value: Any) -> bool:
    if isinstance(value, str):
        return value.replace(" ", "") == INVERSE_GAMMA
    return _is_number(value) and value > 0


@dataclass(frozen=True)
class Rule:
    """What a knob allows: ``ok(value)`` and the words for it."""

    allowed: str
    ok: Callable[[Any], bool]


_BOOL = Rule("true or false", lambda v: isinstance(v, bool))
_INT_1 = Rule("an integer ≥ 1", _int_at_least(1))
_INT_0 = Rule("an integer ≥ 0", _int_at_least(0))
_OPTIONAL_INT_1 = Rule("null or an integer ≥ 1", _int_at_least(1, optional=True))
_POSITIVE = Rule("a number > 0", _number_in(0, math.inf, open_low=True))
_OPTIONAL_LIMIT = Rule("null, an integer ≥ 1 (batches) or a fraction in (0, 1]",
                       lambda v: v is None or (_is_int(v) and v >= 1) or _number_in(0, 1, open_low=True)(v))

RULES: dict[str, Rule] = {
    # conversion and simulation (paper §3)
    "p": Rule("a number in (0, 100]", _number_in(0, 100, open_low=True)),
    "gamma": _INT_1,
    "T": _INT_1,
    "pooling": Rule(f"one of {', '.join(POOLINGS)}", _one_of(POOLINGS)),
    "reset": Rule(f"one of {', '.join(RESETS)}", _one_of(RESETS)),
    "v_init": Rule("a number in [0, 1)", _number_in(0, 1, open_high=True)),
    "theta_scale": Rule(f"a number > 0 or '{INVERSE_GAMMA}'", _theta_scale),
    "channel_wise": _BOOL,
    "lambda_rule": Rule(f"one of {', '.join(LAMBDA_RULES)}", _one_of(LAMBDA_RULES)),
    "bias_correction": _BOOL,
    "calib_batches": _INT_1,
    "chunk": _OPTIONAL_INT_1,
    "seed": _INT_0,
    "skip_done": _BOOL,
    # data
    "data.download": _BOOL,
    "data.image_size": Rule("a multiple of 32", lambda v: _is_int(v) and v >= 32 and v % 32 == 0),
    "data.batch_size": _INT_1,
    "data.eval_batch_size": _INT_1,
    "data.num_workers": _INT_0,
    "data.val_size": _INT_0,
    "data.split_seed": _INT_0,
    "data.augment": _BOOL,
    "data.crop_padding": _INT_0,
    "data.autoaugment": _BOOL,
    "data.cutout": _BOOL,
    "data.limit_train_samples": _OPTIONAL_INT_1,
    "data.limit_test_samples": _OPTIONAL_INT_1,
    "data.eval_split": Rule("test or val (the held-out training images)", _one_of(("test", "val"))),
    "data.pipeline": Rule("batched (one uint8 tensor, batches augmented on the training device) or per_sample "
                          "(torchvision transforms per image, in the loader)", _one_of(("batched", "per_sample"))),
    # model
    "model.width": _POSITIVE,
    "model.classifier_hidden": Rule("an integer ≥ 0 (0 = one Linear, the paper's)", _int_at_least(0)),
    "model.kwargs": Rule("a mapping of argument names to values", lambda v: isinstance(v, dict)),
    "model.activation": Rule(f"one of {', '.join(ACTIVATIONS)}", _one_of(ACTIVATIONS)),
    "model.levels": _INT_1,
    "model.clip_per_channel": _BOOL,
    # training recipe
    "train.epochs": _INT_1,
    "train.lr": _POSITIVE,
    "train.momentum": Rule("a number in [0, 1)", _number_in(0, 1, open_high=True)),
    "train.weight_decay": Rule("a number ≥ 0", _number_in(0, math.inf)),
    "train.label_smoothing": Rule("a number in [0, 1)", _number_in(0, 1, open_high=True)),
    "train.limit_train_batches": _OPTIONAL_LIMIT,
    "train.limit_val_batches": _OPTIONAL_LIMIT,
    # hardware
    "trainer.accelerator": Rule(f"one of {', '.join(ACCELERATORS)}", _one_of(ACCELERATORS)),
    "trainer.devices": Rule("an integer ≥ 1, -1 (all), 'auto' or a list of device indices", _devices),
    "trainer.num_threads": _OPTIONAL_INT_1,
    "trainer.deterministic": Rule("true, false or 'warn'", lambda v: isinstance(v, bool) or v == "warn"),
    "trainer.enable_progress_bar": _BOOL,
    # loggers
    "logger.name": Rule(f"one of {', '.join(LOGGERS)}", _one_of(LOGGERS)),
    "logger.mode": Rule("null, offline, online or disabled", _one_of(LOGGER_MODES)),
}


def refuse(key: str, value: Any, allowed: str) -> ConfigError:
    """The one-line error for ``key=value``."""
    return ConfigError(f"{key}={value!r} is not allowed: {allowed}")


def check(key: str, value: Any) -> Any:
    """``value`` if ``RULES[key]`` allows it, else ConfigError naming key, value and what is allowed."""
    rule = RULES[key]
    if not rule.ok(value):
        raise refuse(key, value, rule.allowed)
    return value


def check_choice(key: str, value: Any, options: Any) -> Any:
    """``value`` if it is one of ``options`` (a registry such as the data sets or models)."""
    if not isinstance(value, str) or value not in options:
        raise refuse(key, value, f"one of {', '.join(options)}")
    return value


def theta_scale_value(theta_scale: float | str, gamma: int) -> float:
    """θ_l / λ_l as a number: ``theta_scale``, or 1/Γ when it is the text '1/gamma'."""
    check("theta_scale", theta_scale)
    return 1.0 / gamma if isinstance(theta_scale, str) else float(theta_scale)
