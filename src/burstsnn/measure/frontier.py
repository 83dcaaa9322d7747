"""The accuracy–latency–energy trade-off: when a run gets within a tolerance of its ANN, and
which operating points (a run stopped at step t) no other point beats.

Pure Python (no torch), so reports and sweepers can use it on results.json contents.
"""

from __future__ import annotations

from collections.abc import Sequence


def t_within(acc_over_t: Sequence[float], reference: float, points: float = 1.0) -> int | None:
    """The first t (1-based) whose accuracy is within ``points`` percentage points of
    ``reference`` (accuracies as fractions: acc(t) ≥ reference − points/100), or None."""
    floor = reference - points / 100 - 1e-12  # the epsilon absorbs float rounding of the difference
    for t, acc in enumerate(acc_over_t, start=1):
        if acc >= floor:
            return t
    return None


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the non-dominated (accuracy, energy) points, by increasing energy.

    A point is dominated when another has at least its accuracy at no more energy, and
    more accuracy or less energy. Of identical points the first is kept.
    """
    order = sorted(range(len(points)), key=lambda i: (points[i][1], -points[i][0], i))
    front: list[int] = []
    for i in order:
        if not front or points[i][0] > points[front[-1]][0]:
            front.append(i)
    return front
