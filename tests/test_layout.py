"""The package's layout (docs/architecture.md): one folder per station of the pipeline, and
imports that run down the flow only, with no cycle. Read from the source's own import
statements (every one, also those inside functions), not from what happens to be loaded."""

from __future__ import annotations

import ast
from pathlib import Path

import burstsnn

PACKAGE = Path(burstsnn.__file__).parent
# Modules at the bottom, which every station may use.
BASE = {"errors", "atomic", "rules", "graph_ops", "activations", "heap"}
# Station -> the stations it may import (besides itself and the base). The flow:
# config -> ANN -> conversion -> SNN -> metrics -> loggers -> report, where the conversion builds
# the SNN's modules and the measuring station reads the conversion's graph walk.
MAY_IMPORT = {
    "base": set(),
    "snn": set(),
    "ann": set(),
    "conversion": {"snn"},
    "measure": {"snn", "conversion"},
    "experiment": {"ann", "snn", "conversion", "measure", "face"},
    "report": {"measure"},
    "bench": {"ann", "snn", "conversion", "bench_job"},
    "bench_job": {"ann", "conversion", "experiment"},
    "face": {"conversion", "measure"},  # burstsnn/__init__.py re-exports the public API
}


def module_name(path: Path, package: Path) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def station(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "face"
    if parts[1] in BASE:
        return "base"
    return parts[1]


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The burstsnn modules that the file at ``path`` imports (a name imported from a package
    counts as its submodule where one exists, else as the package)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "burstsnn"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "burstsnn":
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in modules else node.module)
    return found


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> the burstsnn modules it imports, for every module under ``package``."""
    files = {module_name(path, package): path for path in package.rglob("*.py") if path.name != "__main__.py"}
    return {module: imports_of(path, set(files)) - {module} for module, path in files.items()}


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every import of a station that ``MAY_IMPORT`` does not allow, or from an unknown station."""
    return [f"{m} ({station(m)}) imports {i} ({station(i)})" for m, targets in graph.items() for i in targets
            if station(m) not in MAY_IMPORT or station(i) not in {station(m), "base"} | MAY_IMPORT[station(m)]]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles found by a depth-first walk (each as the modules around it)."""
    found, done = [], set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            found.append(path[path.index(module):] + [module])
            return
        if module in done:
            return
        for target in sorted(graph.get(module, ())):
            visit(target, path + [module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
    return found


def test_every_import_runs_down_the_flow() -> None:
    graph = import_graph()
    assert {station(m) for m in graph} == set(MAY_IMPORT)
    assert upward_imports(graph) == []


def test_the_import_graph_has_no_cycle() -> None:
    assert cycles(import_graph()) == []


def test_an_upward_import_or_a_cycle_would_be_caught(tmp_path: Path) -> None:
    """The same checks on a fake package where snn imports measure and measure imports snn."""
    fake = tmp_path / "burstsnn"
    for folder, text in {"snn": "from burstsnn.measure.metrics import SNNMetrics\n",
                         "measure": "from burstsnn.snn.network import SpikingNetwork\n"}.items():
        (fake / folder).mkdir(parents=True)
        (fake / folder / "__init__.py").write_text("")
    (fake / "__init__.py").write_text("")
    (fake / "snn" / "network.py").write_text("import torch\nfrom burstsnn.measure.metrics import SNNMetrics\n")
    (fake / "measure" / "metrics.py").write_text("def f():\n    from burstsnn.snn.network import X\n")
    graph = import_graph(fake)
    assert upward_imports(graph) == ["burstsnn.snn.network (snn) imports burstsnn.measure.metrics (measure)"]
    assert cycles(graph) == [["burstsnn.measure.metrics", "burstsnn.snn.network", "burstsnn.measure.metrics"]]


def test_the_public_api_keeps_its_names() -> None:
    from burstsnn import convert, energy_report, fold_bn
    from burstsnn.conversion import convert as convert_here
    from burstsnn.measure.energy import energy_report as report_here
    from burstsnn.snn.neurons import BurstNeuron  # noqa: F401
    from burstsnn.snn.pooling import LIPool, SpikeMaxPool  # noqa: F401

    assert convert is convert_here and energy_report is report_here and callable(fold_bn)
