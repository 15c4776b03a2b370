"""Numbers of the "Spatial information is overrated" papers (S0, S1) that need no training: the
receptive-field axis of S1 Fig. 3 (right) and the parameter counts of S1 Tables 1, 3, 4 and S0 Table 2."""

from __future__ import annotations

import json
import math

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from conftest import TINY, compose_train
from spatialprobe import CONF_DIR, surgery
from spatialprobe.models import build_model
from spatialprobe.run.measure import count_params

PAPER_RF_AXIS = [10, 16, 24, 32, 44, 60, 76, 100, 132, 164, 212]  # S1 Fig. 3 right, K = 10 .. 0


def inspect(*overrides: str) -> dict:
    from spatialprobe.inspect import describe

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return describe(compose("inspect", overrides=list(overrides)))


def test_inspect_gives_the_papers_receptive_field_axis():
    rfs = [inspect("model=vgg16", "model.width=0.0625", "dataset=cifar100", "method=conv1x1", f"k={k}")
           ["receptive_field"] for k in range(10, -1, -1)]
    assert rfs == PAPER_RF_AXIS


def test_a_training_record_holds_the_papers_receptive_field(fake_cifar10, tmp_path, monkeypatch):
    from spatialprobe.train import run

    monkeypatch.setenv("SPATIALPROBE_CACHE", str(tmp_path / "cache"))
    cfg = compose_train("model=vgg16", "model.fc_width=16", "dataset=cifar10", f"dataset.root={fake_cifar10}", *TINY,
                        "method=conv1x1", "k=3", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
                        "trainer.limit_test_batches=1", f"paths.cache_dir={tmp_path / 'cache'}")
    record = run(cfg, tmp_path / "run")
    assert record["status"] == "complete" and record["receptive_field"] == 100  # K=3 on the axis
    assert json.loads((tmp_path / "run" / "result.json").read_text())["receptive_field"] == 100


def test_a_shuffled_run_is_tested_in_passes_and_its_record_holds_mean_and_spread(fake_cifar10, tmp_path, monkeypatch):
    """eval.test_passes: a shuffle active at test time is tested in several passes, each its own random
    stream; the record's test_top1 is their mean (the logged per-pass values, averaged), with the std and
    the number of passes. A deterministic network (conv1x1) is tested once."""
    import csv
    import statistics

    from spatialprobe.train import run

    monkeypatch.setenv("SPATIALPROBE_CACHE", str(tmp_path / "cache"))
    common = ["dataset=cifar10", f"dataset.root={fake_cifar10}", *TINY, "trainer.limit_train_batches=2",
              "trainer.precision=32-true", "eval.test_passes=5", f"paths.cache_dir={tmp_path / 'cache'}"]
    rec = run(compose_train(*common, "method=spatial_shuffle", "k=2"), tmp_path / "shuffled")
    assert rec["status"] == "complete" and rec["test_passes"] == 5
    rows = list(csv.DictReader(open(tmp_path / "shuffled" / "logs" / "attempt-1" / "metrics.csv")))
    per_pass = [float(r["test_top1"]) for r in rows if r.get("test_top1")][:5]  # the final network's passes
    losses = [float(r["test_loss"]) for r in rows if r.get("test_loss")][:5]
    assert len(per_pass) == 5 and len(set(losses)) == 5  # each pass its own shuffles
    assert rec["test_loss"] == pytest.approx(statistics.fmean(losses), abs=1e-4) and rec["test_loss_std"] > 0
    assert rec["test_top1"] == pytest.approx(statistics.fmean(per_pass), abs=1e-4)
    assert rec["test_top1_std"] == pytest.approx(statistics.stdev(per_pass), abs=1e-4)
    assert rec["test_top1_final"] == rec["test_top1"]
    fixed = run(compose_train(*common, "method=conv1x1", "k=2"), tmp_path / "fixed")
    assert fixed["test_passes"] == 1 and fixed["test_top1_std"] == 0.0


def params(arch: str, classes: int, size: int, method: str = "none", k: int = 0, unit: int | None = None) -> int:
    torch.manual_seed(0)
    model = build_model(OmegaConf.create({"arch": arch, "width": 1.0, "stem": "auto", "fc_width": 4096}), classes, size)
    surgery.apply(model, OmegaConf.create({"name": method, "unit": unit}), k, size)
    return count_params(model)


# (table, arch, classes, image size, method, K, the paper's count in M). The paper prints two decimals,
# mostly rounded, in a few cells truncated (14.268 -> 14.26): both are accepted, nothing else.
TABLE_ROWS = [
    ("S1 T1", "vgg16_bn", 100, 32, "gap_fc", 5, 23.53), ("S1 T1", "vgg16_bn", 100, 32, "gap_fc", 2, 29.82),
    ("S1 T1", "vgg16_bn", 100, 32, "conv1x1", 2, 29.82), ("S1 T1", "resnet50", 100, 32, "gap_fc", 5, 16.37),
    ("S1 T1", "resnet50", 100, 32, "gap_fc", 2, 19.51), ("S1 T1", "resnet50", 100, 32, "conv1x1", 9, 14.26),
    ("S1 T1", "resnet50", 100, 32, "conv1x1", 2, 19.51),
    ("S1 T3", "vgg16_bn", 1000, 32, "none", 0, 37.70), ("S1 T3", "vgg16_bn", 1000, 32, "gap_fc", 4, 29.31),
    ("S1 T3", "vgg16_bn", 1000, 32, "gap_fc", 2, 33.50), ("S1 T3", "vgg16_bn", 1000, 32, "conv1x1", 7, 25.64),
    ("S1 T3", "vgg16_bn", 1000, 32, "conv1x1", 4, 29.31), ("S1 T3", "resnet50", 1000, 32, "none", 0, 25.55),
    ("S1 T3", "resnet50", 1000, 32, "gap_fc", 3, 19.26), ("S1 T3", "resnet50", 1000, 32, "gap_fc", 1, 23.45),
    ("S1 T3", "resnet50", 1000, 32, "conv1x1", 6, 17.68), ("S1 T3", "resnet50", 1000, 32, "conv1x1", 1, 23.45),
    ("S1 T4", "resnet50", 1000, 224, "conv1x1", 5, 18.22), ("S1 T4", "vgg16_bn", 1000, 224, "conv1x1", 1, 35.60),
    ("S1 T4", "mobilenet_v2", 1000, 224, "conv1x1", 2, 3.48),
    ("S0 T2", "vgg16_bn", 1000, 224, "gap_fc", 1, 35.61), ("S0 T2", "resnet50", 1000, 224, "gap_fc", 1, 23.46),
]


@pytest.mark.parametrize("table,arch,classes,size,method,k,paper_m", TABLE_ROWS,
                         ids=[f"{r[0]}-{r[1]}-{r[3]}px-{r[4]}-K{r[5]}" for r in TABLE_ROWS])
def test_paper_table_parameter_counts(table, arch, classes, size, method, k, paper_m):
    m = params(arch, classes, size, method, k) / 1e6
    assert paper_m in (round(m, 2), math.floor(m * 100) / 100), m


def test_resnet152_gap_fc_count_of_s0_table2():
    assert round(params("resnet152", 1000, 224, "gap_fc", 5) / 1e6, 2) == 52.85  # 10% of 50 bottlenecks


def test_squeezenet_table4_row_is_the_first_two_fire_modules():
    """S1 Table 4: SqueezeNet 1.25M -> 1.23M with 1x1Conv at K=2. The project's K=2 (the LAST two fire
    modules, fire8 + fire9: 2 x 64 x 256 x 8 3x3 weights removed) gives 0.99M; the paper's 1.23M is what
    turning the FIRST two fire modules (fire2 + fire3: 2 x 16 x 64 x 8 weights) into 1x1 gives."""
    base = params("squeezenet1_0", 1000, 224)
    last_two = params("squeezenet1_0", 1000, 224, "conv1x1", 2)
    assert (base, last_two) == (1_248_424, 986_280)
    assert base - last_two == 2 * 64 * 256 * 8
    torch.manual_seed(0)
    model = build_model(OmegaConf.create({"arch": "squeezenet1_0", "width": 1.0, "stem": "auto"}), 1000, 224)
    for unit in (0, 1):
        surgery.apply(model, OmegaConf.create({"name": "conv1x1", "unit": unit}), 0, 224)
    first_two = count_params(model)
    assert first_two == base - 2 * 16 * 64 * 8 == 1_232_040 and round(first_two / 1e6, 2) == 1.23


# ---- figures drawn from records and logged metrics (nothing is re-trained) --------------------------

def write_metrics(run_dir, attempt: int, rows: list[dict]) -> None:
    import pandas as pd

    path = run_dir / "logs" / f"attempt-{attempt}" / "metrics.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, index=False)


@pytest.fixture()
def drawn(monkeypatch) -> dict:
    """The figures plot draws, by their axes' title, kept open (pyplot.close remembers them instead)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures: dict = {}
    real_close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: figures.__setitem__(fig.axes[0].get_title(), fig))
    yield figures
    for fig in figures.values():
        real_close(fig)


def curves_of(fig) -> dict:
    """label -> (x, y, linestyle) of every labelled line and error-bar line of a figure's first axes."""
    ax = fig.axes[0]
    out = {c.get_label(): (list(c.lines[0].get_xdata()), list(c.lines[0].get_ydata()), c.lines[0].get_linestyle())
           for c in ax.containers}
    out.update({ln.get_label(): (list(ln.get_xdata()), list(ln.get_ydata()), ln.get_linestyle())
                for ln in ax.get_lines() if not ln.get_label().startswith("_")})
    return out


def test_epoch_metrics_merge_attempts_and_skip_step_rows(tmp_path):
    from spatialprobe.report.collect import epoch_metrics

    run = tmp_path / "run"
    write_metrics(run, 1, [{"epoch": 0, "step": 9, "train_loss_step": 2.0},
                           {"epoch": 0, "step": 9, "val_top1": 20.0},
                           {"epoch": 0, "step": 9, "train_top1": 15.0, "train_loss_epoch": 2.1},
                           {"epoch": None, "step": 10, "lr-SGD": 0.1},
                           {"epoch": 1, "step": 19, "val_top1": 30.0}])  # killed before epoch 1 ended
    write_metrics(run, 2, [{"epoch": 1, "step": 19, "val_top1": 31.0},  # the resumed attempt wins
                           {"epoch": 1, "step": 19, "train_top1": 28.0}])
    ep = epoch_metrics(run)
    assert ep["epoch"].tolist() == [0, 1] and ep["val_top1"].tolist() == [20.0, 31.0]
    assert ep["train_top1"].tolist() == [15.0, 28.0] and "train_loss_step" not in ep.columns
    assert epoch_metrics(tmp_path / "nothing") is None


def test_plot_draws_training_curves_from_the_runs_metrics(tmp_path, drawn):
    """S0 Fig. 1: the baseline and the shuffled network, train (dashed) and test accuracy per epoch, the
    numbers of their metrics.csv at epochs 1..8."""
    import pandas as pd
    from matplotlib.image import imread

    from spatialprobe.report.figures import make_all

    rows = []
    for k, final in ((0, 74.1), (7, 71.4)):
        run = tmp_path / "sweep" / f"k={k}"
        write_metrics(run, 1, [{"epoch": e, "train_top1": 10.0 + e * 8, "val_top1": 12.0 + e * 7}
                               for e in range(8)])
        rows.append({"record": "train", "status": "complete", "model": "vgg16", "dataset": "cifar100",
                     "method": "spatial_shuffle", "k": k, "params": 1, "units": 13, "test_top1": final,
                     "run_dir": str(run)})
    table = tmp_path / "results.csv"
    pd.DataFrame(rows).to_csv(table, index=False)
    written = {p.name for p in make_all(table, tmp_path / "fig")}
    assert "curves_vgg16_cifar100.png" in written and "curves_vgg16_cifar100.pdf" in written
    assert imread(tmp_path / "fig" / "curves_vgg16_cifar100.png").shape[0] > 300
    lines = curves_of(drawn["vgg16 on cifar100: training curves"])
    epochs = list(range(1, 9))
    for k in (0, 7):
        assert lines[f"spatial_shuffle K={k} (train)"] == (epochs, [10.0 + 8 * e for e in range(8)], "--")
        assert lines[f"spatial_shuffle K={k} (val)"] == (epochs, [12.0 + 7 * e for e in range(8)], "-")
    assert len(lines) == 4
    # more runs than a readable figure holds: only with --curves
    many = pd.DataFrame([{**rows[0], "k": k} for k in range(9)])
    many.to_csv(table, index=False)
    assert "curves_vgg16_cifar100.png" not in {p.name for p in make_all(table, tmp_path / "many")}
    assert "curves_vgg16_cifar100.png" in {p.name for p in make_all(table, tmp_path / "forced", curves=True)}


def test_plot_draws_the_mismatch_curve_and_the_k_matrix(tmp_path, drawn):
    """S1 Fig. 7 and Table 2 (left): evaluation rows at several K, every training -> test scheme."""
    import pandas as pd

    from spatialprobe.report.figures import make_all

    def ev(train, test, k, test_k, acc):
        return {"record": "eval", "status": "complete", "model": "vgg16", "dataset": "cifar100", "method": train,
                "train_method": train, "test_method": test, "k": k, "test_k": test_k, "params": 1,
                "test_top1": acc, "test_top1_std": 0.2}

    rows = [ev("none", "none", 0, 0, 74.1)]
    for k in (1, 2, 3):
        rows += [ev("spatial_shuffle", "spatial_shuffle", k, k, 74.0 - k), ev("spatial_shuffle", "none", k, k, 73 - k),
                 ev("none", "spatial_shuffle", 0, k, 30.0 / k)]
    table = tmp_path / "t.csv"
    pd.DataFrame(rows).to_csv(table, index=False)
    written = {p.name for p in make_all(table, tmp_path / "fig")}
    assert "mismatch_vgg16_cifar100.png" in written
    lines = curves_of(drawn["vgg16 on cifar100: training -> test scheme"])
    assert lines["spatial_shuffle -> spatial_shuffle"][:2] == ([1, 2, 3], [73.0, 72.0, 71.0])
    assert lines["spatial_shuffle -> none"][:2] == ([1, 2, 3], [72.0, 71.0, 70.0])
    assert lines["none -> spatial_shuffle"][:2] == ([1, 2, 3], [30.0, 15.0, 10.0])
    assert lines["none -> none"][1:] == ([74.1, 74.1], "--") and len(lines) == 4
    m = pd.read_csv(tmp_path / "fig" / "train_test_matrix.csv")
    k3 = m[m.K == 3].set_index("train_method")
    assert k3.loc["spatial_shuffle", "none"] == "70.00 ± 0.20" and k3.loc["none", "spatial_shuffle"] == "10.00 ± 0.20"
    assert m[m.K == 0].set_index("train_method").loc["none", "none"] == "74.10 ± 0.20"


def test_plot_draws_accuracy_against_receptive_field_one_line_per_input_size(tmp_path):
    """S1 Fig. 3 (right) as a figure: delta to the baseline vs the receptive field, one line per image size."""
    import pandas as pd

    from spatialprobe.report.figures import make_all

    rows = []
    for size, base in ((32, 70.0), (64, 74.0)):
        for k, rf in zip(range(4), (212, 164, 132, 100), strict=True):
            rows.append({"record": "train", "status": "complete", "model": "vgg16", "dataset": "cifar100",
                         "method": "conv1x1", "k": k, "params": 10, "units": 13, "receptive_field": rf,
                         "test_top1": base - k * (2.0 if size == 32 else 0.5), "config.dataset.image_size": size})
    table = tmp_path / "t.csv"
    pd.DataFrame(rows).to_csv(table, index=False)
    out = make_all(table, tmp_path / "fig")
    assert "rf_vgg16_cifar100.png" in {p.name for p in out}
    points = out.charts["rf_vgg16_cifar100"].points
    assert sorted(points["series"].unique()) == ["image_size=32", "image_size=64"]
    at = points.set_index(["series", "x"])["y"]
    assert at[("image_size=32", 100)] == pytest.approx(-6.0) and at[("image_size=64", 100)] == pytest.approx(-1.5)
    assert at[("image_size=32", 212)] == 0.0  # K=0 is the baseline itself


def test_the_depth_ablation_trains_seven_models_down_to_no_1x1_layer():
    """S1 Fig. 3 (left): conv1x1 on the last 6 units, then 0..6 of them stripped: the axis "number of 1x1 conv
    layers" runs 6..0, so the sweep has 7 jobs, and the last one has all six modified bottlenecks removed."""
    from spatialprobe.launch.sweep import expand_jobs, validate_jobs

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=resnet50_imagenet32_depth_ablation"], return_hydra_config=True)
        OmegaConf.set_struct(cfg, False)
        cfg.hydra.job.config_name = "train"
        jobs = expand_jobs(cfg)
        validate_jobs(jobs)
    assert sorted(int(j.config["method"]["strip"]) for j in jobs) == list(range(7))
    torch.manual_seed(0)
    net = build_model(OmegaConf.create({"arch": "resnet50", "width": 0.0625, "stem": "auto"}), 10, 32)
    report = surgery.apply(net, OmegaConf.create({"name": "conv1x1", "strip": 6}), 6, 32)
    assert report.stripped_units == list(range(10, 16)) and report.modified_units == list(range(10, 16))
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)  # the layer behind them refitted to the new width


def test_plot_draws_the_depth_ablation(tmp_path, drawn):
    """S1 Fig. 3 (left): the last 6 units 1x1, the last n of them removed, x = 6 - n (the accuracy 61 - n:
    55 + x), the baseline dashed."""
    import pandas as pd

    from spatialprobe.report.figures import make_all

    rows = [{"record": "train", "status": "complete", "model": "resnet50", "dataset": "imagenet32",
             "method": "conv1x1", "k": 6, "params": 10 - n, "units": 16, "test_top1": 61.0 - n,
             "config.method.strip": n} for n in range(6)]
    rows.append({**rows[0], "k": 0, "config.method.strip": 0, "test_top1": 61.9})
    table = tmp_path / "t.csv"
    pd.DataFrame(rows).to_csv(table, index=False)
    assert "depth_resnet50_imagenet32.png" in {p.name for p in make_all(table, tmp_path / "fig")}
    lines = curves_of(drawn["resnet50 on imagenet32: depth ablation"])
    assert lines["conv1x1, last 6 units modified, the last K - n of them removed"][:2] == (
        [1, 2, 3, 4, 5, 6], [56.0, 57.0, 58.0, 59.0, 60.0, 61.0])
    assert lines["baseline"][1:] == ([61.9, 61.9], "--") and len(lines) == 2


def test_collect_calls_a_k0_checkpoint_of_a_shuffle_sweep_the_baseline(tmp_path):
    """S1 Fig. 7's none -> shuffle curve evaluates the K=0 run of the spatial-shuffle sweep: it was trained
    without any shuffle, so its training scheme is 'none', whatever the sweep's method name."""
    from spatialprobe.report.collect import collect_dirs
    from spatialprobe.run.records import write_json_atomic

    run = tmp_path / "sweep" / "k=0,method=spatial_shuffle"
    write_json_atomic(run / "result.json", {"status": "complete", "model": "vgg16", "dataset": "cifar100",
                                            "method": "spatial_shuffle", "k": 0, "config": {"method": {}}})
    ev = {"trained": {"model": "vgg16", "dataset": "cifar100", "method": "spatial_shuffle", "k": 0, "seed": 0},
          "keep_method": True, "test_time_method": {"method": "spatial_shuffle", "k": 5}, "top1_mean": 3.0,
          "top1_std": 1.0, "passes": 200}
    write_json_atomic(run / "checkpoints" / "eval-spatial_shuffle-k5-x.json", ev)
    row = collect_dirs([tmp_path / "sweep"]).query("record == 'eval'").iloc[0]
    assert (row.train_method, row.test_method, row.test_k) == ("none", "spatial_shuffle", 5)


def test_mlp_comparator_of_s0_section_4_1(fake_cifar10, tmp_path):
    """model=mlp: flattened image -> 512 hidden units, ReLU -> classes; trains like any model; no units."""
    from spatialprobe.errors import ConfigError
    from spatialprobe.models import unit_count
    from spatialprobe.train import run, validate

    info = inspect("model=mlp", "dataset=cifar100")
    assert info["params"] == 3 * 32 * 32 * 512 + 512 + 512 * 100 + 100 and info["units"] == 0
    assert info["receptive_field"] is None  # every hidden unit sees the whole image
    assert unit_count("mlp") == 0
    with pytest.raises(ConfigError, match="mlp has 0 modifiable units"):
        validate(compose_train("model=mlp", "method=conv1x1", "k=1"))
    cfg = compose_train("model=mlp", "dataset=cifar10", f"dataset.root={fake_cifar10}", *TINY,
                        f"paths.cache_dir={tmp_path / 'cache'}")
    record = run(cfg, tmp_path / "run")
    assert record["status"] == "complete" and record["params"] == 3 * 32 * 32 * 32 + 32 + 32 * 10 + 10
    assert 0 <= record["test_top1"] <= 100
