"""How a job was started: where it writes, its overrides, run name, sweep and method preset."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode


@dataclass(frozen=True)
class JobContext:
    """Where a job writes (`job_dir`) and how it was started: its command-line overrides, its
    run name (Hydra's `override_dirname`), its sweep (`group`) and the `method` preset chosen."""

    job_dir: Path
    overrides: tuple[str, ...] = ()
    name: str = "default"
    group: str | None = None
    method: str | None = None

    @classmethod
    def from_hydra(cls) -> JobContext:
        """The context of the job Hydra is running."""
        hydra = HydraConfig.get()
        return cls(
            job_dir=Path(hydra.runtime.output_dir),
            overrides=tuple(hydra.overrides.task),
            name=hydra.job.override_dirname or "default",
            group="_".join(Path(hydra.sweep.dir).parts[-2:]) if hydra.mode == RunMode.MULTIRUN else None,
            method=hydra.runtime.choices.get("method"),
        )
