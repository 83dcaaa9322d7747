"""The job's console summary names every conversion knob that changes the SNN."""

import re
from io import StringIO

from rich.console import Console

from burstsnn.experiment.summary import print_summary
from results_fixtures import fake_result


def summary_text(**knobs) -> str:
    console = Console(file=StringIO(), width=200)
    print_summary(fake_result(**knobs), console)
    return console.file.getvalue()


def test_summary_names_the_lambda_rule_and_its_calibration():
    default = summary_text(lambda_rule="percentile", bias_correction=False)
    assert "λ: p=99.9 percentile per layer (1 training batch)" in default
    lowlatency = summary_text(lambda_rule="mse", channel_wise=True, bias_correction=True, calib_batches=4)
    assert "λ: least squared error per channel, biases corrected (4 training batches)" in lowlatency
    assert "Γ=5  pooling=lipool" in lowlatency
    onestep = summary_text(lambda_rule="trained", gamma=4, **{"model.activation": "qcfs"})
    assert re.search(r"λ: the ANN's trained clips per layer\s*│", onestep)  # nothing calibrated: no batches
    per_channel = summary_text(lambda_rule="trained", channel_wise=True, bias_correction=True,
                               **{"model.activation": "qcfs", "model.clip_per_channel": True})
    assert "λ: the ANN's trained clips per channel, biases corrected (1 training batch)" in per_channel


def test_summary_shows_agreement_and_the_layers_that_cost_macs():
    result = fake_result(T=16)
    console = Console(file=StringIO(), width=200)
    print_summary(result, console)
    text = console.file.getvalue()
    agreement = result["snn"]["agreement_over_t"]
    assert re.search(rf"agrees with ANN\s*│\s*t=8: {100 * agreement[7]:.2f} %  t=16: {100 * agreement[15]:.2f} %", text)
    assert "MACs at every step in 1 layer fed by analog values" in text
