"""burstsnn.report on fake sweeps: cells, row names, varied knobs, paper numbers, CSV, PNGs, CLI."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from burstsnn.report import ReportError, build_table, load_results, write_report
from burstsnn.report.output import to_csv, to_markdown
from burstsnn.report.paper import PAPER_ACC, PAPER_ANN
from burstsnn.report.points import frontier
from burstsnn.report.rows import varied_knobs
from results_fixtures import TABLE1_ROWS, fake_result, write_fake_sweep, write_results

PNG_HEADER = b"\x89PNG\r\n\x1a\n"
PAPER_TABLE = Path(__file__).parent / "data" / "paper_table1.txt"  # verbatim from the paper


def paper_table1() -> tuple[dict[str, float], dict[str, tuple[float, ...]]]:
    """(ANN accuracy per model, row -> VGG16 T=16, T=32, ResNet20 T=16, T=32), parsed from the
    paper's text: markup stripped, "Burst ( $\\Gamma = 2$ )" read as "Burst (Γ=2)"."""
    lines = [line for line in PAPER_TABLE.read_text().splitlines() if line and not line.startswith("#")]
    header = lines[0].split("\t")
    ann = {"vgg16": float(re.search(r"\(([\d.]+)\)", header[1])[1]),
           "resnet20": float(re.search(r"\(([\d.]+)\)", header[3])[1])}
    rows = {}
    for line in lines[2:]:
        if line.startswith("Table 1"):
            break
        cells = [re.sub(r"<[^>]+>", "", cell) for cell in line.split("\t")]
        name = re.sub(r"\s*\$?\\Gamma = (\d)\$?\s*", r"Γ=\1", cells[0])
        rows[name] = tuple(float(cell) for cell in cells[1:5])
    return ann, rows


TABLE1_LABELS = [
    f"{name}, θ = {theta}{' (= λ)' if theta == 'λ/Γ' and 'Burst' not in name else ''}"
    for name in paper_table1()[1] for theta in ("λ", "λ/Γ")
]


def test_paper_numbers_are_table1() -> None:
    ann, rows = paper_table1()
    assert list(rows) == ["Max-norm", "p-Norm", "LIPooling", "Burst (Γ=2)", "Burst (Γ=5)"]
    assert PAPER_ANN == ann
    assert PAPER_ACC == {
        name: {"vgg16": {16: v16, 32: v32}, "resnet20": {16: r16, 32: r32}}
        for name, (v16, v32, r16, r32) in rows.items()
    }


@pytest.fixture
def table1_sweep(tmp_path: Path) -> Path:
    return write_fake_sweep(tmp_path / "sweep")


def test_cells_read_acc_over_t_at_T(table1_sweep: Path) -> None:
    results = load_results(table1_sweep)
    table = build_table(results)
    assert table.Ts == [16, 32] and table.models == ["vgg16", "resnet20"]
    run = next(r for r in results if r["config"]["gamma"] == 2 and r["config"]["theta_scale"] == 1
               and r["config"]["model"]["name"] == "resnet20")
    curve = run["snn"]["acc_over_t"]
    cell16 = table.cell("Burst (Γ=2), θ = λ", "resnet20", 16)
    cell32 = table.cell("Burst (Γ=2), θ = λ", "resnet20", 32)
    assert cell16.acc == pytest.approx(100 * curve[15]) and cell32.acc == pytest.approx(100 * curve[31])
    assert cell16.best_acc == pytest.approx(100 * max(curve[:16]))
    assert curve[cell16.best_t - 1] == max(curve[:16])
    assert cell16.run["path"] == run["path"] and cell32.run["path"] == run["path"]
    # Energy had the run stopped at T: at 16 from the curve over t, at 32 the run's own.
    assert cell16.energy_ratio == run["snn"]["energy_over_t"][15]
    assert cell32.energy_ratio == run["snn"]["energy"]["energy_ratio"]
    assert cell16.ann_acc == pytest.approx(92.5)


def test_table1_rows_get_the_papers_names(table1_sweep: Path) -> None:
    table = build_table(load_results(table1_sweep))
    assert [row.label for row in table.rows] == TABLE1_LABELS
    assert table.varied == ["p", "gamma", "pooling", "theta_scale"]
    assert table.model_header("vgg16") == "VGG16 (ANN 91.50 %)"


def test_markdown_has_paper_numbers_and_names_the_data_set(table1_sweep: Path) -> None:
    text = to_markdown(build_table(load_results(table1_sweep)))
    assert "## Table 1 — Fashion-MNIST" in text and "VGG16 (ANN 91.50 %) T=16" in text
    assert "paper (CIFAR100) VGG16 (ANN 78.49 %) T=32" in text
    assert "paper (CIFAR100) ResNet20 (ANN 80.69 %) T=16" in text
    burst5 = next(line for line in text.splitlines() if line.startswith("| Burst (Γ=5), θ = λ/Γ |"))
    assert burst5.endswith("| 57.21 | 71.41 | 58.10 | 76.30 |")
    assert "best acc over t≤16" in text and "energy ratio" in text
    assert "Our data set: Fashion-MNIST" in text and "same threshold" in text


def test_varied_knobs_of_a_gamma_by_T_sweep(tmp_path: Path) -> None:
    sweep = write_results(tmp_path, [fake_result(gamma=g, T=T) for g in (1, 2, 3) for T in (8, 16)])
    results = load_results(sweep)
    assert varied_knobs(results) == ["gamma"]
    table = build_table(results)
    assert table.Ts == [8, 16] and table.models == ["vgg16"]
    assert [row.label for row in table.rows] == ["LIPooling", "Burst (Γ=2)", "Γ=3"]
    run8 = next(r for r in results if r["config"]["gamma"] == 3 and r["snn"]["T"] == 8)
    cell = table.cell("Γ=3", "vgg16", 8)
    assert cell.run["path"] == run8["path"] and cell.acc == pytest.approx(100 * run8["snn"]["acc_over_t"][7])
    assert table.cell("Γ=3", "vgg16", 16).run["snn"]["T"] == 16
    assert "Every row uses θ = λ/Γ." in table.notes


def test_model_derived_keys_are_not_knobs_but_width_is(tmp_path: Path) -> None:
    runs = [fake_result(model=m, **{"model.width": w, "model.image_size": 28 if m == "resnet20" else 32})
            for m in ("vgg16", "resnet20") for w in (0.25, 0.5)]
    table = build_table(load_results(write_results(tmp_path, runs)))
    assert table.varied == ["model.width"]
    assert [row.label for row in table.rows] == ["Burst (Γ=5), model.width=0.25", "Burst (Γ=5), model.width=0.5"]


def test_explicit_Ts_and_out_of_range(table1_sweep: Path) -> None:
    results = load_results(table1_sweep)
    assert build_table(results, [8]).Ts == [8]
    with pytest.raises(ReportError, match="T=64 is out of range"):
        build_table(results, [16, 64])


def test_write_report_files(table1_sweep: Path, tmp_path: Path) -> None:
    written = write_report(table1_sweep, tmp_path / "out")
    assert sorted(written) == ["acc_over_t.png", "firing_rates.png", "frontier.csv", "frontier.png",
                               "pooling_ratio.png", "table1.csv", "table1.md"]
    for name, path in written.items():
        assert path.parent == tmp_path / "out" and path.stat().st_size > 0
        if name.endswith(".png"):
            assert path.read_bytes()[:8] == PNG_HEADER
    lines = list(csv.DictReader(written["table1.csv"].open(encoding="utf-8")))
    assert len(lines) == 10 * 2 * 2  # rows × models × T
    line = next(row for row in lines if row["row"] == "Max-norm, θ = λ" and row["model"] == "resnet20"
                and row["T"] == "16")
    result = json.loads(Path(line["results"]).read_text())
    assert float(line["acc_pct"]) == pytest.approx(100 * result["snn"]["acc_over_t"][15])
    assert line["paper_cifar100_acc_pct"] == "3.16" and line["ann_acc_pct"] == "92.5"
    assert (line["p"], line["gamma"], line["pooling"], line["theta_scale"], line["run_T"]) == (
        "100.0", "1", "spikemax", "1", "32")
    assert not list((tmp_path / "out").glob(".*.tmp"))


def test_latency_to_1pt_loss_and_its_energy(tmp_path: Path) -> None:
    # A hand-made curve: ANN 92 %, within 1 point from t = 3 (91.2 %), energy 0.1 per step.
    result = fake_result(T=5)
    result["ann"]["test_acc"] = 0.92
    result["snn"]["acc_over_t"] = [0.10, 0.80, 0.912, 0.90, 0.92]
    result["snn"]["energy_over_t"] = [0.1, 0.2, 0.3, 0.4, 0.5]
    result["snn"]["agreement_over_t"] = [0.1, 0.7, 0.95, 0.9, 0.975]
    sweep = write_results(tmp_path / "sweep", [result, fake_result(T=5, gamma=1)])
    table = build_table(load_results(sweep))
    cell = table.cell("Burst (Γ=5)", "vgg16", 5)
    assert (cell.t_within_1pt, cell.energy_within_1pt, cell.energy_ratio) == (3, 0.3, 0.5)
    text = to_markdown(table)
    assert "VGG16 T to ≤ 1 pt loss (energy ratio)" in text
    line = next(line for line in text.splitlines() if line.startswith("| Burst (Γ=5) |") and "(t=" in line)
    assert "VGG16 agreement with ANN (%) at T=5" in text
    assert line.endswith("| 0.500 | 97.50 | 3 (0.300) |")
    row = next(r for r in csv.DictReader(io.StringIO(to_csv(table))) if r["row"] == "Burst (Γ=5)")
    assert (row["t_within_1pt"], row["energy_ratio_within_1pt"], row["agreement_pct"]) == ("3", "0.3", "97.5")


def test_frontier_is_the_non_dominated_operating_points(table1_sweep: Path, tmp_path: Path) -> None:
    results = load_results(table1_sweep)
    table = build_table(results)
    for model in table.models:
        points = [(100 * a, e) for r in results if r["config"]["model"]["name"] == model
                  for a, e in zip(r["snn"]["acc_over_t"], r["snn"]["energy_over_t"])]
        front = frontier(table, model)
        assert front and [p.energy_ratio for p in front] == sorted(p.energy_ratio for p in front)
        for p in front:  # no point of any run is at least as accurate for less energy
            assert not any(a >= p.acc and e < p.energy_ratio for a, e in points)
        for a, e in points:  # every point is matched or beaten by a front point
            assert any(p.acc >= a and p.energy_ratio <= e for p in front)
    written = write_report(table1_sweep, tmp_path / "out")
    lines = list(csv.DictReader(written["frontier.csv"].open(encoding="utf-8")))
    assert len(lines) == sum(len(frontier(table, m)) for m in table.models)
    first = lines[0]
    assert first["rerun"].startswith("python run.py model=") and first["rerun"].endswith(f"T={first['t']}")


def test_results_without_energy_over_t_still_report(tmp_path: Path) -> None:
    old = fake_result(T=32)
    del old["snn"]["energy_over_t"], old["snn"]["t_within_1pt"]
    table = build_table(load_results(write_results(tmp_path / "sweep", [old])))
    assert table.cell("Burst (Γ=5)", "vgg16", 16).energy_ratio is None
    assert table.cell("Burst (Γ=5)", "vgg16", 32).energy_ratio == old["snn"]["energy"]["energy_ratio"]
    assert [p.t for p in frontier(table, "vgg16")] == [32]


def test_no_pools_skips_the_pooling_figure(tmp_path: Path) -> None:
    sweep = write_results(tmp_path / "sweep", [fake_result(pooling="avg", gamma=g) for g in (1, 2)])
    written = write_report(sweep)
    assert "pooling_ratio.png" not in written and written["table1.md"].parent == sweep
    assert "pooling_ratio.png is not drawn" in written["table1.md"].read_text(encoding="utf-8")


def test_single_run_dir(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text(json.dumps(fake_result(T=8)))
    table = build_table(load_results(tmp_path))
    assert table.Ts == [8] and [row.label for row in table.rows] == ["Burst (Γ=5)"]


def test_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="no results.json found under"):
        load_results(tmp_path)
    bad = tmp_path / "3" / "results.json"
    bad.parent.mkdir()
    bad.write_text("{not json")
    with pytest.raises(ReportError, match=f"malformed {bad}"):
        load_results(tmp_path)
    bad.write_text(json.dumps({"config": {"model": {"name": "vgg16"}, "data": {"name": "mnist"}},
                               "ann": {"test_acc": 0.9}}))
    with pytest.raises(ReportError, match=f"malformed {bad}: no snn$"):
        load_results(tmp_path)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "burstsnn.report", *args],
                          capture_output=True, text=True, timeout=120)


def test_cli(table1_sweep: Path, tmp_path: Path) -> None:
    done = _cli(str(table1_sweep), "--out", str(tmp_path / "out"), "--T", "16", "32")
    assert done.returncode == 0, done.stderr
    assert "| Burst (Γ=5), θ = λ/Γ |" in done.stdout
    assert f"wrote {tmp_path / 'out' / 'table1.csv'}" in done.stdout
    assert (tmp_path / "out" / "acc_over_t.png").exists()


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    done = _cli(str(tmp_path))
    assert done.returncode == 1
    assert done.stderr.strip() == f"report: no results.json found under {tmp_path}"


def test_skip_done_is_not_a_row_knob(tmp_path: Path) -> None:
    """A sweep resumed with skip_done=true tabulates like one run (same rows)."""
    sweep = write_fake_sweep(tmp_path / "sweep")
    first = json.loads((sweep / "0" / "results.json").read_text())
    first["config"]["skip_done"] = True
    (sweep / "0" / "results.json").write_text(json.dumps(first))
    assert "skip_done" not in varied_knobs(load_results(sweep))


def test_our_lowlatency_preset_gets_its_title(tmp_path: Path) -> None:
    # Γ=5, p=99.9 and LIPool are also the paper's Burst (Γ=5) row: the preset's title wins, and
    # the row carries no paper numbers. A named row lists only the knobs that tell rows of its
    # name apart (here none: one row each).
    lowlatency = fake_result(T=2, gamma=5, v_init=0.5, method="lowlatency")
    table = build_table(load_results(write_results(tmp_path / "sweep", [fake_result(T=32), lowlatency])))
    assert [row.label for row in table.rows] == ["Burst (Γ=5)", "Low latency (ours)"]
    assert [row.paper_name for row in table.rows] == ["Burst (Γ=5)", None]
    assert table.Ts == [2, 16, 32] and table.cell("Low latency (ours)", "vgg16", 16) is None


@pytest.mark.parametrize("knob", [{"v_init": 0.5}, {"reset": "hard"}, {"lambda_rule": "mse"}, {"channel_wise": True},
                                  {"bias_correction": True}, {"calib_batches": 4}, {"theta_scale": 0.5}])
def test_a_run_differing_from_a_paper_row_in_any_conversion_knob_is_not_named_after_it(
        tmp_path: Path, knob: dict) -> None:
    # p = 99.9, LIPool and Γ = 5 are the paper's Burst (Γ=5) row; one other knob differs.
    table = build_table(load_results(write_results(tmp_path / "sweep", [fake_result(T=32), fake_result(T=32, **knob)])))
    names = {row.label: row.paper_name for row in table.rows}
    assert list(names.values()).count("Burst (Γ=5)") == 1 and len(names) == 2
    other = next(label for label, name in names.items() if name is None)
    assert "Burst" not in other and str(next(iter(knob.values()))) in other


def test_named_rows_show_the_knobs_that_tell_them_apart(tmp_path: Path) -> None:
    runs = [fake_result(T=32, theta_scale=scale) for scale in ("1/gamma", 1.0)]
    for gamma in (8, 4):
        runs.append(fake_result(T=2, gamma=gamma, v_init=0.5, method="lowlatency"))
    table = build_table(load_results(write_results(tmp_path / "sweep", runs)))
    assert sorted(row.label for row in table.rows) == [
        "Burst (Γ=5), θ = λ", "Burst (Γ=5), θ = λ/Γ", "Low latency (ours), Γ=4", "Low latency (ours), Γ=8"]


def test_a_companion_sweep_in_a_sub_folder_adds_its_rows(tmp_path: Path) -> None:
    # experiment=table1 (θ = λ/Γ) with experiment=table1_as_written (θ = λ) run into a sub-folder.
    sweep = write_fake_sweep(tmp_path / "table1", theta_scales=("1/gamma",))
    write_fake_sweep(sweep / "as_written", rows=TABLE1_ROWS[3:], theta_scales=(1,))
    table = build_table(load_results(sweep))
    labels = [row.label for row in table.rows]
    assert labels.count("Burst (Γ=5), θ = λ") == labels.count("Burst (Γ=5), θ = λ/Γ") == 1
    assert len(labels) == 7 and table.cell("Burst (Γ=2), θ = λ", "resnet20", 32) is not None


def test_a_row_shorter_than_the_table_shows_its_own_energy_and_latency(tmp_path: Path) -> None:
    # The lowlatency row runs T = 2 beside T = 32 rows: its energy at T = 2 and its 1-point
    # latency must show, not "–" for want of a T = 32 run.
    lowlatency = fake_result(T=2, gamma=5, v_init=0.5, method="lowlatency")
    lowlatency["snn"]["acc_over_t"] = [0.90, 0.92]
    lowlatency["snn"]["energy_over_t"] = [0.14, 0.27]
    lowlatency["snn"]["agreement_over_t"] = [0.95, 0.9875]
    table = build_table(load_results(write_results(tmp_path / "sweep", [fake_result(T=32), lowlatency])))
    line = next(line for line in to_markdown(table).splitlines()
                if line.startswith("| Low latency (ours)") and "best" not in line and "(t=2)" in line)
    assert line.endswith("| 0.270 (T=2) | 98.75 (T=2) | 2 (0.270) |")


def test_runs_over_seeds_are_one_row_with_mean_and_sample_std(tmp_path: Path) -> None:
    # Three seeds of one row, hand-made curves (ANN 90, 92, 94 %: mean 92 %); accuracy at T = 3:
    # 60, 80, 90 % -> mean 76.67, sample std sqrt(((60-76.67)² + (80-76.67)² + (90-76.67)²) / 2) = 15.28.
    curves = {0: [0.10, 0.50, 0.60], 1: [0.30, 0.70, 0.80], 2: [0.20, 0.93, 0.90]}
    runs = []
    for seed, curve in curves.items():
        run = fake_result(T=3, seed=seed)
        run["ann"]["test_acc"] = 0.90 + 0.02 * seed
        run["snn"]["acc_over_t"] = curve
        run["snn"]["energy_over_t"] = [0.1 * (seed + 1) * t for t in (1, 2, 3)]
        run["snn"]["agreement_over_t"] = [0.5, 0.8, 0.9 + 0.03 * seed]
        runs.append(run)
    sweep = write_results(tmp_path / "sweep", [*runs, fake_result(T=3, gamma=1, seed=0)])
    table = build_table(load_results(sweep), [1, 2, 3])
    assert [row.label for row in table.rows] == ["LIPooling", "Burst (Γ=5)"]  # seed is no row knob
    cell = table.cell("Burst (Γ=5)", "vgg16", 3)
    assert cell.seeds == (0, 1, 2)
    assert cell.acc == pytest.approx(230 / 3) and cell.acc_std == pytest.approx(15.275252, abs=1e-5)
    # Mean curve over t: 20, 71, 76.67 %; its best is t = 3; ANN mean 92 %; energy mean 0.2·t.
    assert (cell.best_t, cell.best_acc, cell.ann_acc) == (3, pytest.approx(230 / 3), pytest.approx(92.0))
    assert cell.energy_ratio == pytest.approx(0.6) and cell.agreement == pytest.approx(93.0)
    assert table.cell("Burst (Γ=5)", "vgg16", 2).acc == pytest.approx(71.0)
    lipool = table.cell("LIPooling", "vgg16", 3)
    assert lipool.seeds == (0,) and lipool.acc_std is None
    text = to_markdown(table)
    # t = 1: 10, 30, 20 % (std 10); t = 2: 50, 70, 93 % (std sqrt((21² + 1² + 22²) / 2) = 21.52).
    assert "| Burst (Γ=5) | 20.00 ± 10.00 | 71.00 ± 21.52 | 76.67 ± 15.28 |" in text
    assert any(note.startswith("Runs that differ only in their seed (0, 1, 2) are one row") for note in table.notes)
    row = next(r for r in csv.DictReader(io.StringIO(to_csv(table))) if r["row"] == "Burst (Γ=5)" and r["T"] == "3")
    assert (row["seeds"], row["seed"], row["acc_std_pct"]) == ("3", "0 1 2", "15.2753")


def test_two_runs_with_the_same_seed_are_a_duplicate_not_a_repeat(tmp_path: Path) -> None:
    sweep = write_results(tmp_path / "sweep", [fake_result(T=4), fake_result(T=4)])
    table = build_table(load_results(sweep))
    assert table.cell("Burst (Γ=5)", "vgg16", 4).seeds == (0,)
    assert any(note.startswith("Several runs with the same seed share a cell") for note in table.notes)
