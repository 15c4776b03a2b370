"""Checkpoints never run code: every file spatialprobe reads goes through torch.load(weights_only=True).

The commands' answers to a crafted checkpoint (evaluate, rank, decode, the segmentation probe, model.pretrained,
a resume) are cases of the bad-input catalogue (tests/test_bad_input.py), which also checks that the payload
never ran. Here: the payload is real, Lightning's own loading refuses it, the loaders below the commands refuse it,
and what a real checkpoint of every task holds is exactly the plain types the weights-only reader allows.
"""

from __future__ import annotations

import os

import pytest
import torch

from conftest import TINY, compose_train
from fakedata import crafted_checkpoint
from spatialprobe.run.checkpoints import UnsafeFile, load


def test_the_crafted_checkpoint_runs_its_payload_when_loaded_the_old_way(tmp_path):
    """The control: with weights_only=False the same file creates the marker (so its absence elsewhere means
    the payload did not run, not that it could not)."""
    marker = tmp_path / "PAYLOAD_RAN"
    path = crafted_checkpoint(tmp_path / "shared.ckpt", marker)
    with pytest.raises(UnsafeFile, match=r"refused: the file holds posix.system"):
        load(path)
    assert not marker.exists()
    torch.load(path, map_location="cpu", weights_only=False)
    assert marker.exists()


def test_lightnings_own_loading_refuses_a_crafted_checkpoint(tmp_path):
    """A resume (trainer.fit(ckpt_path=...)) and trainer.test(ckpt_path=...) read through the runner's
    CheckpointIO: weights-only, whatever Lightning's default."""
    import pytorch_lightning as pl

    from spatialprobe.run.callbacks import AtomicCheckpointIO

    marker = tmp_path / "PAYLOAD_RAN"
    path = crafted_checkpoint(tmp_path / "last.ckpt", marker)

    class Tiny(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)

        def training_step(self, batch, batch_idx):
            return self.layer(batch[0]).sum()

        def test_step(self, batch, batch_idx):
            return None

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(4, 2)), batch_size=2)
    for run in ("fit", "test"):
        trainer = pl.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, plugins=[AtomicCheckpointIO()], default_root_dir=tmp_path)
        with pytest.raises(UnsafeFile):
            getattr(trainer, run)(Tiny(), data, ckpt_path=str(path))
        assert not marker.exists(), run


def test_the_weight_loaders_refuse_a_crafted_file(tmp_path):
    """model.weights_backbone (DeepLab's ResNet-50), build_deeplab's weights file, model.pretrained: refused
    before the network is built, the payload never runs."""
    from spatialprobe.models.deeplab import load_backbone_weights
    from spatialprobe.models.pretrained import read_state_dict
    from spatialprobe.position.segmentation import build_deeplab

    marker = tmp_path / "PAYLOAD_RAN"
    path = crafted_checkpoint(tmp_path / "weights.pth", marker, spatialprobe=False)
    with pytest.raises(UnsafeFile, match=r"model.weights_backbone='.*weights.pth': refused"):
        load_backbone_weights(torch.nn.Linear(1, 1), path)
    with pytest.raises(UnsafeFile, match=r"weights.pth: refused"):
        build_deeplab(19, path)
    with pytest.raises(UnsafeFile, match=r"model.pretrained='.*weights.pth': refused"):
        read_state_dict(path)
    assert not marker.exists()


def _types(obj, found: set) -> set:
    """The type names of every container and value in a loaded checkpoint (tensors as one name)."""
    if torch.is_tensor(obj):
        found.add("Tensor")
        return found
    found.add(type(obj).__qualname__ if type(obj).__module__ == "builtins" else
              f"{type(obj).__module__}.{type(obj).__qualname__}")
    children = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list | tuple) else []
    for key, value in children:
        _types(key, found)
        _types(value, found)
    return found


#: every type a spatialprobe checkpoint holds: all of them in torch's weights-only set (nothing added to it)
ALLOWED = {"dict", "list", "tuple", "str", "int", "float", "bool", "NoneType", "Tensor", "collections.OrderedDict",
           "collections.Counter"}

KINDS = {
    # one-cycle SGD, a mid-epoch checkpoint (the loader's state inside), the multistep schedule's Counter
    "classify-onecycle": ["recipe=cpu", "checkpoint.every_n_steps=3", "trainer.max_epochs=2"],
    "classify-multistep-warmup": ["recipe=cifar", "trainer.max_epochs=2", "checkpoint.every_n_steps=5"],
    # AugShift with Adam, cosine after a warm-up, bf16 autocast, shift consistency in the test epoch
    "augshift-adam-bf16": ["task=augshift", "recipe.optimizer=adam", "recipe.schedule=cosine",
                           "recipe.warmup_epochs=0.5", "trainer.precision=bf16-mixed", "eval.consistency=2",
                           "checkpoint.every_n_steps=4"],
}


@pytest.mark.parametrize("overrides", list(KINDS.values()), ids=list(KINDS))
def test_every_checkpoint_a_run_writes_loads_weights_only(overrides, fake_cifar10, tmp_path, monkeypatch):
    from spatialprobe.train import run

    monkeypatch.setenv("SPATIALPROBE_CACHE", str(tmp_path / "cache"))
    rec = run(compose_train("dataset=cifar10", f"dataset.root={fake_cifar10}", *TINY, *overrides), tmp_path / "run")
    assert rec["status"] == "complete"
    names = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("*.ckpt"))
    assert names == ["best.ckpt", "last.ckpt", "previous.ckpt"]
    for name in names:
        ckpt = load(tmp_path / "run" / "checkpoints" / name)
        assert {"state_dict", "loops", "optimizer_states", "spatialprobe_config", "saved_for"} <= set(ckpt)
        found = _types(ckpt, set())
        assert found <= ALLOWED, (name, found - ALLOWED)
        assert isinstance(ckpt["spatialprobe_config"], dict)  # the run's config as plain containers


@pytest.mark.slow  # a detector trained twice: CI runs it with make test-slow
def test_detection_checkpoints_load_weights_only(tmp_path, monkeypatch, fake_cifar10):
    from spatialprobe.train import run

    monkeypatch.setenv("SPATIALPROBE_CACHE", str(tmp_path / "cache"))
    rec = run(compose_train("task=detect", "dataset=cifar10_detect", f"dataset.root={fake_cifar10}", "dataset.verify=false",
                            "model=resnet50", "model.width=0.0625", "dataset.image_size=64", "recipe=voc",
                            "recipe.batch_size=4", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
                            "trainer.precision=32-true", "trainer.limit_train_batches=3", "trainer.limit_val_batches=2",
                            "trainer.limit_test_batches=2"), tmp_path / "run")
    assert rec["status"] == "complete"
    for path in (tmp_path / "run" / "checkpoints").glob("*.ckpt"):
        assert _types(load(path), set()) <= ALLOWED, path


def test_the_package_reads_checkpoints_in_one_place():
    """Every torch.load call of the package is the one in spatialprobe.run.checkpoints (weights_only=True), and
    torchvision's weights (which torch.hub reads with weights_only=False by default) are read weights-only."""
    import ast

    from conftest import REPO

    calls = {}
    for path in (REPO / "src").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            name = node.func.attr
            if name == "load" and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch" \
                    or name == "load_state_dict_from_url":
                calls[str(path.relative_to(REPO))] = calls.get(str(path.relative_to(REPO)), 0) + 1
                assert any(k.arg == "weights_only" and getattr(k.value, "value", None) is True for k in node.keywords)
            if name == "get_state_dict":
                assert any(k.arg == "weights_only" and getattr(k.value, "value", None) is True for k in node.keywords)
    assert calls == {os.path.join("src", "spatialprobe", "run", "checkpoints.py"): 1}, calls
