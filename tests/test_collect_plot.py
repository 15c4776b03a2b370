"""collect gathers records (train + eval) into one table; plot draws the figures and the papers' tables."""

from __future__ import annotations

import contextlib
import io
import json
import re
import runpy
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO, cli
from spatialprobe.errors import UserError
from spatialprobe.report.collect import collect_dirs, collect_wandb
from spatialprobe.report.figures import make_all
from spatialprobe.run.records import write_json_atomic

VGG_UNITS = 13


def fake_record(run_dir: Path, method: str, k: int, acc: float | None, *, seed: int = 0, params: int = 1000,
                status: str = "complete", unit: int | None = None, **config_extra) -> dict:
    """A result.json with the fields and layout train.py writes."""
    config = {"seed": seed, "k": k, "name": f"vgg16-cifar100-{method}-k{k}-s{seed}",
              "model": {"name": "vgg16", "arch": "vgg16_bn", "width": 1.0},
              "dataset": {"name": "cifar100", "augment": True, "root": "/data"},
              "method": {"name": method, "unit": unit, **config_extra.pop("method_cfg", {})},
              "recipe": {"lr": 0.1}, "paths": {"run_root": "runs"}}
    for key, value in config_extra.items():
        section, leaf = key.split("__")
        config[section][leaf] = value
    rec = {"status": status, "reason": None if status == "complete" else "RuntimeError: boom", "config_hash": "x",
           "attempts": 1, "model": "vgg16", "arch": "vgg16_bn", "dataset": "cifar100", "method": method, "k": k,
           "seed": seed, "params": params, "flops": params * 10, "units": VGG_UNITS, "receptive_field": 200 - 10 * k,
           "modified_units": list(range(VGG_UNITS - k, VGG_UNITS)), "feature_maps": [{"unit": 0}],
           "test_top1": acc, "test_top1_final": acc, "val_top1": acc, "config": config}
    write_json_atomic(run_dir / "result.json", rec)
    return rec


def test_collect_train_failed_and_eval_records(tmp_path):
    sweep = tmp_path / "sweeps" / "exp"
    fake_record(sweep / "k=0,method=spatial_shuffle", "spatial_shuffle", 0, 70.0)
    fake_record(sweep / "k=3,method=spatial_shuffle", "spatial_shuffle", 3, 69.5)
    fake_record(sweep / "k=3,method=channel_shuffle", "channel_shuffle", 3, None, status="failed")
    ev = {"ckpt": "x", "trained": {"model": "vgg16", "dataset": "cifar100", "method": "spatial_shuffle", "k": 3,
                                   "seed": 0}, "keep_method": False, "test_time_method": None, "passes": 1,
          "stochastic": False, "top1": [68.0], "top1_mean": 68.0, "top1_std": 0.0, "top5_mean": 90.0, "images": 100,
          "eval_seed": 1}
    write_json_atomic(sweep / "k=3,method=spatial_shuffle" / "checkpoints" / "eval-trained-off-k0-abc.json", ev)
    ev2 = {**ev, "trained": {**ev["trained"], "method": "spatial_shuffle", "k": 0}, "keep_method": True,
           "test_time_method": {"method": "channel_shuffle", "k": 4, "modified_units": [9, 10, 11, 12]},
           "passes": 3, "top1": [2.0, 1.0, 0.0], "top1_mean": 1.0, "top1_std": 1.0}
    write_json_atomic(sweep / "k=0,method=spatial_shuffle" / "checkpoints" / "eval-channel_shuffle-k4-def.json", ev2)
    (sweep / "stray").mkdir()
    (sweep / "stray" / "result.json").write_text("{torn")  # a torn file is ignored, not fatal

    df = collect_dirs([tmp_path / "sweeps"])
    assert len(df) == 5
    assert list(df.columns[:4]) == ["record", "status", "reason", "sweep"]
    train = df[df.record == "train"].set_index("run_dir")
    assert set(train.status) == {"complete", "failed"} and set(df.sweep) == {"exp"}
    failed = train[train.status == "failed"].iloc[0]
    assert failed.reason == "RuntimeError: boom" and failed.k == 3 and failed.method == "channel_shuffle"
    for col in ("params", "flops", "receptive_field", "test_top1", "config.model.width", "config.dataset.augment",
                "config.method.name", "modified_units"):
        assert col in df.columns, col
    assert "config" not in df.columns and "feature_maps" not in df.columns
    ev_rows = df[df.record == "eval"].set_index("test_method")
    off = ev_rows.loc["none"]  # trained with spatial shuffle, tested without
    assert off.train_method == "spatial_shuffle" and off.test_top1 == 68.0 and off["config.model.width"] == 1.0
    assert off.run_dir.endswith("k=3,method=spatial_shuffle") and off.params == 1000
    test_only = ev_rows.loc["channel_shuffle"]
    assert test_only.test_top1 == 1.0 and test_only.test_top1_std == 1.0 and test_only.test_k == 4


def test_collect_cli_writes_csv_and_rejects_empty_dirs(tmp_path):
    fake_record(tmp_path / "s" / "k=0", "none", 0, 70.0)
    out = tmp_path / "t.csv"
    p = cli("spatialprobe.collect", [str(tmp_path / "s"), "-o", str(out)])
    assert p.returncode == 0, p.stderr
    assert "1 rows (1 train complete)" in p.stdout and len(pd.read_csv(out)) == 1
    (tmp_path / "empty").mkdir()
    for args, needle in (([str(tmp_path / "empty")], "no result records"), ([str(tmp_path / "nope")], "no such directory"),
                         ([], "give sweep directories")):
        p = cli("spatialprobe.collect", args)
        assert p.returncode == 2 and p.stderr.startswith("spatialprobe: error: ") and needle in p.stderr, p.stderr
        assert len(p.stderr.strip().splitlines()) == 1


def test_collect_wandb_maps_runs_to_the_same_columns():
    class Run:
        def __init__(self, k, acc, state="finished"):
            self.summary = {"test_top1": acc, "params": 10, "flops": 100, "_step": 3}
            self.config = {"seed": 0, "k": k, "model": {"name": "vgg16", "width": 0.25}}
            self.tags = ["model:vgg16", "dataset:cifar10", "method:spatial_shuffle", f"k:{k}"]
            self.state, self.group, self.url, self.id = state, "demo", f"https://wandb/run{k}", f"id{k}"

    class Api:
        def runs(self, path, filters=None):
            assert path == "me/spatialprobe" and filters == {"group": "demo"}
            return [Run(0, 80.0), Run(3, 70.0, "crashed")]

    df = collect_wandb("me/spatialprobe", "demo", api=Api())
    assert list(df.k) == [0, 3] and list(df.status) == ["complete", "failed"]
    assert list(df.test_top1) == [80.0, 70.0] and set(df.sweep) == {"demo"} and "_step" not in df.columns
    assert df["config.model.width"].tolist() == [0.25, 0.25] and df.method.tolist() == ["spatial_shuffle"] * 2


def test_collect_wandb_through_the_command_line(tmp_path, monkeypatch):
    """``python -m spatialprobe.collect --wandb ENTITY/PROJECT --group G -o CSV`` against a fake
    ``wandb.Api``: the table it writes, and one line when W&B cannot be read."""
    import wandb

    class Run:
        def __init__(self, k, acc):
            self.summary = {"test_top1": acc, "params": 10 - k, "_runtime": 3.0}
            self.config = {"seed": 1, "k": k, "model": {"name": "vgg16", "width": 0.25}, "_wandb": {"x": 1}}
            self.tags = ["model:vgg16", "dataset:cifar10", "method:conv1x1", f"k:{k}", "mine"]
            self.state, self.group, self.url, self.id = "finished", "demo", f"https://wandb/run{k}", f"id{k}"

    asked = []

    class Api:
        def __init__(self, timeout=None):
            asked.append(("timeout", timeout))

        def runs(self, path, filters=None):
            asked.append((path, filters))
            if path == "me/offline":
                raise ConnectionError("no network")
            return [Run(0, 80.0), Run(2, 75.5)]

    monkeypatch.setattr(wandb, "Api", Api)
    out = tmp_path / "wb.csv"
    p = cli("spatialprobe.collect", ["--wandb", "me/spatialprobe", "--group", "demo", "-o", str(out)])
    assert p.returncode == 0, p.stderr
    assert ("me/spatialprobe", {"group": "demo"}) in asked
    assert p.stdout.strip() == f"2 rows (2 train complete) -> {out}"
    df = pd.read_csv(out)
    assert df.k.tolist() == [0, 2] and df.test_top1.tolist() == [80.0, 75.5] and df.params.tolist() == [10, 8]
    assert df.method.tolist() == ["conv1x1"] * 2 and df.seed.tolist() == [1, 1] and set(df.sweep) == {"demo"}
    assert df.run_dir.tolist() == ["https://wandb/run0", "https://wandb/run2"]
    assert "_runtime" not in df.columns and not any(c.startswith("config._wandb") for c in df.columns)
    # the table plots like one collected from run directories
    assert "compressed.csv" in {w.name for w in make_all(out, tmp_path / "fig")}
    p = cli("spatialprobe.collect", ["--wandb", "me/offline"])
    assert p.returncode == 2 and p.stderr.startswith("spatialprobe: error: cannot read the runs of W&B project "
                                                     "me/offline") and len(p.stderr.strip().splitlines()) == 1
    p = cli("spatialprobe.collect", ["--wandb", "me/x", str(tmp_path)])
    assert p.returncode == 2 and "one of the two" in p.stderr


def synthetic_table(tmp_path: Path) -> Path:
    """Two seeds; spatial shuffle stays within 1 point up to K=5; conv1x1 shrinks the network."""
    rows = []
    acc = {"spatial_shuffle": [70.0, 69.8, 69.5, 69.2, 69.1, 69.05, 60.0],
           "conv1x1": [70.0, 69.9, 69.4, 68.5, 66.0, 60.0, 50.0]}
    for seed, jitter in ((0, -0.1), (1, 0.1)):
        for method, accs in acc.items():
            for k, a in enumerate(accs):
                params = 34_000_000 - (2_000_000 * k if method == "conv1x1" else 0)
                rows.append({"record": "train", "status": "complete", "model": "vgg16", "dataset": "cifar100",
                             "method": method, "k": k, "seed": seed, "params": params, "flops": params * 3,
                             "units": 13, "receptive_field": 212 - 16 * k, "test_top1": a + jitter,
                             "config.seed": seed, "config.method.name": method, "config.k": k})
    rows.append({"record": "train", "status": "failed", "model": "vgg16", "dataset": "cifar100",
                 "method": "conv1x1", "k": 9, "seed": 0, "params": 1, "test_top1": None})
    path = tmp_path / "results.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_plot_writes_figures_and_the_papers_tables(tmp_path):
    table = synthetic_table(tmp_path)
    written = make_all(table, tmp_path / "fig", tolerance=1.0)
    names = {p.name for p in written}
    assert {"kcurve_vgg16_cifar100.png", "kcurve_vgg16_cifar100.pdf", "compressed.csv", "compressed.md",
            "best.csv", "best.md", "kcurve_table.csv"} <= names
    png = tmp_path / "fig" / "kcurve_vgg16_cifar100.png"
    assert png.read_bytes()[:4] == b"\x89PNG"  # what is drawn: test_plot_draws_*
    assert (tmp_path / "fig" / "kcurve_vgg16_cifar100.pdf").read_bytes()[:4] == b"%PDF"
    comp = pd.read_csv(tmp_path / "fig" / "compressed.csv").set_index("method")
    # within 1 point of the 70.0 baseline: spatial up to K=5 (69.05), conv1x1 up to K=2 (69.4; K=3 is 68.5)
    assert comp.loc["spatial_shuffle", "k"] == 5 and comp.loc["conv1x1", "k"] == 2
    assert comp.loc["conv1x1", "params"] == 30_000_000 and comp.loc["conv1x1", "seeds"] == 2
    assert comp.loc["conv1x1", "baseline"] == pytest.approx(70.0)
    assert comp.loc["spatial_shuffle", "k_percent"] == pytest.approx(38.5)
    best = pd.read_csv(tmp_path / "fig" / "best.csv").set_index("method")
    assert best.loc["spatial_shuffle", "k"] == 0 and best.loc["conv1x1", "acc"] == pytest.approx(70.0)
    md = (tmp_path / "fig" / "compressed.md").read_text()
    assert re.match(r"\| model +\| dataset +\|", md) and "30000000" in md and "nan" not in md
    curve = pd.read_csv(tmp_path / "fig" / "kcurve_table.csv")
    pt = curve[(curve.method == "conv1x1") & (curve.k == 3)].iloc[0]
    assert pt.acc == pytest.approx(68.5) and pt.acc_std == pytest.approx(0.1414, abs=1e-3) and pt.seeds == 2
    assert pt.delta == pytest.approx(-1.5) and pt.receptive_field == 212 - 48
    # a tighter tolerance moves the answer
    make_all(table, tmp_path / "tight", tolerance=0.5)
    assert pd.read_csv(tmp_path / "tight" / "compressed.csv").set_index("method").loc["spatial_shuffle", "k"] == 2


@pytest.fixture()
def drawn(monkeypatch) -> dict:
    """The figures plot draws, by title, kept open (pyplot.close is made a no-op that remembers them)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures: dict = {}
    real_close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: figures.setdefault(fig.axes[0].get_title(), []).append(fig))
    yield figures
    for figs in figures.values():
        for fig in figs:
            real_close(fig)


def lines_of(ax) -> dict:
    return {line.get_label(): line for line in ax.get_lines()}


def test_plot_draws_mean_lines_std_bands_dashed_baseline_and_the_top_axis(tmp_path, drawn):
    import numpy as np
    from matplotlib.collections import PolyCollection

    make_all(synthetic_table(tmp_path), tmp_path / "fig")
    (fig,) = drawn["vgg16 on cifar100"]  # one K-curve figure (the cost figure has its own title)
    ax = fig.axes[0]
    assert ax.get_title() == "vgg16 on cifar100" and ax.get_xlabel() == "K (last K units modified)"
    lines = lines_of(ax)
    # one line per method: the mean over the two seeds (jitter -0.1 / +0.1) at K = 0..6
    spatial, conv = lines["spatial_shuffle"], lines["conv1x1"]
    assert list(spatial.get_xdata()) == list(range(7)) and list(conv.get_xdata()) == list(range(7))
    assert np.allclose(spatial.get_ydata(), [70.0, 69.8, 69.5, 69.2, 69.1, 69.05, 60.0])
    assert np.allclose(conv.get_ydata(), [70.0, 69.9, 69.4, 68.5, 66.0, 60.0, 50.0])
    # +-1 std band around each line: std of (a - 0.1, a + 0.1) is 0.1414 at every K
    bands = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(bands) == 2
    for band, line in zip(bands, (conv, spatial), strict=True):  # lines are drawn in sorted order
        assert band.get_facecolor()[0][:3] == pytest.approx(matplotlib_rgb(line.get_color()))
        verts = band.get_paths()[0].vertices
        for k, acc in zip(line.get_xdata(), line.get_ydata(), strict=True):
            at_k = verts[np.isclose(verts[:, 0], k)][:, 1]
            assert at_k.min() == pytest.approx(acc - 0.1414, abs=1e-3) and at_k.max() == pytest.approx(acc + 0.1414,
                                                                                                       abs=1e-3)
    # the baseline: dashed, black, at the mean of every K=0 run (70.0)
    base = lines["baseline"]
    assert base.get_linestyle() == "--" and base.get_color() == "black" and set(base.get_ydata()) == {70.0}
    # the top axis: K as % of the 13 units
    (top,) = ax.child_axes
    assert top.get_xlabel() == "% of the units modified"
    assert top.get_xlim() == pytest.approx(tuple(100 * x / 13 for x in ax.get_xlim()))


def test_every_k_curve_starts_at_the_baseline_when_only_the_baseline_ran_k0(tmp_path, drawn):
    """The demo's sweep: method=none at K=0, the shuffles at K=3 only. Each shuffle's line starts at K=0 from the
    baseline's accuracy (a K-curve of one point would hang in the air), in the figure and in its chart."""
    import numpy as np
    import pandas as pd

    rows = [{"record": "train", "status": "complete", "model": "vgg16", "dataset": "cifar10", "method": m, "k": k,
             "seed": 0, "params": 10, "units": 13, "test_top1": acc}
            for m, k, acc in (("none", 0, 63.85), ("spatial_shuffle", 3, 59.85), ("channel_shuffle", 3, 35.35))]
    pd.DataFrame(rows).to_csv(tmp_path / "t.csv", index=False)
    out = make_all(tmp_path / "t.csv", tmp_path / "fig")
    lines = lines_of(drawn["vgg16 on cifar10"][0].axes[0])
    assert list(lines["spatial_shuffle"].get_xdata()) == [0, 3] and list(lines["channel_shuffle"].get_xdata()) == [0, 3]
    assert np.allclose(lines["spatial_shuffle"].get_ydata(), [63.85, 59.85])
    assert np.allclose(lines["channel_shuffle"].get_ydata(), [63.85, 35.35])
    points = out.charts["kcurve_vgg16_cifar10"].points
    assert points[points.series == "channel_shuffle"][["x", "y"]].values.tolist() == [[0, 63.85], [3, 35.35]]
    assert sorted(points[points.series == "baseline"]["x"]) == [0, 3]


def matplotlib_rgb(color):
    from matplotlib.colors import to_rgb

    return to_rgb(color)


def test_plot_draws_the_single_unit_figure(tmp_path, drawn):
    rows = [{"record": "train", "status": "complete", "model": "vgg16", "dataset": "cifar100", "method": "none",
             "k": 0, "seed": 0, "params": 100, "units": 13, "test_top1": 72.0}]
    rows += [{"record": "train", "status": "complete", "model": "vgg16", "dataset": "cifar100",
              "method": "spatial_shuffle", "k": 0, "unit": u, "seed": 0, "params": 100, "units": 13,
              "test_top1": 72.0 - 0.5 * u} for u in range(13)]
    table = tmp_path / "units.csv"
    pd.DataFrame(rows).to_csv(table, index=False)
    written = {w.name for w in make_all(table, tmp_path / "fig")}
    assert {"unit_vgg16_cifar100.png", "unit_vgg16_cifar100.pdf"} <= written
    assert not any(name.startswith("kcurve_vgg16") for name in written)  # no K-curve: every K is 0
    (fig,) = drawn["vgg16 on cifar100"]
    ax = fig.axes[0]
    assert ax.get_xlabel() == "index of the single modified unit" and not ax.child_axes  # no % axis here
    line = lines_of(ax)["spatial_shuffle"]
    assert list(line.get_xdata()) == list(range(13)) and list(line.get_ydata()) == [72.0 - 0.5 * u for u in range(13)]
    assert lines_of(ax)["baseline"].get_linestyle() == "--" and set(lines_of(ax)["baseline"].get_ydata()) == {72.0}


def test_accuracy_vs_cost_figure_marks_the_pareto_front(tmp_path):
    from spatialprobe.report.figures import pareto_front

    pts = pd.DataFrame({"params": [10, 10, 8, 6, 6, 4, 9], "acc": [70.0, 69.0, 69.5, 60.0, 65.0, 50.0, 68.0],
                        "k": range(7)})
    # (10, 69.0) loses to (10, 70.0); (9, 68.0) to (8, 69.5); (6, 60.0) to (6, 65.0)
    assert sorted(pareto_front(pts, "params").k) == [0, 2, 4, 5]

    table = synthetic_table(tmp_path)
    written = make_all(table, tmp_path / "fig")
    png = tmp_path / "fig" / "cost_vgg16_cifar100.png"
    assert png.read_bytes()[:4] == b"\x89PNG" and (tmp_path / "fig" / "cost_vgg16_cifar100.pdf").is_file()
    front = pd.read_csv(tmp_path / "fig" / "pareto.csv")
    # conv1x1 trades accuracy for parameters at every K; spatial shuffle keeps them all, so only its
    # K=0 point (tied with conv1x1's K=0) can be on the front
    by_params = front[front.cost == "params"].sort_values("params")
    assert by_params.params.tolist() == [34_000_000 - 2_000_000 * k for k in range(6, -1, -1)]
    assert by_params.k.tolist()[:-1] == [6, 5, 4, 3, 2, 1] and set(by_params.method[:-1]) == {"conv1x1"}
    assert by_params.acc.is_monotonic_increasing and by_params.acc.iloc[-1] == pytest.approx(70.0)
    assert (front[front.cost == "flops"].flops == by_params.flops.values).all()
    # the W&B charts behind the figure: one series per method plus the front, for params and FLOPs
    chart = written.charts["cost_vgg16_cifar100_params"].points
    assert set(chart.series) == {"conv1x1", "spatial_shuffle", "Pareto front"}
    assert len(chart[chart.series == "spatial_shuffle"]) == 7
    assert sorted(chart[chart.series == "Pareto front"].x) == sorted(by_params.params)
    assert "cost_vgg16_cifar100_flops" in written.charts and "kcurve_vgg16_cifar100" in written.charts


def test_plot_bad_tables(tmp_path):
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"model": ["vgg16"], "k": [0], "acc": [1.0]}).to_csv(bad, index=False)
    for args, needle in (([str(bad)], "lacks the required column(s) dataset, method, status, params, test_top1"),
                         ([str(tmp_path / "nope.csv")], "no such table")):
        p = cli("spatialprobe.plot", args)
        assert p.returncode == 2 and needle in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    with pytest.raises(UserError, match="no complete run"):
        table = tmp_path / "failed.csv"
        pd.DataFrame({"model": ["m"], "dataset": ["d"], "method": ["none"], "k": [0], "status": ["failed"],
                      "params": [1], "test_top1": [None]}).to_csv(table, index=False)
        make_all(table)


def test_plot_train_test_matrix_from_eval_rows(tmp_path):
    rows = [{"record": "eval", "status": "complete", "model": "vgg16", "dataset": "cifar100", "method": tm,
             "train_method": tm, "test_method": te, "k": 4, "params": 1, "test_top1": acc, "test_top1_std": std}
            for tm, te, acc, std in [("none", "none", 74.1, 0.0), ("none", "spatial_shuffle", 23.49, 0.3),
                                     ("spatial_shuffle", "spatial_shuffle", 74.07, 0.1),
                                     ("spatial_shuffle", "none", 73.74, 0.0)]]
    path = tmp_path / "t.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    make_all(path, tmp_path / "out")
    m = pd.read_csv(tmp_path / "out" / "train_test_matrix.csv").set_index("train_method")
    assert m.loc["spatial_shuffle", "none"] == "73.74 ± 0.00" and m.loc["none", "spatial_shuffle"] == "23.49 ± 0.30"
    assert json.dumps(sorted(m.columns)) == json.dumps(["K", "dataset", "model", "none", "spatial_shuffle"])


def test_position_table_script_reads_grid_records_through_collect(tmp_path):
    """sweeps/position_table.py: one row per (network, padding, target), a column per grid size, chance."""
    for model, base in (("gapnet_resnet18", 100.0), ("permutenet_resnet18", 30.0)):
        for grid in (3, 5):
            run = tmp_path / "sweep" / f"{model}-n{grid}"
            run.mkdir(parents=True)
            cfg = {"dataset": {"kind": "grid", "grid": grid, "target": "location"}, "model": {"padding": None}}
            (run / "result.json").write_text(json.dumps({"status": "complete", "model": model, "config": cfg,
                                                         "test_top1": base - grid, "wall_time_s": 60.0 * grid}))
    failed = tmp_path / "sweep" / "failed"
    failed.mkdir()
    (failed / "result.json").write_text(json.dumps({"status": "failed", "config": {"dataset": {"kind": "grid"}}}))
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out):
        mp.setattr(sys, "argv", ["position_table.py", str(tmp_path / "sweep")])
        runpy.run_path(str(REPO / "sweeps" / "position_table.py"), run_name="__main__")
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("| network | padding | target | 3x3 | 5x5 |")
    assert "| gapnet_resnet18 | zeros | location | 97.0 | 95.0 | 3.0 / 5.0 |" in lines
    assert "| permutenet_resnet18 | zeros | location | 27.0 | 25.0 | 3.0 / 5.0 |" in lines
    assert "| chance | | location | 11.1 | 4.0 | |" in lines
