"""spatialprobe as a lab installs it: a real wheel in a fresh virtual environment, run from outside the
repository (no network: the environment reuses the installed dependencies, not the checkout)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from conftest import REPO, TINY


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation",
                        "--no-index", "-q", "-w", str(out)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    (path,) = out.glob("spatialprobe-*.whl")
    return path


def test_the_wheel_holds_every_config_and_the_type_marker(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = sorted(str(p.relative_to(REPO)) for p in (REPO / "conf").rglob("*.yaml"))
    assert configs and all(f"spatialprobe/{c}" in names for c in configs)  # conf/... -> spatialprobe/conf/...
    assert "spatialprobe/py.typed" in names and "hydra_plugins/spatialprobe_launcher/__init__.py" in names
    data = [p.relative_to(REPO / "src") for d in ("papers", "assets") for p in (REPO / "src/spatialprobe/report" / d).iterdir()
            if p.name != "__pycache__"]
    assert data and all(str(p) in names for p in data)  # the papers' numbers, the results site's CSS and script


@pytest.mark.slow
def test_an_installed_wheel_runs_a_dry_run_and_a_tiny_training_outside_the_repository(wheel, fake_cifar10, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # the dependencies of this environment, after the new one's own site-packages (never the checkout's code)
    Path(site, "zz_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # --target: straight into the new environment (pip would see this environment's editable install as the
    # same version and skip it)
    p = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", site, "-q",
                        str(wheel)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(SPATIALPROBE_CACHE=str(tmp_path / "cache"), WANDB_MODE="offline")

    def run(*args):
        return subprocess.run([str(python), "-m", *args], cwd=work, env=env, capture_output=True, text=True,
                              timeout=600)

    where = run("spatialprobe.train", "--cfg", "job")  # Hydra finds the configs inside the package
    assert where.returncode == 0 and "recipe:" in where.stdout, where.stderr[-2000:]
    located = subprocess.run([str(python), "-c", "import spatialprobe; print(spatialprobe.__file__, spatialprobe.CONF_DIR)"],
                             cwd=work, env=env, capture_output=True, text=True).stdout.split()
    assert located[0].startswith(site) and located[1] == str(Path(site) / "spatialprobe" / "conf")
    dry = run("spatialprobe.train", "-m", "method=spatial_shuffle", "k=1,2", "dry_run=true")
    assert dry.returncode == 0 and "dry run: 2 job(s)" in dry.stdout, dry.stderr[-2000:]
    trained = run("spatialprobe.train", "dataset=cifar10", f"dataset.root={fake_cifar10}", *TINY,
                  "trainer.limit_train_batches=2", f"hydra.run.dir={work / 'run'}")
    assert trained.returncode == 0, trained.stderr[-3000:]
    rec = json.loads((work / "run" / "result.json").read_text())
    assert rec["status"] == "complete" and rec["epochs"] == 1
