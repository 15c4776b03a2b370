"""W&B: sweeps whose jobs share a process, online mode without credentials or network, the flat
dashboard keys, and the "figures" run of plot --wandb. No W&B server is reachable here: every run
logs offline (or to tests/fake_wandb_server.py), and the tests read the run files back."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import TINY, cli
from wandb_offline import exit_code, run_contents


def offline_run(run_dir: Path) -> Path:
    (path,) = Path(run_dir).glob("wandb/offline-run-*/run-*.wandb")
    return path


def test_wandb_sweep_in_one_process_gives_every_job_its_own_run(fake_cifar10, env, tmp_path):
    """Hydra's basic launcher runs the jobs one after the other in one process: no job may see what
    an earlier job's logger left behind (wandb's WANDB_MODE=dryrun made every later job invalid)."""
    env["WANDB_MODE"] = "dryrun"  # wandb's own name for offline
    sweep_dir = tmp_path / "sweeps" / "wb3"
    p = cli("spatialprobe.train", ["-m", "dataset=cifar10", f"dataset.root={fake_cifar10}", *TINY,
                                   "method=channel_shuffle", "k=0,1,2", "logger=wandb", f"hydra.sweep.dir={sweep_dir}"],
            env, tmp_path)  # in the test's process: the jobs share it, as under the basic launcher
    assert p.returncode == 0, (p.stdout[-3000:], p.stderr[-3000:])
    assert "3 of 3 runs complete" in p.stdout
    runs = sorted(d for d in sweep_dir.iterdir() if (d / "result.json").is_file())
    assert len(runs) == 3 and not (sweep_dir / ".submitit").exists()  # one process, no launcher
    seen_ids = set()
    for run_dir in runs:
        rec = json.loads((run_dir / "result.json").read_text())
        assert rec["status"] == "complete" and rec["wandb_mode"] == "offline" and rec["wandb_fallback"] is None
        wb_file = offline_run(run_dir)
        assert wb_file.parent == Path(rec["wandb_dir"]) and rec["wandb_id"] not in seen_ids
        seen_ids.add(rec["wandb_id"])
        wb = run_contents(wb_file)
        k = rec["k"]
        assert wb["group"] == "wb3" and f"k:{k}" in wb["tags"] and wb["job_type"] == "train"
        val = [row["val_top1"] for row in wb["history"] if "val_top1" in row]
        assert val and val[-1] == pytest.approx(rec["val_top1_final"], abs=1e-3)  # its own metrics
        assert wb["summary"]["test_top1"] == pytest.approx(rec["test_top1"], abs=1e-3)
        assert wb["summary"]["k"] == k and exit_code(wb_file) == 0
        # the flat keys a dashboard groups and plots by
        cfg = wb["config"]
        assert {key: cfg[key] for key in ("model_name", "dataset_name", "method_name", "k", "seed")} == {
            "model_name": "resnet18", "dataset_name": "cifar10", "method_name": "channel_shuffle", "k": k, "seed": 0}
        assert (cfg["params"], cfg["flops"], cfg["receptive_field"]) == (rec["params"], rec["flops"],
                                                                        rec["receptive_field"])
        assert cfg["modified_fraction"] == pytest.approx(k / rec["units"], abs=1e-4) and cfg["units"] == rec["units"]
        assert cfg["model"]["width"] == 0.0625  # the nested config stays as well


def test_a_failed_run_leaves_nothing_to_the_next_one(tmp_path, monkeypatch):
    """isolated_run: the environment comes back as it was and the failed run's W&B run is closed
    (Lightning's WandbLogger would otherwise hand it to the next run of the process)."""
    import wandb

    from spatialprobe.run.loggers import isolated_run

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("SPATIALPROBE_PROBE", raising=False)
    with pytest.raises(RuntimeError, match="boom"), isolated_run():
        run = wandb.init(project="p", dir=str(tmp_path), mode="offline", settings=wandb.Settings(silent=True))
        run.log({"acc": 1.0})
        os.environ["WANDB_MODE"] = "dryrun"  # what Lightning's WandbLogger(offline=True) writes
        os.environ["SPATIALPROBE_PROBE"] = "1"
        raise RuntimeError("boom")
    assert wandb.run is None
    assert os.environ["WANDB_MODE"] == "offline" and "SPATIALPROBE_PROBE" not in os.environ
    wandb.teardown()  # the W&B service writes the run file's last records when it stops
    assert exit_code(offline_run(tmp_path)) == 1  # marked failed


def test_wandb_modes_and_credentials(tmp_path, monkeypatch):
    from spatialprobe.config.wandb_login import require_wandb_login
    from spatialprobe.errors import ConfigError
    from spatialprobe.run.loggers import wandb_mode

    assert [wandb_mode(m) for m in ("offline", "dryrun", "online", "run", "disabled")] == [
        "offline", "offline", "online", "online", "disabled"]
    with pytest.raises(ConfigError, match=r"logger.mode='offlien' is invalid: .*\(valid: offline, online, disabled, "
                                          r"dryrun \(= offline\), run \(= online\)\)"):
        wandb_mode("offlien")
    for var in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "cfg"))
    netrc = tmp_path / "netrc"
    monkeypatch.setenv("NETRC", str(netrc))
    require_wandb_login("offline")  # offline needs nothing
    with pytest.raises(ConfigError) as err:
        require_wandb_login("online")
    for way_out in ("no W&B credentials", "wandb login", "WANDB_API_KEY", "logger.mode=offline", "wandb sync"):
        assert way_out in str(err.value)
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "a" * 40 + "\n")
    require_wandb_login("online")  # `wandb login` writes this
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.org")
    with pytest.raises(ConfigError, match="no wandb.example.org entry"):
        require_wandb_login("online")  # a key for another server does not count
    monkeypatch.setenv("WANDB_API_KEY", "a" * 40)
    require_wandb_login("online")


def test_logger_mode_defaults_to_wandb_mode_and_the_command_line_wins(tmp_path, monkeypatch):
    """docs/wandb.md: `logger=wandb` logs offline by default, `$WANDB_MODE` (wandb's names too) sets the mode
    instead, and `logger.mode=` on the command line wins over both; the mode reaches the credentials check."""
    from conftest import compose_train
    from spatialprobe.errors import ConfigError
    from spatialprobe.train import validate

    for var in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "cfg"))
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert compose_train("logger=wandb").logger.mode == "offline"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert compose_train("logger=wandb").logger.mode == "disabled"
    monkeypatch.setenv("WANDB_MODE", "run")  # wandb's name for online
    cfg = compose_train("logger=wandb")
    assert cfg.logger.mode == "run"
    with pytest.raises(ConfigError, match="logger.mode='online' is invalid: no W&B credentials"):
        validate(cfg)  # taken as online: the credentials are checked
    explicit = compose_train("logger=wandb", "logger.mode=offline")
    assert explicit.logger.mode == "offline"
    validate(explicit)


@pytest.mark.parametrize("fail_after,mode,note,init_timeout", [
    ("start", "offline", "W&B was unreachable at the start", 3),
    ("file_stream", "online", "upload did not finish", 600),
], ids=["unreachable-at-start", "network-lost-mid-run"])
def test_online_run_survives_a_failing_network(fail_after, mode, note, init_timeout, fake_cifar10, tmp_path,
                                               monkeypatch, caplog):
    """logger.mode=online against a W&B server that cannot be reached from the start, or stops
    answering once the run streams data: the run completes, its data stays in the local run file
    (for `wandb sync`) and the record says what happened.

    No outcome depends on how fast this machine is: a server that never answers fails the start after any
    timeout (3 s keeps the test short), one that answers at once starts the run within any (600 s: never
    reached, however busy the machine), and a server gone mid-run can never take the upload, so the end
    times out whatever ``finish_timeout`` is."""
    import wandb

    from conftest import compose_train
    from fake_wandb_server import FakeWandbServer
    from spatialprobe.train import run

    wandb.teardown()  # no W&B settings cached by an earlier test of this process
    monkeypatch.setenv("SPATIALPROBE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("WANDB_API_KEY", "a" * 40)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    with FakeWandbServer(fail_after) as server:
        monkeypatch.setenv("WANDB_BASE_URL", server.url)
        cfg = compose_train("dataset=cifar10", f"dataset.root={fake_cifar10}", *TINY, "logger=wandb",
                            "logger.mode=online", f"logger.init_timeout={init_timeout}", "logger.finish_timeout=3")
        caplog.clear()
        rec = run(cfg, tmp_path / "run")
    wandb.teardown()
    assert rec["status"] == "complete" and rec["wandb_mode"] == mode
    assert note in rec["wandb_fallback"], rec["wandb_fallback"]
    # docs/wandb.md: "in both cases wandb_fallback says so and a one-line warning is printed"
    # (the console prints the run's warnings; in this process they are the log records)
    warnings = [r.getMessage() for r in caplog.records if r.getMessage().startswith("spatialprobe: warning:")]
    assert len(warnings) == 1 and note in warnings[0] and "wandb sync" in warnings[0], warnings
    if mode == "online":  # it really was online before the network went: the server saw the run created
        assert "mutation UpsertBucket" in server.seen and f"wandb sync {rec['wandb_dir']}" in rec["wandb_fallback"]
    (wb_file,) = Path(rec["wandb_dir"]).glob("run-*.wandb")
    wb = run_contents(wb_file)
    val = [row["val_top1"] for row in wb["history"] if "val_top1" in row]
    assert val and val[-1] == pytest.approx(rec["val_top1_final"], abs=1e-3)
    assert wb["summary"]["test_top1"] == pytest.approx(rec["test_top1"], abs=1e-3)


def test_figures_run_holds_every_figure_chart_and_table_and_collect_reads_it_back(tmp_path):
    """plot's outputs (whatever they are: here plus a figure the W&B code has never heard of) go into
    one offline "figures" run: PNGs as images, CSV tables as wandb.Tables, registered charts as
    native line-series charts; collect --wandb (mocked API fed with that run) keeps it apart."""
    import matplotlib.pyplot as plt
    import pandas as pd
    import wandb

    from spatialprobe.report import Chart, save_figure
    from spatialprobe.report.collect import collect_wandb
    from spatialprobe.report.figures import make_all, write_table
    from spatialprobe.run.loggers import log_figures
    from test_collect_plot import synthetic_table
    from wandb_offline import logged_json

    out = tmp_path / "fig"
    written = make_all(synthetic_table(tmp_path), out)
    fig, _ = plt.subplots()
    written += save_figure(fig, out / "newfig", {"newfig": Chart("new", "x", pd.DataFrame(
        {"series": ["a", "a", "b"], "x": [0, 1, 0], "y": [1.0, 2.0, 3.0]}))})
    written += write_table(pd.DataFrame({"what": ["x", None], "n": [1.5, None]}), out / "newtable")
    info = log_figures(written, out, project="spatialprobe", entity=None, group="exp", mode="offline",
                       config={"figures": sorted({p.stem for p in written if p.suffix == ".png"}),
                               "tables": sorted({p.stem for p in written if p.suffix == ".csv"})})
    wandb.teardown()
    assert info["wandb_mode"] == "offline" and info["wandb_fallback"] is None
    (wb_file,) = out.glob("wandb/offline-run-*/run-*.wandb")
    wb = run_contents(wb_file)
    assert wb["group"] == "exp" and wb["job_type"] == "figures"
    assert wb["name"] == "figures-exp" and wb["tags"] == ["figures"]  # docs/wandb.md: name figures-<group>, tag figures
    logged = {key.rsplit("/", 1)[0]: value for key, value in wb["summary"].items() if key.endswith("/_type")}
    pngs = {p.stem for p in written if p.suffix == ".png"}
    csvs = {p.stem for p in written if p.suffix == ".csv"}
    assert {"kcurve_vgg16_cifar100", "cost_vgg16_cifar100", "newfig"} <= pngs
    assert {"compressed", "best", "kcurve_table", "pareto", "newtable"} <= csvs
    assert {f"figures/{s}" for s in pngs} == {k for k, v in logged.items() if v == "image-file"}
    charts = {"kcurve_vgg16_cifar100", "cost_vgg16_cifar100_params", "cost_vgg16_cifar100_flops", "rf_vgg16_cifar100",
              "newfig"}
    assert {f"tables/{s}" for s in csvs} | {f"charts/{c}_table" for c in charts} == {
        k for k, v in logged.items() if v == "table-file"}
    for name in csvs:  # every table, cell for cell
        table = logged_json(wb_file, wb, f"tables/{name}")
        csv = pd.read_csv(out / f"{name}.csv")
        assert table["columns"] == list(csv.columns)
        assert pd.DataFrame(table["data"], columns=table["columns"]).astype(object).fillna(-1).values.tolist() == \
            csv.astype(object).fillna(-1).values.tolist()
    for name in charts:  # native charts: W&B's line-series preset over the figure's points
        spec = wb["config"][f"_wandb/visualize/charts/{name}"]["panel_config"]
        assert spec["panelDefId"] == "wandb/lineseries/v0"
    kcurve = logged_json(wb_file, wb, "charts/kcurve_vgg16_cifar100_table")
    points = {(line, x): y for x, line, y in kcurve["data"]}
    assert points[("conv1x1", 3)] == pytest.approx(68.5) and points[("spatial_shuffle", 5)] == pytest.approx(69.05)
    assert points[("baseline", 0)] == points[("baseline", 6)] == pytest.approx(70.0)
    front = pd.read_csv(out / "pareto.csv")
    cost = logged_json(wb_file, wb, "charts/cost_vgg16_cifar100_params_table")
    marked = sorted((x, round(y, 6)) for x, line, y in cost["data"] if line == "Pareto front")
    expected = front[front.cost == "params"]
    assert marked == sorted(zip(expected.params, expected.acc.round(6), strict=True)) and len(marked) == 7
    assert sorted(x for x, line, _ in logged_json(wb_file, wb, "charts/newfig_table")["data"] if line == "a") == [0, 1]

    class Run:  # what wandb.Api returns for the figures run once synced, and for one training run
        def __init__(self, job_type, config, summary, tags, k=None):
            self.job_type, self.config, self.summary, self.tags = job_type, config, summary, tags
            self.state, self.group, self.url, self.id = "finished", "exp", f"https://wandb/{job_type}", job_type

    class Api:
        def runs(self, path, filters=None):
            return [Run("figures", wb["config"], wb["summary"], wb["tags"]),
                    Run("train", {"seed": 0, "k": 2, "params": 10}, {"test_top1": 61.0, "params": 10, "flops": 99},
                        ["model:vgg16", "dataset:cifar100", "method:conv1x1", "k:2"])]

    df = collect_wandb("me/spatialprobe", "exp", api=Api())
    assert list(df.record) == ["figures", "train"] and list(df.status) == ["complete", "complete"]
    figures_row = df.iloc[0]
    assert "kcurve_vgg16_cifar100" in json.loads(figures_row.figures) and "pareto" in json.loads(figures_row.tables)
    table = tmp_path / "from_wandb.csv"
    df.to_csv(table, index=False)
    again = make_all(table, tmp_path / "again")  # plot takes the training runs, leaves the figures run aside
    assert pd.read_csv(tmp_path / "again" / "kcurve_table.csv").k.tolist() == [2]
    assert {p.name for p in again} >= {"cost_vgg16_cifar100.png", "pareto.csv"}


@pytest.mark.slow  # four CLI processes (collect + plot, twice)
def test_sweep_scripts_figures_step_logs_to_wandb_with_logger_wandb(env, tmp_path):
    """sweeps/lib.sh: `figures NAME` after a sweep run with logger=wandb collects, plots and logs the
    figures run into the sweep's group; without logger=wandb it does not touch W&B."""
    import subprocess
    import sys

    from conftest import REPO
    from test_collect_plot import fake_record

    runs = tmp_path / "runs"
    for k, acc in ((0, 70.0), (2, 66.0)):
        rec = fake_record(runs / "sweeps" / "exp" / f"k={k}", "conv1x1", k, acc, params=1000 - 100 * k)
        rec["config"]["logger"] = {"name": "wandb", "project": "spatialprobe", "group": None, "mode": "offline"}
        (runs / "sweeps" / "exp" / f"k={k}" / "result.json").write_text(json.dumps(rec))
    script = tmp_path / "figs.sh"
    script.write_text(f'source "{REPO}/sweeps/lib.sh"\nfigures exp\n')
    env.update(SPATIALPROBE_RUNS=str(runs), PY=sys.executable)
    figures = runs / "sweeps" / "exp" / "figures"
    p = subprocess.run(["bash", str(script), "k=0"], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert (figures / "cost_vgg16_cifar100.png").is_file() and not (figures / "wandb").exists()
    p = subprocess.run(["bash", str(script), "logger=wandb"], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "W&B figures run" in p.stdout and "in group exp" in p.stdout
    wb = run_contents(offline_run(figures))
    assert wb["group"] == "exp" and wb["job_type"] == "figures" and wb["config"]["sweeps"] == ["exp"]
    assert wb["summary"]["figures/kcurve_vgg16_cifar100/_type"] == "image-file"
