"""The bad-input catalogue (README "Troubleshooting: bad input"), one case per row, as a user meets it.

Every case runs the real command in a subprocess and must end with: a non-zero exit status, one
line on stderr ``spatialprobe: error: ...`` that names the key (or argument), the bad value and the
valid choices where there are any, no traceback, and no result record claiming ``complete``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import TINY, run_cli

DATA = ["dataset=cifar10", "dataset.root={cifar}", *TINY]

# (id, module, arguments, what the one line must contain)
CASES = [
    ("unknown-model", "spatialprobe.train", ["model=resnet999"],
     ["model='resnet999' is invalid: unknown model (valid: ", "resnet18"]),
    ("unknown-method", "spatialprobe.train", ["method=spatial_shufle"],
     ["method='spatial_shufle' is invalid", "spatial_shuffle", "(valid: "]),
    ("unknown-logger", "spatialprobe.train", ["logger=tensorboard"], ["logger='tensorboard' is invalid", "csv, wandb"]),
    ("k-beyond-the-model", "spatialprobe.train", [*DATA, "model=vgg16", "method=conv1x1", "k=14"],
     ["k=14 is invalid", "(valid: 0..13)"]),
    ("k-without-method", "spatialprobe.train", [*DATA, "k=3"], ["k=3 is invalid", "(valid: 0)"]),
    ("bad-downsample", "spatialprobe.train", [*DATA, "method=conv1x1", "k=2", "method.downsample=bilinear"],
     ["method.downsample='bilinear' is invalid", "avgpool, maxpool, stride"]),
    ("patch-size-zero", "spatialprobe.train", [*DATA, "method=patch_shuffle", "k=1", "method.patch_size=0"],
     ["method.patch_size=0 is invalid", ">= 1"]),
    ("unknown-optimizer", "spatialprobe.train", [*DATA, "recipe.optimizer=adagrad"],
     ["recipe.optimizer='adagrad' is invalid", "sgd, adam"]),
    ("zero-epochs", "spatialprobe.train", [*DATA, "trainer.max_epochs=0"], ["trainer.max_epochs=0 is invalid", ">= 1"]),
    ("negative-width", "spatialprobe.train", [*DATA, "model.width=-1"], ["model.width=-1", "is invalid"]),
    ("bad-only-jobs", "spatialprobe.train", [*DATA, "debug.only_jobs=first"], ["debug.only_jobs='first' is invalid",
                                                                               "[1,3]"]),
    ("missing-data", "spatialprobe.train", ["dataset=cifar100", "dataset.root={tmp}/nowhere", "dataset.download=false",
                                            *TINY[:3]], ["nowhere"]),
    ("unwritable-output", "spatialprobe.train", [*DATA, "hydra.run.dir=/dev/null/run"],
     ["hydra.run.dir='/dev/null/run'", "not writable"]),
    ("sweep-k-out-of-range", "spatialprobe.train", ["-m", "experiment=vgg16_cifar100_kcurve", "k=range(10,15)"],
     ["k=14 is invalid", "(valid: 0..13)", "nothing was launched"]),
    ("unknown-experiment", "spatialprobe.train", ["-m", "experiment=vgg16_cifar1000_kcurve"],
     ["experiment='vgg16_cifar1000_kcurve' is invalid: unknown experiment (valid: ", "vgg16_cifar100_kcurve"]),
    ("evaluate-missing-checkpoint", "spatialprobe.evaluate", ["ckpt={tmp}/none.ckpt"],
     ["ckpt='", "none.ckpt", "no such checkpoint file"]),
    ("evaluate-not-a-checkpoint", "spatialprobe.evaluate", ["ckpt={tmp}/notes.txt"], ["notes.txt': unreadable checkpoint"]),
    ("evaluate-trainable-method", "spatialprobe.evaluate", ["ckpt={tmp}/notes.txt", "method=gap_fc", "k=2"],
     ["method='gap_fc' is invalid", "spatial_shuffle, patch_shuffle, channel_shuffle"]),
    ("inspect-k-out-of-range", "spatialprobe.inspect", ["model=resnet18", "method=conv1x1", "k=99"],
     ["k=99 is invalid", "(valid: 0..8)"]),
    ("inspect-unknown-dataset", "spatialprobe.inspect", ["dataset=mnist"], ["dataset='mnist' is invalid", "cifar100"]),
    ("collect-no-records", "spatialprobe.collect", ["{tmp}/empty"], ["no result records", "empty"]),
    ("collect-no-such-dir", "spatialprobe.collect", ["{tmp}/nosuchdir"], ["nosuchdir: no such directory"]),
    ("plot-missing-columns", "spatialprobe.plot", ["{tmp}/thin.csv"],
     ["thin.csv: table lacks the required column(s)", "test_top1"]),
    ("plot-no-table", "spatialprobe.plot", ["{tmp}/none.csv"], ["none.csv: no such table"]),
    ("wandb-online-without-credentials", "spatialprobe.train", [*DATA, "logger=wandb", "logger.mode=online"],
     ["logger.mode='online' is invalid: no W&B credentials", "wandb login", "WANDB_API_KEY", "logger.mode=offline",
      "wandb sync"]),
    ("wandb-online-sweep-job-without-credentials", "spatialprobe.train",
     ["-m", *DATA, "k=0", "logger=wandb", "logger.mode=offline,online", "hydra.sweep.dir={tmp}/sweep"],
     ["logger.mode='online' is invalid: no W&B credentials", "in sweep job:", "nothing was launched"]),
    ("wandb-unknown-mode", "spatialprobe.train", [*DATA, "logger=wandb", "logger.mode=offlien"],
     ["logger.mode='offlien' is invalid", "offline, online, disabled, dryrun (= offline)"]),
    ("plot-wandb-online-without-credentials", "spatialprobe.plot", ["{tmp}/thin.csv", "--wandb", "--wandb-mode=online"],
     ["--wandb-mode='online' is invalid: no W&B credentials", "wandb login"]),
    ("plot-negative-tolerance", "spatialprobe.plot", ["{tmp}/thin.csv", "--tolerance", "-1"],
     ["--tolerance=-1.0 is invalid", ">= 0"]),
]


def test_the_catalogue_is_big_and_covers_every_entry_point():
    assert len(CASES) >= 15 and len({c[0] for c in CASES}) == len(CASES)
    assert {c[1] for c in CASES} == {f"spatialprobe.{m}" for m in ("train", "evaluate", "inspect", "collect", "plot")}


@pytest.mark.parametrize("module,args,needles", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line(module, args, needles, fake_cifar10, env, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("not a checkpoint\n")
    (tmp_path / "thin.csv").write_text("model,dataset,k\nvgg16_bn,cifar100,0\n")
    args = [a.format(tmp=tmp_path, cifar=fake_cifar10) for a in args]
    if module == "spatialprobe.train" and not any(a.startswith("hydra.run.dir=") for a in args):
        args.append(f"hydra.run.dir={tmp_path / 'run'}")
    p = run_cli(module, args, env, tmp_path, timeout=300)
    assert p.returncode != 0, p.stdout[-2000:]
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert lines, "no message on stderr"
    last = lines[-1]
    assert last.startswith("spatialprobe: error: "), p.stderr[-3000:]
    assert len([line for line in lines if line.startswith("spatialprobe: error: ")]) == 1
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    for needle in needles:
        assert needle.format(tmp=tmp_path) in last, last
    for rec in tmp_path.rglob("result.json"):  # nothing half-written claims success
        assert json.loads(rec.read_text()).get("status") != "complete", rec
    assert not list(Path(tmp_path).rglob("*.ckpt")), "a checkpoint was written"
