"""The SNN's test pass: the ANN's predictions for the agreement, kept across evaluators of the
same ANN (a search's trials) and run again for anything else."""

from __future__ import annotations

import torch
from torch import nn

from burstsnn.conversion.convert import convert
from burstsnn.measure import evaluate
from burstsnn.measure.evaluate import SNNEvaluator


def counting_ann() -> tuple[nn.Module, list[int]]:
    torch.manual_seed(0)
    ann = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).eval()
    calls = [0]
    ann.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return ann, calls


def test_an_evaluator_with_the_same_ann_key_reads_the_kept_predictions_for_the_same_images(monkeypatch):
    monkeypatch.setattr(evaluate, "_kept_predictions", {})
    ann, calls = counting_ann()
    x = torch.rand(8, 1, 6, 6, generator=torch.Generator().manual_seed(1))
    snn = convert(ann, [(x, None)], gamma=2)
    direct = ann(x).argmax(-1)
    calls[0] = 0

    def predictions(key, images):
        return SNNEvaluator(snn, ann, 2, (1, 6, 6), ann_key=key).ann_predictions(images)

    first = predictions("net-a", x)
    assert calls[0] == 1 and torch.equal(first, direct)
    assert torch.equal(predictions("net-a", x.clone()), direct) and calls[0] == 1  # same bytes: kept
    changed = x.clone()
    changed[3, 0, 2, 2] += 0.5
    assert torch.equal(predictions("net-a", changed), ann(changed).argmax(-1)) and calls[0] == 3
    predictions("net-b", x)  # another ANN
    predictions(None, x)  # no key: nothing kept, nothing read
    predictions(None, x)
    assert calls[0] == 6


def test_kept_predictions_are_bounded(monkeypatch):
    monkeypatch.setattr(evaluate, "_kept_predictions", {})
    monkeypatch.setattr(evaluate, "KEPT_BATCHES", 2)
    ann, calls = counting_ann()
    batches = [torch.rand(4, 1, 6, 6, generator=torch.Generator().manual_seed(s)) for s in range(3)]
    snn = convert(ann, [(batches[0], None)], gamma=2)
    evaluator = SNNEvaluator(snn, ann, 2, (1, 6, 6), ann_key="net")
    for x in batches:
        evaluator.ann_predictions(x)
    assert len(evaluate._kept_predictions) == 2
    calls[0] = 0
    evaluator.ann_predictions(batches[2])  # kept
    evaluator.ann_predictions(batches[0])  # the oldest went
    assert calls[0] == 1
