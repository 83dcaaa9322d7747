"""The one-screen console summary of a job (rich)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def calibration_line(cfg: dict[str, Any]) -> str:
    """How λ was set: rule, per layer or channel, bias correction, calibration batches (named
    only when something was calibrated on them)."""
    trained = cfg["lambda_rule"] == "trained"
    if trained:
        rule, per_channel = "the ANN's trained clips", cfg["model"]["clip_per_channel"]
    else:
        rule = f"p={cfg['p']} percentile" if cfg["lambda_rule"] == "percentile" else "least squared error"
        per_channel = cfg["channel_wise"]
    line = f"λ: {rule} {'per channel' if per_channel else 'per layer'}"
    if cfg["bias_correction"]:
        line += ", biases corrected"
    if trained and not cfg["bias_correction"]:  # nothing was calibrated on training batches
        return line
    batches = cfg["calib_batches"]
    return f"{line} ({batches} training batch{'es' if batches > 1 else ''})"


def print_summary(results: dict[str, Any], console: Console | None = None) -> None:
    """Print the ANN, the conversion settings and the SNN's accuracy/energy as one table."""
    cfg, ann, snn = results["config"], results["ann"], results["snn"]
    T = snn["T"]
    table = Table(title=f"burstsnn: {cfg['model']['name']} on {cfg['data']['name']}",
                  show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    origin = "trained" if ann["trained"] else "cached" if ann["key"] else "loaded"
    table.add_row("ANN", f"{100 * ann['test_acc']:.2f} % test accuracy ({origin}: {ann['checkpoint']})")
    table.add_row("conversion", f"Γ={cfg['gamma']}  pooling={cfg['pooling']}  "
                                f"reset={cfg['reset']}  v_init={cfg['v_init']}  "
                                f"θ={snn['theta_scale']:.3g}·λ ({cfg['theta_scale']})")
    table.add_row("calibration", calibration_line(cfg))
    marks = sorted({t for t in (8, 16, 32, 64, 128, 256) if t < T} | {T})
    table.add_row("SNN accuracy", "  ".join(
        f"t={t}: {100 * snn['acc_over_t'][t - 1]:.2f} %" for t in marks))
    table.add_row("best over t≤T", f"{100 * snn['best_acc']:.2f} % at t={snn['best_t']}")
    table.add_row("agrees with ANN", "  ".join(
        f"t={t}: {100 * snn['agreement_over_t'][t - 1]:.2f} %" for t in marks))
    table.add_row("conversion loss", f"{100 * snn['conversion_loss']:.2f} points at T={T}")
    t1 = snn["t_within_1pt"]
    table.add_row("within 1 pt of ANN", "not within T" if t1 is None else
                  f"from t={t1} (energy SNN/ANN = {snn['energy_over_t'][t1 - 1]:.3f} there)")
    rates = snn["firing_rates"].values()
    if rates:
        table.add_row("firing rate", f"{min(rates):.3f} … {max(rates):.3f} spikes/neuron/step "
                                     f"over {len(rates)} layers")
    if snn["pooling_correct_ratio"]:
        table.add_row("pooling correct", "  ".join(
            f"{k}: {v:.3f}" for k, v in snn["pooling_correct_ratio"].items()))
    energy = snn["energy"]
    mac_layers = len(energy["mac_layers"])
    table.add_row("energy", f"SNN/ANN = {energy['energy_ratio']:.3f} "
                            f"({energy['snn_energy_pj'] / 1e6:.2f} µJ vs "
                            f"{energy['ann_energy_pj'] / 1e6:.2f} µJ per image; MACs at every step in "
                            f"{mac_layers} layer{'s' if mac_layers != 1 else ''} fed by analog values)")
    timings = results["timings"]
    table.add_row("wall time", "  ".join(f"{k[:-2]} {v:.1f} s" for k, v in timings.items()))
    (console or Console()).print(table)
