"""The calibration pass is recorded once per ANN and calibration images: conversions that differ
only in their knobs (frontier trials) reuse it; other weights or images record again."""

import torch
from torch import nn

from burstsnn.conversion import recording
from burstsnn.conversion.convert import convert
from burstsnn.conversion.recording import record
from conftest import SmallCNN, ready


def counted(monkeypatch) -> list[int]:
    """Counts the ANN passes of ``record`` (calls of its forward hook on the first layer)."""
    recording.forget()  # nothing kept from an earlier test
    calls = [0]
    original = recording._Hook.__call__

    def hook(self, module, args, output):
        calls[0] += 1
        return original(self, module, args, output)

    monkeypatch.setattr(recording._Hook, "__call__", hook)
    return calls


def test_a_second_conversion_with_other_knobs_reuses_the_recording(monkeypatch):
    x = torch.randn(16, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    ann = ready(SmallCNN(), x)
    calls = counted(monkeypatch)
    first = convert(ann, [(x, None)], gamma=2)
    passes = calls[0]
    assert passes > 0
    second = convert(ann, [(x, None)], gamma=5, theta_scale="1/gamma", lambda_rule="mse", channel_wise=True,
                     bias_correction=True, v_init=0.5)
    assert calls[0] == passes  # no ANN pass this time
    # ... and the recording it reused is the one a fresh pass would give.
    recording.forget()
    fresh = convert(ann, [(x, None)], gamma=5, theta_scale="1/gamma", lambda_rule="mse", channel_wise=True,
                    bias_correction=True, v_init=0.5)
    assert calls[0] == 2 * passes
    for (name, a), (_, b) in zip(second.net.state_dict().items(), fresh.net.state_dict().items()):
        assert torch.equal(a, b), name
    assert not torch.equal(first.thresholds()["features.2"], second.thresholds()["features.2"])


def test_other_weights_or_images_record_again():
    x = torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    ann = ready(SmallCNN(), x).eval()
    layers = ["features.2"]
    base = record(ann, [(x, None)], layers)
    assert record(ann, [(x, None)], layers) is base
    assert record(ann, [(x.clone(), None)], layers) is base  # equal content, not identity
    other_images = x.clone()
    other_images[0, 0, 0, 0] += 1.0
    assert record(ann, [(other_images, None)], layers) is not base
    changed = ready(SmallCNN(), x).eval()
    changed.load_state_dict(ann.state_dict())
    with torch.no_grad():
        changed.features[0].weight[0, 0, 0, 0] += 1e-3
    again = record(changed, [(x, None)], layers)
    assert again is not base
    assert not torch.equal(again.outputs["features.2"], base.outputs["features.2"])
    assert record(changed, [(x, None)], layers, calib_batches=1) is again
    assert record(changed, [(x, None), (x, None)], layers, calib_batches=2) is not again


def test_a_recording_over_the_memory_bound_is_not_kept(monkeypatch):
    monkeypatch.setattr(recording, "MEMO_BYTES", 0)
    x = torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    ann = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()).eval()
    assert record(ann, [(x, None)], ["1"]) is not record(ann, [(x, None)], ["1"])


def test_lambda_rules_read_rows_kept_with_the_recording_and_give_a_fresh_conversions_thresholds():
    x = torch.randn(16, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    ann = ready(SmallCNN(), x)
    trials = [{"p": 99.0}, {"p": 99.7, "channel_wise": True}, {"lambda_rule": "mse", "gamma": 3},
              {"lambda_rule": "mse", "gamma": 5, "channel_wise": True, "v_init": 0.5, "theta_scale": "1/gamma"},
              {"p": 98.5, "channel_wise": True}, {"lambda_rule": "mse", "gamma": 2, "channel_wise": True}]
    recording.forget()
    reused = [convert(ann, [(x, None)], **knobs).thresholds() for knobs in trials]
    kept = recording._last[1]  # the recording every conversion above read
    assert {key[:1] + key[2:] for key in kept.derived} == {  # each rule's rows were kept and read
        ("sorted", False), ("sorted", True), ("mse", False), ("mse", True)}
    for knobs, thresholds in zip(trials, reused):
        recording.forget()
        fresh = convert(ann, [(x, None)], **knobs).thresholds()
        for name in fresh:
            assert torch.equal(thresholds[name], fresh[name]), (knobs, name)
