"""Hydra callbacks (conf/config.yaml, `hydra.callbacks`)."""

from __future__ import annotations

from itertools import count
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

JOB_NUM = "${hydra.job.num}"


class PrepareSweepDir(Callback):
    """Creates the sweep dir before the sweeper starts, so a sweeper can keep its state there
    (the frontier search's Optuna study, `<sweep dir>/frontier.db`, opened before the first job;
    Hydra itself creates the folder only when it launches that job).

    A sweeper with a storage numbers its jobs from 0 again when it resumes a study, so it
    would write over the job folders of the earlier run: refused, naming a sub-folder to use.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        subdir = OmegaConf.to_container(config.hydra.sweep)["subdir"]  # unresolved: no job yet
        first_job = sweep_dir / str(subdir).replace(JOB_NUM, "0")
        if config.hydra.sweeper.get("storage") and first_job.exists():
            free = next(f"resumed-{k}" for k in count(1) if not (sweep_dir / f"resumed-{k}").exists())
            # SystemExit: Hydra turns an Exception raised by a callback into a warning and goes on.
            raise SystemExit(
                f"error: {first_job} exists: to resume the search in {sweep_dir} without writing over its jobs, "
                f"add 'hydra.sweep.subdir={free}/{JOB_NUM}'")
        sweep_dir.mkdir(parents=True, exist_ok=True)
