from __future__ import annotations

import contextlib
import importlib
import io
import logging
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
    """Environment of a command (a subprocess, or :func:`cli` in this process): private cache and
    run roots, offline W&B, no W&B credentials."""
    e = {k: v for k, v in os.environ.items() if k not in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_BASE_URL")}
    e.update(SPATIALPROBE_CACHE=str(tmp_path / "cache"), SPATIALPROBE_RUNS=str(tmp_path / "runs"),
             WANDB_MODE="offline", WANDB_SILENT="true", HYDRA_FULL_ERROR="0", PYTHONWARNINGS="ignore",
             NETRC=str(tmp_path / "no-netrc"), WANDB_CONFIG_DIR=str(tmp_path / "wandb-config"))  # no W&B credentials
    return e


# Overrides that make a training run take seconds on a CPU. The precision is pinned: trainer=cpu's default is
# bf16 autocast on CPUs with bfloat16 instructions and fp32 elsewhere (${sp.cpu_precision:}), and every number a
# test compares must be the same on both kinds of CPU (docs/development.md; SPATIALPROBE_CPU_BF16 runs the suite
# as on the other kind).
TINY = [
    "model.width=0.0625", "recipe.batch_size=16", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
    "dataset.verify=false", "dataset.download=false", "trainer.log_every_n_steps=1", "trainer.precision=32-true",
]


def run_cli(module: str, args: list[str], env: dict, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """``python -m <module> <args>`` in a new process: for the tests where the process is the point
    (signals, SIGKILL, launchers, one smoke test and one error line per command)."""
    return subprocess.run([sys.executable, "-m", module, *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def cli(module: str, args: list[str], env: dict | None = None, cwd: Path | None = None,
        timeout: int | None = None) -> subprocess.CompletedProcess:
    """``python -m <module> <args>`` run in this process: the module's ``main()`` with ``sys.argv``,
    the environment and the working directory of the command, its stdout / stderr captured and its
    ``SystemExit`` turned into the exit status (an uncaught exception propagates). Seconds of
    imports cheaper than :func:`run_cli`; everything the process would print or exit with is the same.
    ``timeout`` is accepted for symmetry with :func:`run_cli` and ignored."""
    import pytorch_lightning  # noqa: F401  (its logging handler binds the real stderr, not our capture)

    main = importlib.import_module(module).main
    out, err = io.StringIO(), io.StringIO()
    saved_env, saved_argv, saved_cwd = dict(os.environ), sys.argv, os.getcwd()
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    # process-wide torch settings a run may change (trainer.deterministic=true switches this on)
    saved_torch = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
                   torch.get_num_threads())
    code = 0
    try:
        if env is not None:
            os.environ.clear()
            os.environ.update(env)
        if cwd is not None:
            os.chdir(cwd)
        sys.argv = [module, *map(str, args)]
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            # a process without logging handlers prints warnings on stderr (logging's last resort); here pytest's
            # capture handlers sit on the root logger, so print them as that process would (Hydra's commands
            # replace the root's handlers with their own console and log file)
            last_resort = logging.StreamHandler(err)
            last_resort.setLevel(logging.WARNING)
            root.addHandler(last_resort)
            try:
                main()
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
                if not isinstance(exit_.code, int | None):
                    print(exit_.code, file=sys.stderr)
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        sys.argv = saved_argv
        os.chdir(saved_cwd)
        for handler in root.handlers[:]:  # Hydra's job logging: drop its handlers, put pytest's back
            if handler not in saved_handlers:
                root.removeHandler(handler)
                handler.close()
        for handler in saved_handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(saved_level)
        torch.use_deterministic_algorithms(saved_torch[0], warn_only=saved_torch[1])
        torch.set_num_threads(saved_torch[2])
    return subprocess.CompletedProcess([module, *args], code, out.getvalue(), err.getvalue())


def compose_train(*overrides: str):
    """The composed training config, as `python -m spatialprobe.train <overrides>` would see it."""
    from hydra import compose, initialize_config_dir

    from spatialprobe import CONF_DIR

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def needs_shared_cifar() -> pytest.MarkDecorator:
    return pytest.mark.skipif(not CIFAR10_JPG.is_file(), reason=f"real CIFAR-10 not found at {CIFAR10_JPG}")


def consistency_by_hand(ckpt_path, shift: int, passes: int, eval_seed: int) -> float:
    """Cons.S of a checkpoint's network on its test images, outside Lightning (docs/position.md): the views come
    from the run's evaluation seed (stream ``consistency``, epoch S: the same views for every network of a run),
    two per image and pass; the share of (image, pass) pairs whose two views get the same class."""
    from spatialprobe.data import build_datamodule
    from spatialprobe.run.streams import generator
    from spatialprobe.tasks import load_checkpoint, restore
    from spatialprobe.tasks.consistency import black, shifted_views

    ckpt, tcfg = load_checkpoint(ckpt_path)
    net = restore(ckpt, tcfg).eval()
    dm = build_datamodule(tcfg)
    dm.setup()
    g = generator(eval_seed, "consistency", epoch=shift, batch=0, batches=1)
    fill = black(tcfg.dataset.mean, tcfg.dataset.std)
    agree = total = 0
    with torch.no_grad():
        for batch in dm.test_dataloader():
            x = dm.on_after_batch_transfer(batch, 0)[0]
            for _ in range(passes):
                v1, v2 = shifted_views(x, shift, g, fill, 0)
                agree += int((net(v1).argmax(1) == net(v2).argmax(1)).sum())
                total += len(x)
    return 100.0 * agree / total
