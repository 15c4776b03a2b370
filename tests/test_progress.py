"""A sweep's console: progress lines and ETA from the records, the union-of-grids sweeper, quiet logging."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from spatialprobe import CONF_DIR
from spatialprobe.config.cli import verbose_argv
from spatialprobe.config.resolvers import CPU_BF16_ENV, cpu_has_bf16, cpuinfo_has_bf16
from spatialprobe.launch import progress
from spatialprobe.launch.progress import SweepProgress, duration
from spatialprobe.run.console import OwnLinesOnly
from spatialprobe.run.records import write_json_atomic


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def write(run_dir: Path, **rec) -> None:
    write_json_atomic(run_dir / "result.json", {"attempts": 1, **rec})


def test_lines_per_start_and_end_and_an_eta_from_the_epochs(tmp_path, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(progress.time, "monotonic", clock)
    dirs = [tmp_path / n for n in ("a", "b", "c")]
    write(dirs[2], status="complete", test_top1=61.23456, wall_time_s=99)  # from an earlier sweep
    out = io.StringIO()
    p = SweepProgress([("none k=0", dirs[0], 10), ("spatial_shuffle k=3", dirs[1], 10), ("x k=6", dirs[2], 10)],
                      out=out)
    p.start()
    p.stop()  # the thread is not needed: poll() is called by hand below
    assert out.getvalue() == "[3/3] x k=6: skipped, already complete (61.2%)\n"
    write(dirs[0], status="running")
    write(dirs[1], status="running")
    p.poll()
    assert out.getvalue().splitlines()[1:] == ["[1/3] none k=0: started", "[2/3] spatial_shuffle k=3: started"]
    assert p.eta() is None
    clock.t += 30  # first epochs after 30 s: 20 s of start-up, 10 s per epoch (known after the second epochs)
    write(dirs[0], status="running", progress={"epoch": 1, "epochs": 10})
    write(dirs[1], status="running", progress={"epoch": 1, "epochs": 10})
    p.poll()
    assert p.eta() is None
    clock.t += 10
    write(dirs[0], status="running", progress={"epoch": 2, "epochs": 10})
    write(dirs[1], status="running", progress={"epoch": 2, "epochs": 10})
    p.poll()
    assert p.jobs[0].epoch_s() == 10 and p.jobs[0].startup_s() == 20
    assert p.eta() == pytest.approx(2 * 8 * 10 / 2)  # 8 epochs left in each of 2 jobs running side by side
    assert out.getvalue().splitlines()[-1] == "sweep: about 1m20s left (from the first epochs)"
    write(dirs[0], status="complete", test_top1=70.25, wall_time_s=112.4, progress={"epoch": 10, "epochs": 10})
    write(dirs[1], status="failed", reason="RuntimeError: boom", wall_time_s=61)
    p.poll()
    lines = out.getvalue().splitlines()
    assert lines[-2].startswith("[1/3] none k=0: 70.2% in 1m52s; 2 of 3 ended, about ")
    assert lines[-1] == "[2/3] spatial_shuffle k=3: failed after 1m01s: RuntimeError: boom; 3 of 3 ended"
    write(dirs[1], status="running", attempts=2)  # the failed run redone by a second sweep
    p.jobs[1].ended = False
    p.poll()
    assert out.getvalue().splitlines()[-1] == "[2/3] spatial_shuffle k=3: started (attempt 2)"


def test_durations():
    assert [duration(s) for s in (4.6, 59, 60, 112, 3599, 3600, 7500)] == ["5s", "59s", "1m00s", "1m52s", "59m59s",
                                                                         "1h00m", "2h05m"]


def compose_sweep(*overrides: str):
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
    OmegaConf.set_struct(cfg, False)
    cfg.hydra.job.config_name = "train"
    cfg.hydra.overrides.task = list(overrides)
    return cfg


def test_grids_sweeper_runs_the_union_of_its_grids():
    from spatialprobe.launch.sweep import sweep_overrides

    cfg = compose_sweep("experiment=demo_cifar10_kcurve")
    assert cfg.hydra.sweeper._target_ == "hydra_plugins.spatialprobe_sweeper.GridsSweeper"
    jobs = [[o for o in job if not o.startswith("experiment=")] for job in sweep_overrides(cfg)]
    assert jobs == [["method=none", "k=0"], ["method=spatial_shuffle", "k=3"], ["method=channel_shuffle", "k=3"]]
    # a command-line value replaces a grid's values in every grid; a job listed twice runs once
    jobs = sweep_overrides(compose_sweep("experiment=demo_cifar10_kcurve"), extra=["k=0,3"])
    assert [j[:2] for j in jobs] == [["method=none", "k=0"], ["method=none", "k=3"], ["method=spatial_shuffle", "k=0"],
                                     ["method=spatial_shuffle", "k=3"], ["method=channel_shuffle", "k=0"],
                                     ["method=channel_shuffle", "k=3"]]
    assert len(sweep_overrides(compose_sweep("experiment=demo_cifar10_kcurve"), extra=["method=none", "k=0"])) == 1


def test_grids_sweeper_hands_the_union_to_the_launcher_in_batches():
    from hydra_plugins.spatialprobe_sweeper import GridsSweeper

    sweeper = GridsSweeper(max_batch_size=2, grids=[{"method": "none", "k": 0}])
    sweeper.config = compose_sweep("experiment=demo_cifar10_kcurve")
    batches = sweeper.split_arguments([], 2)
    assert [len(b) for b in batches] == [2, 1] and batches[0][0][:2] == ["method=none", "k=0"]


def test_console_shows_our_lines_and_errors_only():
    keep = OwnLinesOnly()

    def rec(name, level=logging.INFO):
        return logging.LogRecord(name, level, __file__, 1, "msg", None, None)

    assert keep.filter(rec("spatialprobe")) and keep.filter(rec("spatialprobe.data"))
    assert keep.filter(rec("pytorch_lightning", logging.ERROR))
    for name in ("pytorch_lightning.utilities.rank_zero", "py.warnings", "hydra.core.utils", "spatialprobes",
                 "hydra_plugins.spatialprobe_launcher"):
        assert not keep.filter(rec(name, logging.WARNING)), name
    assert verbose_argv(["-m", "k=1"]) == ["-m", "k=1"]
    assert verbose_argv(["k=1", "-v"]) == ["k=1", "hydra/job_logging=default", "hydra/hydra_logging=default"]
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        quiet = compose("train", return_hydra_config=True).hydra.job_logging
        loud = compose("train", overrides=verbose_argv(["--verbose"]), return_hydra_config=True).hydra.job_logging
    assert quiet.handlers.console.filters == ["own"] and "filters" not in loud.handlers.console
    assert quiet.root.handlers == ["console", "file"]  # the full log still goes to the run directory


def test_cpu_precision_follows_the_cpu_flags(tmp_path, monkeypatch):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16 amx_tile\n")
    assert cpuinfo_has_bf16(str(info))
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f\n")
    assert not cpuinfo_has_bf16.__wrapped__(str(info))
    assert not cpuinfo_has_bf16.__wrapped__(str(tmp_path / "missing"))
    monkeypatch.delenv(CPU_BF16_ENV, raising=False)
    assert cpu_has_bf16() == cpuinfo_has_bf16()  # unset: this machine's flags
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train")
    expected = "bf16-mixed" if cpuinfo_has_bf16() else "32-true"
    assert cfg.trainer.precision == expected and cfg.model.channels_last is True  # trainer=cpu's speed options
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        gpu = compose("train", overrides=["trainer=gpu"])
    assert gpu.trainer.precision == "16-mixed" and gpu.model.channels_last is False


@pytest.mark.parametrize("value,precision", [("1", "bf16-mixed"), ("0", "32-true"), ("true", "bf16-mixed"),
                                             ("off", "32-true")])
def test_the_cpu_precision_can_be_forced_for_a_whole_run(value, precision, monkeypatch):
    """$SPATIALPROBE_CPU_BF16 answers "does this CPU have bfloat16" for the resolver and for evaluate,
    whatever this CPU is (docs/speed.md; the suite is run both ways, docs/development.md)."""
    from spatialprobe.evaluate import _precision

    monkeypatch.setenv(CPU_BF16_ENV, value)
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        assert compose("train").trainer.precision == precision
        assert compose("train", overrides=["trainer.precision=32-true"]).trainer.precision == "32-true"  # a pin wins
    trained_bf16 = OmegaConf.create({"trainer": {"precision": "bf16-mixed"}})
    assert _precision(trained_bf16, gpu=False) == precision  # evaluate: bf16 only where the CPU has it


def test_a_bad_forced_cpu_precision_is_one_line(monkeypatch, env, tmp_path):
    from conftest import cli

    p = cli("spatialprobe.train", ["dataset.root=/nowhere", "dry_run=true"], dict(env, **{CPU_BF16_ENV: "maybe"}),
            tmp_path)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and lines == ["spatialprobe: error: $SPATIALPROBE_CPU_BF16='maybe' is invalid: forces "
                                           "whether this CPU has bfloat16 instructions (valid: 1, 0, unset (the "
                                           "CPU's flags decide))"], p.stderr


def test_verbose_flag_reaches_hydra_as_logging_overrides(monkeypatch):
    import sys

    from spatialprobe.config.cli import hydra_entry

    seen = []
    monkeypatch.setattr(sys, "argv", ["spatialprobe-train", "-v", "model=vgg16"])
    hydra_entry(lambda: seen.append(list(sys.argv[1:])))
    assert seen == [["model=vgg16", "hydra/job_logging=default", "hydra/hydra_logging=default"]]


def test_eta_counts_the_waiting_jobs_start_up_and_epochs(tmp_path, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(progress.time, "monotonic", clock)
    dirs = [tmp_path / n for n in "abc"]
    p = SweepProgress([(n, d, 10) for n, d in zip("abc", dirs, strict=True)], out=io.StringIO())
    p.start()
    p.stop()
    for t, epoch in ((0, None), (30, 1), (40, 2)):  # two running jobs: 20 s start-up, 10 s per epoch
        clock.t = 1000 + t
        for d in dirs[:2]:
            write(d, status="running", **({"progress": {"epoch": epoch, "epochs": 10}} if epoch else {}))
        p.poll()
    # 2 x 8 epochs left, and the waiting job's start-up and 10 epochs, 2 jobs at a time
    assert p.eta() == pytest.approx((2 * 8 * 10 + 20 + 10 * 10) / 2)
