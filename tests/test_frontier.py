"""The trade-off helpers: first t within a tolerance of the ANN, and the Pareto front."""

import pytest

from burstsnn.measure.frontier import pareto_front, t_within


@pytest.mark.parametrize(
    ("curve", "ann", "expected"),
    [
        ([0.10, 0.85, 0.905, 0.93], 0.92, 4),   # 90.5 % is 1.5 points below 92 %: not yet
        ([0.10, 0.911, 0.95], 0.92, 2),          # 0.9 points below: within
        ([0.10, 0.91, 0.95], 0.92, 2),           # exactly 1 point below counts (float rounding aside)
        ([0.10, 0.50, 0.90], 0.92, None),        # never within 1 point
        ([0.95, 0.10], 0.92, 1),                 # the first t, even if accuracy drops later
    ],
)
def test_t_within_1pt_on_hand_made_curves(curve, ann, expected):
    assert t_within(curve, ann, points=1.0) == expected


def test_pareto_front_by_hand():
    # (accuracy, energy): b beats a (more accurate, cheaper); d is dominated by c (same energy,
    # less accurate); e is the most accurate; f repeats c exactly.
    points = [(0.80, 0.50), (0.85, 0.40), (0.90, 0.60), (0.88, 0.60), (0.95, 1.20), (0.90, 0.60),
              (0.10, 0.01)]
    assert pareto_front(points) == [6, 1, 2, 4]
    assert pareto_front([]) == []
    assert pareto_front([(0.5, 1.0)]) == [0]
