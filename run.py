"""Entry point: `python run.py [-m] key=value ...` (Hydra). See README.md and conf/config.yaml."""

from __future__ import annotations

import logging

import hydra
from hydra.errors import CompactHydraException
from omegaconf import DictConfig

from burstsnn.errors import USER_ERRORS
from burstsnn.experiment.job import JobContext, run_job

log = logging.getLogger("burstsnn")


class JobFailed(CompactHydraException):
    """A job stopped on bad input; Hydra prints just this one line (other sweep jobs go on)."""


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> tuple[float, float]:
    """One job; returns (SNN accuracy at T, SNN/ANN energy ratio at T), the two objectives that
    `hydra/sweeper=frontier` (Optuna) maximises and minimises."""
    # Lightning's per-Trainer banners ("GPU available", tips) would drown the job's own log.
    logging.getLogger("pytorch_lightning.utilities.rank_zero").setLevel(logging.WARNING)
    try:
        results = run_job(cfg, JobContext.from_hydra())
    except USER_ERRORS as error:
        log.error("error: %s", error)
        raise JobFailed(f"error: {error}") from None
    return results["snn"]["acc_at_T"], results["snn"]["energy"]["energy_ratio"]


if __name__ == "__main__":
    main()
