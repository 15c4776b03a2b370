"""Experiments, sweeps/ commands, launchers, idempotent sweeps, early checks, search_k, the notebook."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from conftest import REPO, TINY, cli
from spatialprobe import CONF_DIR
from spatialprobe.config.cli import check_group_overrides, group_choices
from spatialprobe.errors import ConfigError
from spatialprobe.run.records import write_json_atomic

EXPERIMENTS = group_choices("experiment")
SWEEP_FILES = sorted(p for p in (REPO / "sweeps").glob("*.sh") if p.name != "lib.sh")


def missing_groups(experiment: str) -> list[str]:
    """Config options an experiment selects that are not in conf/ yet (e.g. a data set of another branch)."""
    text = (CONF_DIR / "experiment" / f"{experiment}.yaml").read_text()
    return [f"{g}={o}" for g, o in re.findall(r"override /(\w+): (\w+)", text) if o not in group_choices(g)]


def require_groups(experiment: str) -> None:
    """An experiment that selects an option conf/ lacks is a broken experiment: the test fails."""
    missing = missing_groups(experiment)
    assert not missing, f"experiment {experiment} selects {', '.join(missing)}, which conf/ does not have"


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_every_job_validates(experiment):
    from spatialprobe.launch.sweep import expand_jobs, validate_jobs

    require_groups(experiment)
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={experiment}"], return_hydra_config=True)
        assert cfg.experiment_name == experiment
        assert Path(str(cfg.hydra.sweep.dir)).parts[-2:] == ("sweeps", experiment)
        assert cfg.hydra.sweeper.params or cfg.hydra.sweeper.get("grids"), "an experiment states what it sweeps"
        OmegaConf.set_struct(cfg, False)
        cfg.hydra.job.config_name = "train"
        jobs = expand_jobs(cfg)  # as the sweep check sees them (the same as Hydra's, see below)
        validate_jobs(jobs)  # every combination is valid for its model (k in range, unit in range, ...)
    assert len(jobs) >= 2 and len({j.run_dir for j in jobs}) == len(jobs)
    assert all(j.run_dir.parent == Path(str(cfg.hydra.sweep.dir)) for j in jobs)
    assert all("experiment=" not in j.run_dir.name for j in jobs)


def test_fast_job_composition_matches_hydra(tmp_path):
    """compose_jobs applies plain overrides to a cached composition: the same config as Hydra's own."""
    from hydra.core.global_hydra import GlobalHydra

    from spatialprobe.launch.sweep import compose_jobs

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=vgg16_cifar100_kcurve", "seed=3"], return_hydra_config=True)
        OmegaConf.set_struct(cfg, False)
        cfg.hydra.job.config_name = "train"
        jobs = compose_jobs(cfg)
        loader = GlobalHydra.instance().config_loader()
        for job in (jobs[0], jobs[17], jobs[-1]):
            ref = loader.load_sweep_config(cfg, list(job.overrides))
            strip = lambda c: {k: v for k, v in OmegaConf.to_container(c).items() if k != "hydra"}  # noqa: E731
            assert strip(job.config) == strip(ref)
            assert job.run_dir.name == ref.hydra.job.override_dirname
    assert len(jobs) == 3 * 14 and jobs[17].config.method.name == "gap_fc" and jobs[17].config.k == 3


@pytest.mark.parametrize("experiment,extra", [
    ("squeezenet_imagenet_kcurve", []),                                 # 3 methods x K
    ("grid_cpu", ["recipe.epochs=3,5"]),                                # resolvers read dataset.grid; max_epochs reads epochs
    ("vgg16_cifar100_kcurve", ["paths.run_root=/a,/b", "k=1,2"]),       # the sweep directory reads run_root
    ("resnet18_cifar100_augshift", ["model.width=0.25,0.5", "name=x,y"]),  # a group of package _global_ (task)
    ("vgg16_cifar100_single_unit", ["method.patch_size=2,4", "method=patch_shuffle"]),
    ("resnet50_cifar100_kcurve", ["method.strip=1", "k=2,3"]),          # the master's method node is not its file
])
def test_the_sweep_check_sees_every_job_as_hydra_composes_it(experiment, extra):
    """expand_jobs (the sweep check: no copy of the config per job) gives every job the resolved config and the
    run directory of compose_jobs (Hydra's composition of each job)."""
    from spatialprobe.launch.sweep import compose_jobs, expand_jobs

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={experiment}"], return_hydra_config=True)
        OmegaConf.set_struct(cfg, False)
        cfg.hydra.job.config_name = "train"
        cfg.hydra.overrides.task = [*cfg.hydra.overrides.task, *extra]
        fast, exact = expand_jobs(cfg), compose_jobs(cfg)
    assert len(fast) == len(exact) >= 4
    for f, e in zip(fast, exact, strict=True):
        assert f.overrides == e.overrides and f.run_dir == e.run_dir
        assert f.config == {k: OmegaConf.to_container(e.config[k], resolve=True) if OmegaConf.is_config(e.config[k])
                            else e.config[k] for k in e.config if k != "hydra"}


def test_the_sweep_check_re_resolves_what_reads_a_swept_key_in_order():
    """Interpolations that read a swept key are evaluated again, each after the ones it reads."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from spatialprobe.launch.sweep import _Composition

    hydra = {"job": {"config": {"override_dirname": {"exclude_keys": [], "kv_sep": "=", "item_sep": ","}}},
             "sweep": {"dir": "/sweeps/${b}", "subdir": "${hydra.job.override_dirname}"}}
    [k5] = OverridesParser.create().parse_overrides(["k=5"])
    plain = _Composition(OmegaConf.create({"b": "x${a}-${k}", "a": "${k}", "k": 1, "hydra": hydra}))
    assert plain.quick([k5]) == ({"b": "x5-5", "a": 5, "k": 5}, "/sweeps/x5-5")
    cfg = OmegaConf.create({"b": "x${a}-${k}", "a": "${k}", "k": 1, "c": "${sp.mul:${k},3}", "hydra": hydra})
    assert _Composition(cfg).quick([k5]) == ({"b": "x5-5", "a": 5, "k": 5, "c": 15}, "/sweeps/x5-5")  # by OmegaConf
    assert OmegaConf.to_container(cfg, resolve=False)["k"] == 1  # the composition is left as it was


# The scripts with the most jobs (~300 each to compose and validate, ~45 s apiece) or the most multiruns
# (b_table2: six) run with the slow tests.
HEAVY = {"a4_04_imagenet", "a4_06_patch_size", "b_table2"}


@pytest.mark.parametrize("script,launcher,process",
                         [pytest.param(p, "local", False, id=f"{p.stem}-local",
                                       marks=[pytest.mark.slow] if p.stem in HEAVY else [])
                          for p in SWEEP_FILES]
                         + [pytest.param(REPO / "sweeps" / "a4_02_spatial_vs_channel.sh", "slurm", True,
                                         id="a4_02-slurm")])
def test_every_sweeps_file_command_parses(script, launcher, process, env, tmp_path):
    """Each sweeps/ file's multiruns, dry (every job composed and validated, nothing run); the SLURM form once
    (every script passes hydra/launcher=$LAUNCHER the same way, through sweeps/lib.sh).

    bash runs the script for real. Its python commands run for real too in the SLURM case; in the
    others ``$PY`` is a recorder and the recorded command lines run in this process afterwards (the
    same arguments, the same entry point, without a python start-up per command)."""
    text = script.read_text()
    assert 'source "$(dirname "$0")/lib.sh"' in text  # the launcher, DRY_RUN and PY are handled there
    for experiment in re.findall(r"\b(\w+_(?:kcurve|matrix|channel|unit|size|downsample|augmentation|ablation|field))\b",
                                 text):
        if experiment in EXPERIMENTS:
            require_groups(experiment)
    fake_bin = tmp_path / "bin"  # the SLURM form only needs sbatch to exist for a dry run
    fake_bin.mkdir()
    (fake_bin / "sbatch").write_text("#!/bin/sh\nexit 1\n")
    (fake_bin / "sbatch").chmod(0o755)
    record = tmp_path / "commands"
    (fake_bin / "py").write_text(f'#!/usr/bin/env bash\n(IFS=$\'\\x1f\'; echo "$*") >> "{record}"\n')
    (fake_bin / "py").chmod(0o755)
    env.update(DRY_RUN="1", LAUNCHER=launcher, PY=sys.executable if process else str(fake_bin / "py"),
               PATH=f"{fake_bin}:{env['PATH']}")
    p = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    stdout = p.stdout
    if not process:
        commands = [line.split("\x1f") for line in record.read_text().splitlines()]
        assert commands and all(c[:3] == ["-m", "spatialprobe.train", "-m"] for c in commands), commands
        for command in commands:
            assert f"hydra/launcher={launcher}" in command and "dry_run=true" in command
            for arg in command:
                if arg.startswith("experiment="):
                    require_groups(arg.removeprefix("experiment="))
            run = cli("spatialprobe.train", command[2:], env, REPO)
            assert run.returncode == 0, (command, run.stderr[-3000:])
            stdout += run.stdout
    counts = [int(n) for n in re.findall(r"dry run: (\d+) job", stdout)]
    assert counts and all(n >= 1 for n in counts)
    assert text.count("\nsweep ") + text.count("    sweep ") <= len(counts)
    assert not (tmp_path / "runs").exists()  # a dry run writes nothing


def test_group_choices_include_experiments_and_launchers():
    check_group_overrides(["experiment=vgg16_cifar100_kcurve", "hydra/launcher=slurm", "hydra/launcher=basic"])
    with pytest.raises(ConfigError, match="experiment='vgg16_cifar1000_kcurve' is invalid: unknown experiment"):
        check_group_overrides(["-m", "experiment=vgg16_cifar1000_kcurve"])
    with pytest.raises(ConfigError, match="hydra/launcher='pbs'.*local, slurm"):
        check_group_overrides(["hydra/launcher=pbs"])


@pytest.mark.parametrize(
    "args,needle",
    [
        # (an unknown experiment and a K out of range: tests/test_bad_input.py)
        (["experiment=resnet50_cifar100_patch_size", "method.unit=range(14,17)"], "method.unit=16 is invalid"),
    ],
)
def test_bad_sweeps_fail_before_any_job(args, needle, env, tmp_path):
    p = cli("spatialprobe.train", ["-m", *args], env, tmp_path)
    assert p.returncode == 2, (p.stdout[-2000:], p.stderr[-2000:])
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spatialprobe: error: ") and needle in lines[0], lines
    assert not (tmp_path / "runs").exists()  # no sweep dir, no run dir, nothing launched


def test_slurm_launcher_without_sbatch_is_one_clear_line(env, tmp_path):
    (tmp_path / "bin").mkdir()
    env["PATH"] = str(tmp_path / "bin")  # a laptop: no SLURM commands
    p = cli("spatialprobe.train", ["-m", "experiment=vgg16_cifar100_spatial_vs_channel", "hydra/launcher=slurm"],
                env, tmp_path)
    assert p.returncode == 2
    assert p.stderr.strip() == ("spatialprobe: error: hydra/launcher=slurm needs SLURM's sbatch, which is not on PATH "
                                "on this machine; run the sweep on a cluster login node, or locally with "
                                "hydra/launcher=local")
    assert not (tmp_path / "runs").exists()


def read(run_dir: Path) -> dict:
    return json.loads((run_dir / "result.json").read_text())


@pytest.mark.slow  # half a minute of real local-launcher jobs: CI runs it with make test-slow
def test_sweep_is_idempotent_and_redoes_failed_runs(fake_cifar10, env, tmp_path):
    """A real tiny K-sweep: its first job through the local submitit launcher (a subprocess), the
    sweep then in this process with W&B offline: complete runs are skipped whatever the launcher or
    logger, a re-run trains nothing, a failed run is redone."""
    from wandb_offline import run_contents

    sweep_dir = tmp_path / "sweeps" / "tiny"
    base = ["-m", "dataset=cifar10", f"dataset.root={fake_cifar10}", "model=resnet18", *TINY,
            "method=spatial_shuffle", f"hydra.sweep.dir={sweep_dir}"]
    args = [*base, "k=0,2"]
    p = cli("spatialprobe.train", [*base, "k=2", "hydra/launcher=local"], env, tmp_path)
    assert p.returncode == 0, (p.stdout[-3000:], p.stderr[-3000:])
    assert "1 of 1 runs complete" in p.stdout
    assert f"sweep {sweep_dir}: 1 runs (hydra/launcher=local, 1 at a time)" in p.stdout
    assert re.search(r"\[1/1\] spatial_shuffle k=2: \d+\.\d% in \d+", p.stdout), p.stdout
    assert "GPU available" not in p.stdout + p.stderr  # the console holds the project's lines only
    assert list((sweep_dir / ".submitit").glob("*/*_result.pkl"))  # ran as a submitit job
    p = cli("spatialprobe.train", [*args, "logger=wandb"], env, tmp_path)
    assert p.returncode == 0, (p.stdout[-3000:], p.stderr[-3000:])
    assert "2 of 2 runs complete" in p.stdout and "[2/2] spatial_shuffle k=2: skipped, already complete" in p.stdout
    runs = sorted(d for d in sweep_dir.iterdir() if (d / "result.json").is_file())
    assert [d.name for d in runs] == [f"dataset=cifar10,k={k},method=spatial_shuffle,model.width=0.0625,model=resnet18,"
                                      "recipe.batch_size=16,trainer.max_epochs=1,trainer.precision=32-true"  # neutral keys left out
                                      for k in (0, 2)]
    first = {d: read(d) for d in runs}
    assert [r["k"] for r in first.values()] == [0, 2] and all(r["status"] == "complete" for r in first.values())
    assert all(r["attempts"] == 1 for r in first.values())
    # W&B: group = the sweep, tags = model/dataset/method/k
    wb = run_contents(next((runs[0] / "wandb").glob("offline-run-*/run-*.wandb")))
    assert wb["group"] == "tiny" and set(wb["tags"]) == {"model:resnet18", "dataset:cifar10", "method:spatial_shuffle",
                                                           "k:0"}

    # the same sweep again (CSV logger): nothing is trained, no record changes
    p = cli("spatialprobe.train", args, env, tmp_path)
    assert p.returncode == 0 and p.stdout.count("skipped, already complete") == 2, p.stdout[-2000:]
    assert {d: read(d) for d in runs} == first

    # a failed run is redone, the complete one left alone
    rec = read(runs[1])
    rec.update(status="failed", reason="RuntimeError: node died")
    (runs[1] / "result.json").write_text(json.dumps(rec))
    p = cli("spatialprobe.train", [*args, "dry_run=true"], env, tmp_path)
    assert p.returncode == 0 and "[complete]" in p.stdout and "[failed]" in p.stdout
    p = cli("spatialprobe.train", args, env, tmp_path)
    assert p.returncode == 0 and p.stdout.count("skipped, already complete") == 1, p.stdout[-2000:]
    assert read(runs[0]) == first[runs[0]]
    redone = read(runs[1])
    assert redone["status"] == "complete" and redone["attempts"] == 2 and redone["started"] >= first[runs[1]]["finished"]


def test_a_failing_job_does_not_stop_the_sweep(fake_cifar10, env, tmp_path):
    sweep_dir = tmp_path / "sweep"
    p = cli("spatialprobe.train", ["-m", "dataset=cifar10", f"dataset.root={fake_cifar10}", *TINY,
                                       "recipe.lr=1e30,0.01", f"hydra.sweep.dir={sweep_dir}"], env, tmp_path)
    assert p.returncode == 1, p.stdout[-2000:]
    assert "1 of 2 runs complete" in p.stdout and "failed: " in p.stdout and "DivergenceError" in p.stdout
    status = {read(d)["config"]["recipe"]["lr"]: read(d)["status"] for d in sweep_dir.glob("*recipe.lr=*")}
    assert status == {0.01: "complete", 1e30: "failed"}


# ---- search_k -------------------------------------------------------------------------------------

def test_bisection_trains_at_most_log2_models_and_finds_the_largest_k():
    from spatialprobe.search_k import bisect_k, max_trainings

    for k_max in (1, 2, 3, 8, 13, 16, 50):
        for true_k in range(k_max + 1):
            calls = []

            def acc(k, true_k=true_k, calls=calls):
                calls.append(k)
                return 70.0 - 0.1 * k if k <= true_k else 50.0 - k  # non-increasing, drops after true_k

            found, seen = bisect_k(acc, k_max, tolerance=1.0 if k_max <= 10 else 5.1)
            assert found == true_k, (k_max, true_k)
            assert len(calls) == len(set(calls)) <= max_trainings(k_max) == math.ceil(math.log2(k_max + 1)) + 1
            assert set(seen) == set(calls)


def test_search_k_runs_ordinary_runs_where_the_sweep_would(tmp_path, monkeypatch):
    """In process, train.run replaced by synthetic accuracies: the run dirs it uses and the K it returns."""
    from hydra.core.hydra_config import HydraConfig

    from spatialprobe import search_k

    monkeypatch.setenv("SPATIALPROBE_RUNS", str(tmp_path / "runs"))
    trained = []

    def fake_run(cfg, run_dir):
        assert "search" not in cfg and "hydra" not in cfg and cfg.method.name == "conv1x1"
        run_dir.mkdir(parents=True)
        trained.append(int(cfg.k))
        return {"status": "complete", "test_top1": 74.0 if cfg.k <= 7 else 60.0}

    overrides = ["experiment=vgg16_cifar100_kcurve", "method=conv1x1", "search.tolerance=1.0"]
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("search_k", overrides=overrides, return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        res = search_k.search(cfg, run_fn=fake_run)
    assert res["k"] == 7 and res["baseline"] == 74.0 and res["k_max"] == 13
    assert len(trained) <= math.ceil(math.log2(14)) + 1 == 5 and trained[0] == 0
    sweep = tmp_path / "runs" / "sweeps" / "vgg16_cifar100_kcurve"
    dirs = sorted(d.name for d in sweep.iterdir() if d.is_dir())
    assert dirs == sorted(f"k={k},method=conv1x1" for k in trained)  # the multirun's own run dirs
    assert json.loads((sweep / "search_k-conv1x1-tol1.json").read_text())["k"] == 7


def test_search_metric_picks_the_record_field_the_bisection_reads(tmp_path, monkeypatch):
    """search.metric (default test_top1) names the record field compared with the baseline: the same runs
    give K=7 by test_top1 and K=3 by val_top1_best; a field the records lack is one line, naming the key."""
    from hydra.core.hydra_config import HydraConfig

    from spatialprobe import search_k
    from spatialprobe.errors import UserError

    def fake_run(cfg, run_dir):
        run_dir.mkdir(parents=True, exist_ok=True)
        k = int(cfg.k)
        return {"status": "complete", "test_top1": 74.0 if k <= 7 else 60.0, "val_top1_best": 80.0 if k <= 3 else 70.0}

    def searched(tag, *extra):
        monkeypatch.setenv("SPATIALPROBE_RUNS", str(tmp_path / tag))
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            cfg = compose("search_k", overrides=["experiment=vgg16_cifar100_kcurve", "method=conv1x1",
                                                 "search.tolerance=1.0", *extra], return_hydra_config=True)
            HydraConfig.instance().set_config(cfg)
            return search_k.search(cfg, run_fn=fake_run)

    default = searched("a")
    assert default["metric"] == "test_top1" and default["k"] == 7 and default["baseline"] == 74.0
    by_val = searched("b", "search.metric=val_top1_best")
    assert by_val["metric"] == "val_top1_best" and by_val["k"] == 3 and by_val["baseline"] == 80.0
    assert all("val_top1_best" in r for r in by_val["runs"])
    with pytest.raises(UserError, match="the record has no test_cons8; choose search.metric"):
        searched("c", "search.metric=test_cons8")


def test_search_k_needs_one_configuration(tmp_path, monkeypatch):
    from hydra.core.hydra_config import HydraConfig

    from spatialprobe import search_k
    from spatialprobe.errors import UserError

    monkeypatch.setenv("SPATIALPROBE_RUNS", str(tmp_path / "runs"))
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("search_k", overrides=["experiment=vgg16_cifar100_kcurve"], return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        with pytest.raises(UserError, match="also sweeps method .* e.g. method=conv1x1"):
            search_k.search(cfg, run_fn=lambda *a: pytest.fail("trained"))
    assert not (tmp_path / "runs").exists()


def test_search_k_bisects_real_trainings_end_to_end_then_the_sweep_skips_its_runs(fake_cifar10, env, tmp_path):
    """K_max=3 of a ResNet-18 with channel shuffle: the baseline, K=2, then K=1 or K=3 as the measured
    accuracies decide. The path and the answer must be the bisection of the records' own numbers."""
    from spatialprobe.search_k import bisect_k

    sweep_dir = tmp_path / "sweeps" / "s"
    common = ["dataset=cifar10", f"dataset.root={fake_cifar10}", "model=resnet18", *TINY, "trainer.max_epochs=2",
              "method=channel_shuffle", f"hydra.sweep.dir={sweep_dir}"]
    search = [*common, "search.k_max=3", "search.tolerance=2"]
    p = cli("spatialprobe.search_k", search, env, tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    trained = [int(k) for k in re.findall(r"search_k: K=(\d+) ->", p.stdout)]
    acc = {read(d)["k"]: read(d)["test_top1"] for d in sweep_dir.iterdir() if (d / "result.json").is_file()}
    assert sorted(acc) == sorted(trained) and len(trained) == 3 and trained[:2] == [0, 2]
    calls = []
    expected, _ = bisect_k(lambda k: calls.append(k) or acc[k], 3, 2.0)  # the bisection of the measured numbers
    assert calls == trained
    summary = json.loads((sweep_dir / "search_k-channel_shuffle-tol2.json").read_text())
    assert summary["k"] == expected and summary["baseline"] == acc[0] and summary["trained"] == 3
    assert [r["k"] for r in summary["runs"]] == trained and all(r["status"] == "complete" for r in summary["runs"])
    within = [k for k in acc if acc[k] >= acc[0] - 2.0]
    assert expected in within and (expected == 3 or expected + 1 not in within or expected + 1 not in acc)
    last = p.stdout.strip().splitlines()[-1]
    assert f"K={expected} of 3" in last and "3 runs (at most 3" in last
    # a repeated search trains nothing; the multirun of the same K skips the search's runs
    again = cli("spatialprobe.search_k", search, env, tmp_path)
    assert again.returncode == 0 and again.stdout.count("skipped, already complete") == 3
    p = cli("spatialprobe.train", ["-m", *common, f"k={','.join(map(str, trained))}", "dry_run=true"], env, tmp_path)
    assert p.returncode == 0 and p.stdout.count("[complete]") == 3, p.stdout


def test_dry_run_lists_every_state_and_shared_directories_are_refused(env, tmp_path):
    """docs/sweeps.md: dry_run=true lists to do / complete / failed / interrupted / running (a live run.lock
    elsewhere); two jobs that would share a run directory (a swept key that stays out of the directory name) are
    refused before anything runs."""
    import time

    from spatialprobe.run.lock import Holder

    sweep_dir = tmp_path / "sweep"
    args = ["-m", "model=resnet18", "model.width=0.0625", "method=spatial_shuffle", "k=0,1,2,3,4",
            f"hydra.sweep.dir={sweep_dir}"]
    states = {0: "complete", 1: "running", 2: "failed", 4: "running"}
    for k, status in states.items():
        write_json_atomic(sweep_dir / f"k={k},method=spatial_shuffle,model.width=0.0625,model=resnet18" / "result.json",
                          {"status": status})
    now = time.time()  # k=4 is trained on another node right now; k=1's process is gone (killed)
    (sweep_dir / "k=4,method=spatial_shuffle,model.width=0.0625,model=resnet18" / "run.lock").write_text(
        json.dumps(Holder("training", "node9", 77, None, None, now, now, "x").__dict__))
    p = cli("spatialprobe.train", [*args, "dry_run=true"], env, tmp_path)
    assert p.returncode == 0, p.stderr
    listed = dict(re.findall(r"\[([a-z ]+)(?::[^]]*)?\] \S+/(k=\d)", p.stdout))
    listed = {int(k[2:]): state for state, k in listed.items()}
    assert listed == {**states, 1: "interrupted", 3: "to do"}, p.stdout
    assert "[running: pid 77 on node9 (heartbeat " in p.stdout
    # dataset.root is result-neutral and left out of the directory name: sweeping it would overwrite runs
    p = cli("spatialprobe.train", [*args, "dataset.root=/a,/b", "dry_run=true"], env, tmp_path)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "would share the run directory" in p.stderr and "dataset.root=/a" in p.stderr and "dataset.root=/b" in p.stderr
    assert sorted(d.name for d in sweep_dir.iterdir()) == sorted(
        f"k={k},method=spatial_shuffle,model.width=0.0625,model=resnet18" for k in states)  # nothing created


# ---- notebook ---------------------------------------------------------------------------------------

def test_figures_notebook_executes_against_a_collected_table(tmp_path):
    import nbformat
    from nbclient import NotebookClient

    from test_collect_plot import synthetic_table

    table = synthetic_table(tmp_path)
    nb = nbformat.read(REPO / "notebooks" / "figures.ipynb", as_version=4)
    os.environ["SPATIALPROBE_TABLE"] = str(table)
    try:
        NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        del os.environ["SPATIALPROBE_TABLE"]
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)
    assert any("Most compressed" in o.get("data", {}).get("text/markdown", "") for o in outputs)
    assert (tmp_path / "figures" / "kcurve_vgg16_cifar100.png").is_file()


def test_launcher_configs(tmp_path):
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        slurm = compose("train", overrides=["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4"],
                        return_hydra_config=True).hydra.launcher
        local = compose("train", overrides=["hydra/launcher=local"], return_hydra_config=True).hydra.launcher
    assert slurm._target_.endswith("SlurmLauncher") and slurm.tasks_per_node == 4  # one task per device (DDP)
    for key in ("partition", "gpus_per_node", "cpus_per_task", "mem_gb", "timeout_min", "signal_delay_s",
                "max_num_timeout", "array_parallelism", "setup"):
        assert key in slurm, key
    assert slurm.timeout_min >= 10 and slurm.max_num_timeout > 0 and slurm.signal_delay_s > 0
    assert local._target_ == "hydra_plugins.spatialprobe_launcher.BoundedLocalLauncher" and local.max_parallel == 1
    # local.yaml builds on submitit's local config: every key of it, only a few set again
    from hydra_plugins.hydra_submitit_launcher.config import LocalQueueConf

    assert set(OmegaConf.structured(LocalQueueConf)) - {"_target_"} <= set(local)
    local_yaml = yaml.safe_load((CONF_DIR / "hydra" / "launcher" / "local.yaml").read_text())
    assert local_yaml["defaults"] == ["spatialprobe_local"]
    assert set(local_yaml) == {"defaults", "max_parallel", "gpus_per_node", "timeout_min"}
    # slurm.yaml builds on submitit's SLURM config plus wait / figures_job (submit and return)
    from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf

    assert set(OmegaConf.structured(SlurmQueueConf)) - {"_target_"} <= set(slurm)
    assert slurm._target_ == "hydra_plugins.spatialprobe_launcher.SubmitSlurmLauncher"
    assert slurm.wait is True and slurm.figures_job is True
    assert yaml.safe_load((CONF_DIR / "hydra" / "launcher" / "slurm.yaml").read_text())["defaults"] == [
        "spatialprobe_slurm"]


def test_sweep_scripts_quote_the_checkpoint_paths_they_pass_to_hydra():
    """Run directories hold '=' and ',' (k=3,method=spatial_shuffle): unquoted, Hydra's override grammar
    rejects such a path; quoted, it arrives whole. Every ckpt= / checkpoint= of sweeps/*.sh is quoted."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    path = "/runs/sweeps/x/k=3,method=spatial_shuffle/checkpoints/last.ckpt"
    assert OverridesParser.create().parse_overrides([f"ckpt='{path}'"])[0].value() == path
    with pytest.raises(Exception, match="mismatched input"):
        OverridesParser.create().parse_overrides([f"ckpt={path}"])
    uses = [(script.name, line.strip()) for script in sorted((REPO / "sweeps").glob("*.sh"))
            for line in script.read_text().splitlines() if re.search(r"\b(ckpt|checkpoint)=", line)
            and not line.lstrip().startswith("#")]
    assert len(uses) >= 15
    for name, line in uses:
        for value in re.findall(r"\b(?:ckpt|checkpoint)=(\S+)", line):
            assert value.startswith(("\"'", "'")), (name, line)
