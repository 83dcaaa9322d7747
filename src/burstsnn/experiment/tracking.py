"""Loggers of a job (W&B offline by default, CSV, none) and how SNN results are logged to them."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig
from pytorch_lightning.loggers import CSVLogger, Logger, WandbLogger

from burstsnn.experiment.context import JobContext


def build_logger(settings: DictConfig, config: dict[str, Any], context: JobContext) -> Logger | None:
    """The job's logger from the `logger` config (`settings`): W&B (one run per job, named
    `context.name`, grouped by `context.group` = the sweep), CSV or none; `config`: the job's
    resolved config, which the run records.

    W&B writes under `context.job_dir/wandb`; in offline mode `wandb sync <that dir>` uploads it later.
    """
    if settings.name == "csv":
        return CSVLogger(save_dir=str(context.job_dir), name="csv", version="")
    if settings.name == "wandb":
        return WandbLogger(
            project=settings.project,
            entity=settings.entity,
            name=context.name,
            group=context.group,
            job_type="conversion",
            tags=[config["data"]["name"], config["model"]["name"]],
            save_dir=str(context.job_dir),
            mode=settings.mode,
            config=config,
        )
    return None  # "none" (burstsnn.rules allows no other name)


def close_logger(logger: Logger | None) -> None:
    """Finish the job's W&B run (jobs of a sweep may share one process)."""
    if isinstance(logger, WandbLogger):
        import wandb

        wandb.finish()


def summary_scalars(results: dict[str, Any]) -> dict[str, float]:
    """A job's headline numbers, flat (for dashboards' summary and CSV); `results` as in
    results.json."""
    ann, snn = results["ann"], results["snn"]
    scalars = {
        "ann/test_acc": ann["test_acc"],
        "snn/acc_at_T": snn["acc_at_T"],
        "snn/best_acc": snn["best_acc"],
        "snn/best_t": snn["best_t"],
        "snn/agreement_at_T": snn["agreement_at_T"],
        "snn/conversion_loss": snn["conversion_loss"],
        "snn/theta_scale": snn["theta_scale"],
    }
    if snn["t_within_1pt"] is not None:  # first t within 1 point of the ANN, and its energy
        scalars["snn/t_within_1pt"] = snn["t_within_1pt"]
        scalars["snn/energy_ratio_within_1pt"] = snn["energy_over_t"][snn["t_within_1pt"] - 1]
    scalars.update({f"energy/{k}": v for k, v in snn["energy"].items() if _is_number(v)})
    scalars.update({f"firing_rate/{k}": v for k, v in snn["firing_rates"].items()})
    scalars.update({f"pooling_ratio/{k}": v for k, v in snn["pooling_correct_ratio"].items()})
    scalars.update({f"time/{k}": v for k, v in results["timings"].items()})
    return scalars


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


CURVES = {"snn/acc": "acc_over_t", "snn/agreement": "agreement_over_t", "snn/energy_ratio": "energy_over_t"}


def curves_over_t(results: dict[str, Any]) -> list[dict[str, float]]:
    """One row per step t = 1..T: {"snn/t", "snn/acc", "snn/agreement", "snn/energy_ratio"}
    (accuracy, agreement with the ANN and energy ratio had the run stopped at t)."""
    snn = results["snn"]
    return [{"snn/t": t, **{name: snn[key][t - 1] for name, key in CURVES.items()}}
            for t in range(1, len(snn["acc_over_t"]) + 1)]


def log_results(logger: Logger | None, results: dict[str, Any]) -> None:
    """Log a job's results (as in results.json): SNN accuracy, agreement with the ANN and energy
    ratio over t as curves whose x axis is t, firing rates as a table + bar chart (W&B), and the headline
    numbers."""
    if isinstance(logger, WandbLogger):
        _log_wandb(logger, results)
    elif logger is not None:
        for row in curves_over_t(results):
            logger.log_metrics(row, step=int(row["snn/t"]))
        logger.log_metrics(summary_scalars(results))
        logger.save()


def _log_wandb(logger: WandbLogger, results: dict[str, Any]) -> None:
    import wandb

    run = logger.experiment
    run.define_metric("snn/t")
    for name in CURVES:
        run.define_metric(name, step_metric="snn/t")
    for row in curves_over_t(results):
        run.log(row)
    rates = wandb.Table(
        columns=["layer", "firing_rate"],
        data=[[k, v] for k, v in results["snn"]["firing_rates"].items()],
    )
    run.log({
        "snn/firing_rates": rates,
        "snn/firing_rates_chart": wandb.plot.bar(
            rates, "layer", "firing_rate", title="Firing rate per layer (spikes/neuron/step)"
        ),
    })
    run.summary.update(summary_scalars(results))
