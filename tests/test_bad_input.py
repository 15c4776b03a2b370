"""The bad-input catalogue (docs/troubleshooting.md, "Troubleshooting: bad input"), one case per row, as a user meets it.

Every case runs the real command (its ``main()`` with the command line as ``sys.argv``) and must end
with: exit status 2, one line on stderr ``spatialprobe: error: ...`` that names the key (or
argument), the bad value and the valid choices where there are any, no traceback, and no result
record claiming ``complete``. A few cases (one or two per command, marked ``process``) run as a
real subprocess, so the contract is checked end to end as a shell sees it; the others run the same
entry point in this process (seconds of imports cheaper, the same stdout, stderr and exit status).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import REPO, TINY, cli, run_cli

DATA = ["dataset=cifar10", "dataset.root={cifar}", *TINY]
ANY_SET = [a for a in TINY if not a.startswith(("dataset.verify=", "dataset.download="))]  # no md5 check, no download
VOC = ["task=detect", "dataset=voc", "model.width=0.0625", "trainer.max_epochs=1", "dataset.num_workers=0"]


def broken_voc_trees(tmp: Path) -> None:
    """Fake VOC trees with one fault each: no Annotations folder, a truncated XML file, an unknown class."""
    from fakedata import make_voc, voc_xml

    sets = (("2007", "trainval", 3), ("2012", "trainval", 2), ("2007", "test", 2))
    for name in ("voc_noann", "voc_badxml", "voc_badclass"):
        make_voc(tmp / name, sets)
    ann = tmp / "voc_noann/VOCdevkit/VOC2007/Annotations"
    for f in ann.iterdir():
        f.unlink()
    ann.rmdir()
    bad = tmp / "voc_badxml/VOCdevkit/VOC2007/Annotations/2007_trainval_0001.xml"
    bad.write_text(bad.read_text()[:60])
    (tmp / "voc_badclass/VOCdevkit/VOC2007/Annotations/2007_trainval_0002.xml").write_text(
        voc_xml("2007_trainval_0002.jpg", (80, 60), [("unicorn", (1, 1, 20, 20), 0)]))

def broken_data(tmp: Path, cifar: Path, args: str) -> None:
    """The broken data sets and files a case names: a truncated CIFAR batch, an archive without class folders,
    Small-ImageNet files of the wrong size, an ImageNet tree without class folders, weights of another shape."""
    import shutil
    import tarfile

    import torch

    if "{tmp}/cifar_truncated" in args:
        shutil.copytree(cifar, tmp / "cifar_truncated")
        batch = tmp / "cifar_truncated" / "cifar-10-batches-py" / "data_batch_3"
        batch.write_bytes(batch.read_bytes()[:100])
    if "{tmp}/flat.tar.gz" in args:
        (tmp / "readme.txt").write_text("no images here\n")
        with tarfile.open(tmp / "flat.tar.gz", "w:gz") as tar:
            tar.add(tmp / "readme.txt", arcname="readme.txt")
    if "{tmp}/inet64" in args:
        from fakeimagenet import make_small_imagenet

        for name in ("Imagenet64_train_npz", "Imagenet64_val_npz"):  # 64 px files where 32 px ones belong
            shutil.copytree(make_small_imagenet(tmp / "made64", 64, per_batch=2, val=2) / name,
                            tmp / "inet64" / name.replace("64", "32"))
    if "{tmp}/imnet" in args:
        for split in ("train", "val"):
            (tmp / "imnet" / split).mkdir(parents=True)
            (tmp / "imnet" / split / "n01440764_10026.JPEG").write_bytes(b"")
    if "{tmp}/weights.pth" in args:
        torch.save({"conv1.weight": torch.zeros(8, 3, 3, 3)}, tmp / "weights.pth")
    if "{tmp}/notours.ckpt" in args:
        torch.save({"state_dict": {}, "epoch": 3}, tmp / "notours.ckpt")


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
     ["method='gap_fc' is invalid", "channel_shuffle, patch_shuffle, spatial_shuffle"]),
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
    ("voc-missing-annotations", "spatialprobe.train", [*VOC, "dataset.root={tmp}/voc_noann"],
     ["voc_noann/VOCdevkit/VOC2007/Annotations: no such directory", "as the official tar files unpack"]),
    ("voc-broken-xml", "spatialprobe.train", [*VOC, "dataset.root={tmp}/voc_badxml"],
     ["VOC2007/Annotations/2007_trainval_0001.xml: malformed XML"]),
    ("voc-unknown-class", "spatialprobe.train", [*VOC, "dataset.root={tmp}/voc_badclass"],
     ["2007_trainval_0002.xml: object 0 has class 'unicorn', not one of VOC's 20 classes", "aeroplane"]),
    # a typo in a key, at any level, and in a sweep: the closest keys
    ("key-typo", "spatialprobe.train", ["model.widht=0.5"], ["model.widht=0.5 is invalid", "did you mean model.width?"]),
    ("unknown-top-level-key", "spatialprobe.train", ["sed=1"], ["sed=1 is invalid", "did you mean seed?"]),
    ("key-typo-in-a-sweep", "spatialprobe.train", ["-m", "experiment=vgg16_cifar100_kcurve", "model.widht=0.5,0.25"],
     ["model.widht=0.5 is invalid", "did you mean model.width?", "nothing was launched"]),
    ("evaluate-key-typo", "spatialprobe.evaluate", ["ckpt={tmp}/none.ckpt", "eval.pases=3"],
     ["eval.pases=3 is invalid", "did you mean eval.passes?"]),
    # a width that leaves a layer (almost) no channels
    ("width-too-narrow", "spatialprobe.train", [*DATA, "model.width=1e-9"],
     ["model.width=1e-09 is invalid", "narrowest layer (conv1 and layer1", "(valid: >= 0.0625)"]),
    ("fc-width-too-narrow", "spatialprobe.inspect", ["model=vgg16", "model.fc_width=1"],
     ["model.fc_width=1 is invalid", ">= 4"]),
    # mandatory keys and arguments: named, with an example
    ("evaluate-without-ckpt", "spatialprobe.evaluate", [], ["ckpt is required", "e.g. ckpt=runs/<run>/checkpoints/"]),
    ("rank-without-checkpoint", "spatialprobe.rank", [], ["checkpoint is required",
                                                          "e.g. checkpoint=runs/<run>/checkpoints/last.ckpt"]),
    ("plot-without-table", "spatialprobe.plot", [], ["the following arguments are required: table",
                                                     "e.g. python -m spatialprobe.plot runs/sweeps/"]),
    ("collect-without-dirs", "spatialprobe.collect", [], ["give sweep directories",
                                                          "e.g. python -m spatialprobe.collect runs/sweeps/"]),
    ("decode-without-checkpoint", "spatialprobe.decode", [], ["checkpoint is required",
                                                              "or sweep_dir=runs/sweeps/<experiment>"]),
    ("search_k-without-a-method", "spatialprobe.search_k", ["method=none"],
     ["method='none' is invalid: search_k needs a method that modifies units", "conv1x1"]),
    # a crafted checkpoint (a pickle that runs a command when loaded): refused by every command, the payload never runs
    ("evaluate-crafted-checkpoint", "spatialprobe.evaluate", ["ckpt={tmp}/shared.ckpt"],
     ["ckpt='", "shared.ckpt': refused: the file holds posix.system", "could run code"]),
    ("rank-crafted-checkpoint", "spatialprobe.rank", ["checkpoint={tmp}/shared.ckpt"],
     ["checkpoint='", "shared.ckpt': refused: the file holds posix.system"]),
    ("rank-segmentation-crafted-weights", "spatialprobe.rank", ["source=segmentation", "checkpoint={tmp}/deeplab.pth",
                                                                "segmentation.root={tmp}"],
     ["checkpoint='", "deeplab.pth': refused: the file holds posix.system"]),
    ("decode-crafted-checkpoint", "spatialprobe.decode", ["checkpoint={tmp}/shared.ckpt"],
     ["checkpoint='", "shared.ckpt': refused: the file holds posix.system"]),
    ("pretrained-crafted-weights", "spatialprobe.train", [*DATA, "+model.pretrained={tmp}/deeplab.pth"],
     ["model.pretrained='", "deeplab.pth': refused: the file holds posix.system"]),
    ("resume-from-a-crafted-last-ckpt", "spatialprobe.train", DATA,
     ["run/checkpoints/last.ckpt: refused: the file holds posix.system", "could run code"]),
    # the run directory: another live trainer, a damaged checkpoint, a place that cannot be written, a full disk
    ("run-in-use-by-a-live-process", "spatialprobe.train", DATA,
     ["run is being trained by pid", "this launch trains nothing", "kill "]),
    ("no-readable-checkpoint", "spatialprobe.train", DATA,
     ["run/checkpoints: no checkpoint of this unfinished run loads", "last.ckpt: unreadable (",
      "checkpoint.on_unreadable=restart"]),
    ("bad-on-unreadable", "spatialprobe.train", [*DATA, "checkpoint.on_unreadable=ignore"],
     ["checkpoint.on_unreadable='ignore' is invalid", "(valid: fail, restart)"]),
    ("lock-stale-limit-too-short", "spatialprobe.train", [*DATA, "lock.stale_after_s=60"],
     ["lock.stale_after_s=60 is invalid", "3 x lock.heartbeat_s (30)"]),
    ("run-dir-in-proc", "spatialprobe.train", [*DATA, "hydra.run.dir=/proc/spatialprobe-run"],
     ["hydra.run.dir='/proc/spatialprobe-run': output directory is not writable", "in /proc"]),
    ("disk-full-during-a-checkpoint", "spatialprobe.train", DATA,
     ["could not write", "run/checkpoints/", "No space left on device (ENOSPC)", "re-run the same command"]),
    # key typos in the other Hydra commands
    ("inspect-key-typo", "spatialprobe.inspect", ["model.widht=0.5"],
     ["model.widht=0.5 is invalid", "did you mean model.width?"]),
    ("rank-key-typo", "spatialprobe.rank", ["checkpoint={tmp}/none.ckpt", "batch_sise=2"],
     ["batch_sise=2 is invalid", "did you mean batch_size?"]),
    ("search_k-key-typo", "spatialprobe.search_k", ["method=conv1x1", "search.tolerence=2"],
     ["search.tolerence=2 is invalid", "did you mean search.tolerance?"]),
    # sizes, units and methods
    ("subset-zero", "spatialprobe.train", [*DATA, "dataset.subset=0"], ["dataset.subset=0 is invalid", ">= 1"]),
    ("negative-batch-size", "spatialprobe.train", [*DATA, "recipe.batch_size=-4"],
     ["recipe.batch_size=-4 is invalid", ">= 1"]),
    ("unit-beyond-the-model", "spatialprobe.train", [*DATA, "method=conv1x1", "method.unit=8"],
     ["method.unit=8 is invalid", "must be <= 7"]),
    ("unit-with-k", "spatialprobe.train", [*DATA, "method=conv1x1", "method.unit=2", "k=3"],
     ["k=3 is invalid", "leave k at 0"]),
    ("gap_fc-single-unit", "spatialprobe.train", [*DATA, "method=gap_fc", "method.unit=3"],
     ["method.unit=3 is invalid: method has no key 'unit'", "(valid: method.name, method.strip)"]),
    ("strip-more-than-modified", "spatialprobe.train", [*DATA, "method=conv1x1", "k=2", "method.strip=3"],
     ["method.strip=3 is invalid: cannot remove more units than the 2 modified", "(valid: 0..2)"]),
    ("upsampled-cifar-not-a-multiple-of-32", "spatialprobe.train", [*DATA, "dataset=cifar100", "dataset.image_size=48"],
     ["dataset.image_size=48 is invalid: must be a positive multiple of 32", "(valid: 32, 64, 96, ...)"]),
    ("evaluate-not-our-checkpoint", "spatialprobe.evaluate", ["ckpt={tmp}/notours.ckpt"],
     ["notours.ckpt': not a spatialprobe checkpoint"]),
    ("unknown-launcher", "spatialprobe.train", ["-m", "hydra/launcher=pbs", *DATA],
     ["hydra/launcher='pbs' is invalid", "local, slurm"]),
    # data the user can fix
    ("cifar-checksum-mismatch", "spatialprobe.train", [*DATA, "dataset.verify=true"],
     ["data_batch_1: checksum mismatch (expected the published md5", "dataset.verify=false"]),
    ("cifar-truncated-batch", "spatialprobe.train", [*TINY, "dataset=cifar10", "dataset.root={tmp}/cifar_truncated"],
     ["data_batch_3: unreadable CIFAR batch"]),
    ("archive-without-class-folders", "spatialprobe.train", [*TINY, "dataset=cifar10", "dataset.root={tmp}/flat.tar.gz"],
     ["no class folders found; expected train/<class>/<image>", "found: readme.txt"]),
    ("small-imagenet-missing", "spatialprobe.train", [*ANY_SET, "dataset=imagenet32", "dataset.root={tmp}/empty"],
     ["missing Small-ImageNet batch files: train_data_batch_1", "val_data"]),
    ("small-imagenet-wrong-shape", "spatialprobe.train", [*ANY_SET, "dataset=imagenet32", "dataset.root={tmp}/inet64"],
     ["'data' has shape (", "expected (N, 3072) for 32x32 channel-major RGB images (rows of 12288 are 64 px images)"]),
    ("imagenet-without-class-folders", "spatialprobe.train", [*ANY_SET, "dataset=imagenet", "dataset.root={tmp}/imnet"],
     ["imnet/train: no class sub-folders", "<root>/train/<wnid>/<image>.JPEG"]),
    ("detect-with-a-classification-set", "spatialprobe.train", [*DATA, "task=detect"],
     ["dataset='cifar10' is invalid: task=detect needs a detection data set", "voc, cifar10_detect"]),
    ("detect-with-gap_fc", "spatialprobe.train", [*DATA, "task=detect", "dataset=cifar10_detect", "method=gap_fc", "k=1"],
     ["method.name='gap_fc' is invalid", "spatial_shuffle"]),
    ("pretrained-weights-that-do-not-fit", "spatialprobe.train",
     [*DATA, "task=detect", "dataset=cifar10_detect", "dataset.image_size=64", "model=resnet18",
      "model.pretrained={tmp}/weights.pth"],
     ["weights.pth: the weights do not fit resnet18 as configured", "e.g. conv1.weight: shape"]),
]


# the cases that also run as a real process: one or two per command
IN_A_PROCESS = {"unknown-model", "sweep-k-out-of-range", "evaluate-missing-checkpoint", "inspect-k-out-of-range",
                "collect-no-such-dir", "plot-missing-columns", "rank-without-checkpoint", "decode-without-checkpoint",
                "search_k-without-a-method", "evaluate-crafted-checkpoint", "run-in-use-by-a-live-process",
                "run-dir-in-proc"}


def planted_run(tmp: Path, cifar: Path, status: str = "running") -> Path:
    """``tmp/run`` as an unfinished run of the catalogue's DATA arguments left it: its record (the very config
    the command composes, so that the command resumes it)."""
    from omegaconf import OmegaConf

    from conftest import compose_train
    from spatialprobe.run.records import config_hash

    resolved = OmegaConf.to_container(compose_train(*[a.format(cifar=cifar) for a in DATA]), resolve=True)
    run = tmp / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "result.json").write_text(json.dumps({"status": status, "reason": None, "config_hash": config_hash(resolved),
                                                 "attempts": 1, "config": resolved}))
    return run


def _crafted_resume(tmp, cifar, monkeypatch):
    from fakedata import crafted_checkpoint

    crafted_checkpoint(planted_run(tmp, cifar) / "checkpoints" / "last.ckpt", tmp / PAYLOAD_RAN)


def _live_holder(tmp, cifar, monkeypatch):
    """run.lock of a live process on this host (this test's parent), whose heartbeat is fresh."""
    import os
    import socket
    import time

    from spatialprobe.run.lock import Holder, pid_start

    (tmp / "run").mkdir()
    now = time.time()
    holder = Holder("training", socket.gethostname(), os.getppid(), pid_start(os.getppid()), None, now,
                    now, "live")
    (tmp / "run" / "run.lock").write_text(json.dumps(holder.__dict__))


def _truncated_last(tmp, cifar, monkeypatch):
    (planted_run(tmp, cifar) / "checkpoints" / "last.ckpt").write_bytes(b"PK\x03\x04" + b"\0" * 4000)


def _disk_full(tmp, cifar, monkeypatch):
    """Every checkpoint write fails as a full disk fails it: torch.save's writer raises after some bytes."""
    import errno

    import torch

    real = torch.save

    class Full:
        def __init__(self, fh):
            self.fh, self.n = fh, 0

        def write(self, data):
            self.n += len(data)
            if self.n > 4096:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.fh.write(data)

        def __getattr__(self, name):
            return getattr(self.fh, name)

    monkeypatch.setattr(torch, "save", lambda obj, fh, *a, **k: real(obj, Full(fh), *a, **k))


PAYLOAD_RAN = "PAYLOAD_RAN"  # the file a crafted checkpoint's payload would create
SETUP = {"resume-from-a-crafted-last-ckpt": _crafted_resume, "run-in-use-by-a-live-process": _live_holder,
         "no-readable-checkpoint": _truncated_last, "disk-full-during-a-checkpoint": _disk_full}


def test_the_catalogue_is_big_and_covers_every_entry_point():
    assert len(CASES) >= 15 and len({c[0] for c in CASES}) == len(CASES)
    commands = {f"spatialprobe.{m}" for m in ("train", "evaluate", "inspect", "rank", "decode", "search_k", "collect",
                                              "plot")}
    assert {c[1] for c in CASES} == commands
    assert {c[1] for c in CASES if c[0] in IN_A_PROCESS} == commands and IN_A_PROCESS <= {c[0] for c in CASES}


def test_the_troubleshooting_page_states_the_catalogue_as_tested():
    """docs/troubleshooting.md says how many cases this file runs, and through which commands: both as here."""
    text = (REPO / "docs" / "troubleshooting.md").read_text()
    claim = re.search(r"`tests/test_bad_input.py` runs (\d+) of the cases below through (.*?) as a user would", text, re.S)
    assert claim, "docs/troubleshooting.md no longer states the catalogue's size"
    assert int(claim.group(1)) == len(CASES)
    named = set(re.findall(r"`(\w+)`", claim.group(2)))
    assert named == {c[1].removeprefix("spatialprobe.") for c in CASES}


@pytest.mark.parametrize("case,module,args,needles,process",
                         [(*c, c[0] in IN_A_PROCESS) for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line(case, module, args, needles, process, fake_cifar10, env, tmp_path, monkeypatch):
    from fakedata import crafted_checkpoint

    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("not a checkpoint\n")
    (tmp_path / "thin.csv").write_text("model,dataset,k\nvgg16_bn,cifar100,0\n")
    crafted_checkpoint(tmp_path / "shared.ckpt", tmp_path / PAYLOAD_RAN)  # a colleague's checkpoint, and a state dict
    crafted_checkpoint(tmp_path / "deeplab.pth", tmp_path / PAYLOAD_RAN, spatialprobe=False)
    if any("{tmp}/voc_" in a for a in args):
        broken_voc_trees(tmp_path)
    if case in SETUP:
        SETUP[case](tmp_path, fake_cifar10, monkeypatch)
    broken_data(tmp_path, fake_cifar10, " ".join(args))
    before = {p: p.read_bytes() for p in tmp_path.rglob("*.ckpt")}
    args = [a.format(tmp=tmp_path, cifar=fake_cifar10) for a in args]
    if module == "spatialprobe.train" and not any(a.startswith("hydra.run.dir=") for a in args):
        args.append(f"hydra.run.dir={tmp_path / 'run'}")
    p = (run_cli if process else cli)(module, args, env, tmp_path, timeout=300)
    assert p.returncode == 2, (p.returncode, p.stdout[-2000:], p.stderr[-2000:])  # 2: the documented status
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
    assert {p: p.read_bytes() for p in tmp_path.rglob("*.ckpt")} == before, "a checkpoint was written or changed"
    assert not (tmp_path / PAYLOAD_RAN).exists(), "a crafted checkpoint's payload ran"
