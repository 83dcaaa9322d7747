"""Entry point: `python run.py [-m] key=value ...` (Hydra). See README.md and conf/config.yaml."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from burstsnn.job import JobContext, run_job, user_error


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    context = JobContext(
        job_dir=Path(hydra_cfg.runtime.output_dir),
        overrides=tuple(hydra_cfg.overrides.task),
        group="_".join(Path(hydra_cfg.sweep.dir).parts[-2:]) if hydra_cfg.mode.name == "MULTIRUN" else None,
    )
    try:
        run_job(cfg, context)
    except user_error() as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
