"""One step: an ANN whose activations are QCFS (L levels, trained clip λ) converts to a burst SNN
(Γ = L, θ = λ/L, V(0) = θ/2, λ read from the clip: lambda_rule="trained") whose output
current at t = 1 is the quantised ANN's logits.

The reference evaluates the quantised ANN in this file, independently of the SNN code and of
the QCFS module: each activation is replaced by Bu et al.'s formula λ·clamp(⌊x·L/λ + ½⌋, 0, L)/L
written below. Each case also converts the same ANN with V(0) = 0, where the first step
floors instead of rounding: that SNN must miss the logits, so the check cannot pass whatever
the SNN computes. Max pools run as LIPool and as spike max-pool (both pass the window's
maximum at t = 1); the nets hold a residual add, an average pool and a classifier.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from burstsnn.activations import QCFS, activation
from burstsnn.ann.models import build_model
from burstsnn.conversion import convert
from burstsnn.errors import ConversionError
from burstsnn.experiment.job import JobContext, run_job
from conftest import ready

L = 4


class Quantised(nn.Module):
    """Bu et al.'s QCFS activation, as the paper writes it: λ·clamp(⌊x·L/λ + ½⌋, 0, L)/L."""

    def __init__(self, clip: torch.Tensor, levels: int) -> None:
        super().__init__()
        self.clip, self.levels = clip.detach().clone(), levels

    def forward(self, x):
        return self.clip * torch.clamp(torch.floor(x * self.levels / self.clip + 0.5), 0, self.levels) / self.levels


def reference(ann: nn.Module) -> nn.Module:
    """A copy of ``ann`` with every QCFS swapped for ``Quantised`` with λ = |clip|."""
    ref = copy.deepcopy(ann)
    for name, module in list(ref.named_modules()):
        if isinstance(module, QCFS):
            parent, _, attribute = name.rpartition(".")
            setattr(ref.get_submodule(parent) if parent else ref, attribute, Quantised(module.clip.abs(), module.levels))
    return ref.eval()


class TinyVGG(nn.Module):
    def __init__(self, act):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), act(8, True), nn.MaxPool2d(2),
            nn.Conv2d(8, 12, 3, padding=1), nn.BatchNorm2d(12), act(12, True), nn.MaxPool2d(3, 2, padding=1),
            nn.AvgPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(12 * 2 * 2, 16), act(16, False), nn.Linear(16, 10))

    def forward(self, x):
        return self.classifier(self.features(x))


class TinyResNet(nn.Module):
    def __init__(self, act):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), act(8, True))
        self.residual = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), act(8, True),
                                      nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8))
        self.after_add = act(8, True)
        self.head = nn.Sequential(nn.MaxPool2d(2), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 10))

    def forward(self, x):
        x = self.stem(x)
        return self.head(self.after_add(self.residual(x) + x))


def quantised(make, per_channel: bool) -> tuple[nn.Module, torch.Tensor]:
    """The net with QCFS of L levels, realistic BN statistics and clips drawn in ±[0.5, 2]
    (a negative clip stands for λ = |clip|)."""
    torch.manual_seed(0)
    x = torch.randn(6, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    ann = ready(make(activation("qcfs", L, per_channel)), x)
    with torch.no_grad():
        for module in ann.modules():
            if isinstance(module, QCFS):
                sign = torch.randint(0, 2, module.clip.shape).mul(2).sub(1)
                module.clip.uniform_(0.5, 2.0).mul_(sign)
    return ann, x


def first_step(ann: nn.Module, x: torch.Tensor, pooling: str, v_init: float) -> torch.Tensor:
    snn = convert(ann, [(x, None)], gamma=L, theta_scale=1 / L, v_init=v_init, lambda_rule="trained", pooling=pooling)
    return snn(x, 1)[0]


@pytest.mark.parametrize("pooling", ["lipool", "spikemax"])
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("make", [TinyVGG, TinyResNet], ids=["vgg", "resnet"])
def test_the_first_step_is_the_quantised_ann(make, per_channel: bool, pooling: str) -> None:
    ann, x = quantised(make, per_channel)
    with torch.no_grad():
        logits = reference(ann)(x)
        assert torch.allclose(ann(x), logits, atol=1e-5)  # the QCFS module computes the same
    tolerance = 1e-5 * float(logits.abs().max())
    assert torch.allclose(first_step(ann, x, pooling, v_init=0.5), logits, rtol=0, atol=tolerance)
    # V(0) = 0 (flooring, not rounding) misses the ANN: the comparison above can fail.
    assert (first_step(ann, x, pooling, v_init=0.0) - logits).abs().max() > 100 * tolerance


@pytest.mark.parametrize("name", ["vgg16", "resnet20"])
def test_the_papers_networks_with_qcfs_convert_exactly_at_t1(name: str) -> None:
    torch.manual_seed(0)
    x = torch.randn(4, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    ann = ready(build_model(name, 10, 1, width=0.125, act=activation("qcfs", L, per_channel=True)), x)
    with torch.no_grad():
        logits = reference(ann)(x)
    assert torch.allclose(first_step(ann, x, "lipool", 0.5), logits, rtol=0, atol=1e-5 * float(logits.abs().max()))


def test_the_trained_rule_needs_qcfs_activations() -> None:
    ann = TinyVGG(activation("relu")).eval()
    with pytest.raises(ConversionError, match="lambda_rule=trained reads λ from QCFS activations, but layer "):
        convert(ann, [(torch.rand(2, 3, 16, 16), None)], lambda_rule="trained")


def test_qcfs_trains_its_clip() -> None:
    """The floor passes gradients straight through; λ gets the gradient of the clipped outputs."""
    act = QCFS(L)
    x = torch.tensor([-1.0, 1.7, 2.6, 9.0], requires_grad=True)  # λ = 4, θ = 1: levels 0, 2, 3, 4
    act(x).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 0.0]  # between the clips: the identity; outside: 0
    assert act.clip.grad is not None and float(act.clip.grad) > 0  # the clipped input pulls λ up


@pytest.mark.parametrize("model", ["vgg16", "resnet20"])
def test_a_onestep_job_matches_its_ann_from_the_first_step(job_config, tmp_path, model: str) -> None:
    """experiment=onestep end to end: the trained QCFS ANN's test accuracy is the SNN's at t = 1,
    and every test image gets the ANN's class there."""
    results = run_job(job_config("experiment=onestep", f"model={model}", "train.limit_train_batches=3"),
                      JobContext(tmp_path / "job", method="onestep"))
    config = results["config"]
    assert config["model"]["activation"] == "qcfs" and config["gamma"] == config["model"]["levels"] == 8
    assert results["snn"]["T"] == 4 and results["method"] == "onestep"
    assert results["snn"]["agreement_over_t"][0] == 1.0
    assert results["snn"]["acc_over_t"][0] == results["ann"]["test_acc"]
