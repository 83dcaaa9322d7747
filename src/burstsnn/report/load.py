"""Reading a sweep: every results.json under a folder, checked for the fields the report reads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS = "results.json"


class ReportError(ValueError):
    """A sweep that cannot be reported (no results, a malformed file): one line for the user."""


def _natural_key(path: Path) -> list[Any]:
    """Sort job dirs 0, 1, 2, ..., 10 rather than 0, 1, 10, 2."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in path.parts]


def _require(result: Any, file: Path, *keys: str) -> Any:
    node = result
    for depth, key in enumerate(keys):
        if not isinstance(node, dict) or key not in node:
            raise ReportError(f"malformed {file}: no {'.'.join(keys[:depth + 1])}")
        node = node[key]
    return node


def _check(result: Any, file: Path) -> None:
    for keys in (("config", "model", "name"), ("config", "data", "name"), ("ann", "test_acc")):
        _require(result, file, *keys)
    T = _require(result, file, "snn", "T")
    curve = _require(result, file, "snn", "acc_over_t")
    if not isinstance(T, int) or T < 1 or not isinstance(curve, list) or len(curve) != T:
        raise ReportError(f"malformed {file}: snn.acc_over_t must list snn.T = {T!r} accuracies")


def load_results(sweep_dir: Path | str) -> list[dict[str, Any]]:
    """Every results.json under `sweep_dir` (any depth), each with its file in "path"."""
    root = Path(sweep_dir)
    if not root.is_dir():
        raise ReportError(f"{root} is not a directory")
    files = sorted(root.glob(f"**/{RESULTS}"), key=_natural_key)
    if not files:
        raise ReportError(f"no {RESULTS} found under {root}")
    results = []
    for file in files:
        try:
            result = json.loads(file.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ReportError(f"malformed {file}: {error}") from None
        _check(result, file)
        results.append({**result, "path": str(file)})
    return results


def jobs_without_results(sweep_dir: Path | str) -> list[Path]:
    """Hydra job folders under `sweep_dir` (those with a `.hydra/` folder) that hold no
    results.json: jobs that failed (a search's failed trials) or have not finished."""
    jobs = (hydra.parent for hydra in Path(sweep_dir).glob("**/.hydra"))
    return sorted((job for job in jobs if not (job / RESULTS).exists()), key=_natural_key)


def energy_over_t(run: dict[str, Any]) -> list[float | None]:
    """The run's SNN/ANN energy ratio had it stopped at t = 1..T; results written before
    energy_over_t existed only know it at their own T (None elsewhere)."""
    snn = run["snn"]
    if snn.get("energy_over_t"):
        return snn["energy_over_t"]
    return [None] * (snn["T"] - 1) + [(snn.get("energy") or {}).get("energy_ratio")]
