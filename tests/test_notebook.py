"""notebooks/table1.ipynb runs end to end on a fake sweep and shows the table and the figures."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

from results_fixtures import write_fake_sweep

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "table1.ipynb"


def kernel_manager(spec_root: Path) -> KernelManager:
    """A kernel on this interpreter (sys.executable), from a kernel spec in `spec_root`: no install."""
    spec_dir = spec_root / "kernels" / "burstsnn-test"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "burstsnn test", "language": "python"}))
    specs = KernelSpecManager(kernel_dirs=[str(spec_root / "kernels")])
    return KernelManager(kernel_name="burstsnn-test", kernel_spec_manager=specs)


def test_outputs_are_stripped() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(not cell.outputs and cell.execution_count is None for cell in code)


@pytest.mark.slow
def test_notebook_shows_table_and_figures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    sweep = write_fake_sweep(tmp_path / "sweep")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    parameters = next(cell for cell in nb.cells if "parameters" in cell.metadata.get("tags", []))
    parameters.source = f"sweep_dir = {str(sweep)!r}\nout_dir = {str(tmp_path / 'out')!r}\nTs = [16, 32]"
    client = NotebookClient(nb, km=kernel_manager(tmp_path), timeout=120,
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    client.execute()  # raises CellExecutionError on the first failing cell
    outputs = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    markdown = [out.data["text/markdown"] for out in outputs if "text/markdown" in out.get("data", {})]
    assert any("## Table 1 — Fashion-MNIST" in text and "| Burst (Γ=5), θ = λ/Γ |" in text for text in markdown)
    assert sum("image/png" in out.get("data", {}) for out in outputs) == 4  # Fig. 5a–c and the frontier
    assert any("**Pareto front: accuracy vs energy**" in text and "| vgg16 |" in text for text in markdown)
    assert (tmp_path / "out" / "table1.csv").exists()
