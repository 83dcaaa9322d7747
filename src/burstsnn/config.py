"""Checks of the job config that run before any work starts; each failure is one clear line."""

from __future__ import annotations

from omegaconf import DictConfig

POOLINGS = ("lipool", "spikemax", "avg")
RESETS = ("soft", "hard")
INVERSE_GAMMA = "1/gamma"


class ConfigError(ValueError):
    """A config value is out of range; the message names the key, the value and what is allowed."""


def theta_scale_value(theta_scale: float | str, gamma: int) -> float:
    """θ_l / λ_l as a number: `theta_scale`, or 1/Γ when it is the string '1/gamma'."""
    if isinstance(theta_scale, str):
        if theta_scale.replace(" ", "") != INVERSE_GAMMA:
            raise ConfigError(
                f"theta_scale={theta_scale!r} is not allowed: use a number > 0 or '{INVERSE_GAMMA}'"
            )
        return 1.0 / gamma
    if isinstance(theta_scale, bool) or not theta_scale > 0:
        raise ConfigError(f"theta_scale={theta_scale!r} is not allowed: use a number > 0 or '1/gamma'")
    return float(theta_scale)


def _require(ok: bool, key: str, value: object, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is not allowed: {allowed}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate(cfg: DictConfig) -> None:
    """Raise ConfigError for the first knob outside its allowed range."""
    _require(_is_int(cfg.gamma) and cfg.gamma >= 1, "gamma", cfg.gamma, "an integer ≥ 1")
    _require(_is_int(cfg.T) and cfg.T >= 1, "T", cfg.T, "an integer ≥ 1")
    _require(
        isinstance(cfg.p, (int, float)) and not isinstance(cfg.p, bool) and 0 < cfg.p <= 100,
        "p", cfg.p, "a number in (0, 100]",
    )
    _require(cfg.pooling in POOLINGS, "pooling", cfg.pooling, f"one of {', '.join(POOLINGS)}")
    _require(cfg.reset in RESETS, "reset", cfg.reset, f"one of {', '.join(RESETS)}")
    _require(
        isinstance(cfg.v_init, (int, float)) and 0 <= cfg.v_init < 1,
        "v_init", cfg.v_init, "a number in [0, 1)",
    )
    theta_scale_value(cfg.theta_scale, cfg.gamma)
    _require(
        _is_int(cfg.calib_batches) and cfg.calib_batches >= 1,
        "calib_batches", cfg.calib_batches, "an integer ≥ 1",
    )
    _require(
        cfg.chunk is None or (_is_int(cfg.chunk) and cfg.chunk >= 1),
        "chunk", cfg.chunk, "null or an integer ≥ 1",
    )
    _require(cfg.model.width > 0, "model.width", cfg.model.width, "a number > 0")
    _require(
        _is_int(cfg.train.epochs) and cfg.train.epochs >= 1,
        "train.epochs", cfg.train.epochs, "an integer ≥ 1",
    )
