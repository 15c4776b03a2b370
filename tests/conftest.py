from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SPATIALPROBE_SHARED", REPO.parent / "shared"))
CIFAR10_JPG = SHARED / "data" / "cifar10-jpg.tar.gz"

sys.path.insert(0, str(Path(__file__).parent))

# The in-process tests use tiny tensors: one thread is faster, and immune to a busy machine.
import torch  # noqa: E402

torch.set_num_threads(1)

from fakedata import make_cifar_batches  # noqa: E402


@pytest.fixture(scope="session")
def fake_cifar10(tmp_path_factory) -> Path:
    return make_cifar_batches(tmp_path_factory.mktemp("cifar10"), "cifar10", per_batch=32, test=64)


@pytest.fixture(scope="session")
def fake_cifar100(tmp_path_factory) -> Path:
    return make_cifar_batches(tmp_path_factory.mktemp("cifar100"), "cifar100", per_batch=40, test=64)


@pytest.fixture()
def env(tmp_path) -> dict:
    """Environment for subprocess runs: private cache and run roots, offline W&B."""
    e = {k: v for k, v in os.environ.items() if k not in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL")}
    e.update(SPATIALPROBE_CACHE=str(tmp_path / "cache"), SPATIALPROBE_RUNS=str(tmp_path / "runs"),
             WANDB_MODE="offline", WANDB_SILENT="true", HYDRA_FULL_ERROR="0", PYTHONWARNINGS="ignore",
             NETRC=str(tmp_path / "no-netrc"), WANDB_CONFIG_DIR=str(tmp_path / "wandb-config"))  # no W&B credentials
    return e


# Overrides that make a training run take seconds on a CPU.
TINY = [
    "model.width=0.0625", "recipe.batch_size=16", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
    "dataset.verify=false", "dataset.download=false", "trainer.log_every_n_steps=1",
]


def run_cli(module: str, args: list[str], env: dict, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def compose_train(*overrides: str):
    """The composed training config, as `python -m spatialprobe.train <overrides>` would see it."""
    from hydra import compose, initialize_config_dir

    from spatialprobe import CONF_DIR

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def needs_shared_cifar() -> pytest.MarkDecorator:
    return pytest.mark.skipif(not CIFAR10_JPG.is_file(), reason=f"real CIFAR-10 not found at {CIFAR10_JPG}")
