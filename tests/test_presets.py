"""The method and experiment presets compose to the knobs they promise."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

from conftest import CONF


def composed(*overrides: str, with_hydra: bool = False):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=with_hydra)


# The paper's Table 1 rows (§4.2): Max-norm = p 100 with the spike max-pool, p-Norm = p 99.9 with
# it, LIPooling = p 99.9 with LIPool, then burst neurons Γ = 2 and 5 with LIPool.
@pytest.mark.parametrize(("method", "p", "pooling", "gamma"), [
    ("max_norm", 100, "spikemax", 1), ("p_norm", 99.9, "spikemax", 1), ("lipooling", 99.9, "lipool", 1),
    ("burst2", 99.9, "lipool", 2), ("burst5", 99.9, "lipool", 5),
])
def test_table1_rows_in_the_table1_preset(method: str, p: float, pooling: str, gamma: int) -> None:
    cfg = composed("experiment=table1", f"method={method}")
    assert (cfg.p, cfg.pooling, cfg.gamma, cfg.T) == (p, pooling, gamma, 32)


def test_table1_presets_sweep_the_rows_between_them() -> None:
    def swept(preset: str) -> dict[str, str]:
        return dict(composed(f"experiment={preset}", with_hydra=True).hydra.sweeper.params)

    table1, as_written = swept("table1"), swept("table1_as_written")
    assert table1["model"] == as_written["model"] == "vgg16,resnet20"
    assert table1["method"].split(",") == ["max_norm", "p_norm", "lipooling", "burst2", "burst5", "lowlatency"]
    assert as_written["method"].split(",") == ["burst2_as_written", "burst5_as_written"]
    for method in as_written["method"].split(","):
        cfg = composed("experiment=table1_as_written", f"method={method}")
        assert cfg.theta_scale == 1 and cfg.T == 32


def test_lowlatency_keeps_its_own_T_in_the_table1_preset() -> None:
    alone, in_table = composed("method=lowlatency"), composed("experiment=table1", "method=lowlatency")
    assert alone.T == in_table.T == 2
    assert alone.theta_scale == "1/gamma" and alone.v_init == 0.5 and alone.gamma > 1
    assert composed("method=lowlatency", "T=1").T == 1  # the command line still wins


def test_train_paper_is_the_default_training_with_pad4_crops() -> None:
    default, paper = composed(), composed("train=paper")
    assert default.data.name == "fashion_mnist" and default.data.crop_padding == 2
    assert paper.data.crop_padding == 4 and paper.train == default.train
    # The paper's recipe (§4.1): SGD 0.1, momentum 0.9, weight decay 5e-4, label smoothing 0.1.
    assert (paper.train.lr, paper.train.momentum, paper.train.weight_decay, paper.train.label_smoothing) == (
        0.1, 0.9, 5e-4, 0.1)
    assert composed("data=cifar10").data.crop_padding == 4
