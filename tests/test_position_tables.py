"""P's Table 2 printer (sweeps/table2.py) and position decoding from a frozen classifier (spatialprobe.decode)."""

from __future__ import annotations

import contextlib
import io
import json
import runpy
import sys

import pytest
import torch
from hydra import compose, initialize_config_dir

from conftest import REPO, TINY, cli, compose_train
from spatialprobe import CONF_DIR
from spatialprobe.errors import ConfigError


def write_record(folder, **fields):
    folder.mkdir(parents=True)
    config = {"model": {"name": "resnet18", "blurpool": fields.pop("blurpool", False)},
              "dataset": {"name": fields["dataset"]}}
    (folder / "result.json").write_text(json.dumps({"status": "complete", "model": "resnet18", "config": config,
                                                    **fields}))


def test_table2_prints_the_papers_layout(tmp_path):
    c100, inet = tmp_path / "resnet18_cifar100_augshift", tmp_path / "resnet18_imagenet_augshift"
    write_record(c100 / "a", dataset="cifar100", task="classify", test_top1=70.0, test_cons8=71.0, test_cons4=80.0)
    write_record(c100 / "b", dataset="cifar100", task="augshift", test_top1=70.5, test_cons8=85.0)
    write_record(c100 / "c", dataset="cifar100", task="classify", blurpool="full", test_top1=69.0, test_cons8=78.0)
    write_record(inet / "a", dataset="imagenet", task="classify", test_top1=69.7, test_cons8=89.5, test_cons16=87.4)
    write_record(inet / "b", dataset="imagenet", task="classify", blurpool=True, test_top1=70.2, test_cons8=89.9,
                 test_cons16=88.0)
    (inet / "failed").mkdir()
    (inet / "failed" / "result.json").write_text(json.dumps({"status": "failed", "dataset": "imagenet"}))
    out = io.StringIO()  # the script runs in this process, its command line as sys.argv
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out):
        mp.setattr(sys, "argv", ["table2.py", str(c100), str(inet), "--paper"])
        runpy.run_path(str(REPO / "sweeps" / "table2.py"), run_name="__main__")
    lines = out.getvalue().strip().splitlines()
    assert lines[0] == ("| Methods | CIFAR-100 Top-1 | CIFAR-100 Cons.8 | CIFAR-100 Cons.4 | ImageNet Top-1 | "
                        "ImageNet Cons.8 | ImageNet Cons.16 |")
    rows = {line.split(" | ")[0].lstrip("| "): line for line in lines[2:]}
    assert rows["ResNet-18"] == "| ResNet-18 | 70.0 | 71.0 | 80.0 | 69.7 | 89.5 | 87.4 |"
    assert rows["+AugShift"] == "| +AugShift | 70.5 | 85.0 | - | - | - | - |"
    assert rows["BlurPool (full)"] == "| BlurPool (full) | 69.0 | 78.0 | - | - | - | - |"
    assert rows["BlurPool (blur after max-pools)"].endswith("| 70.2 | 89.9 | 88.0 |")
    assert rows["P: +AugShift"] == "| P: +AugShift | 72.6 | 85.6 |  | 70.1 | 90.2 | 88.2 |"
    assert list(rows)[:3] == ["ResNet-18", "+AugShift", "BlurPool (blur after max-pools)"]


def test_readout_reads_ordered_channels_and_not_permuted_ones():
    from omegaconf import OmegaConf

    from spatialprobe.decode import fit_readout

    g = torch.Generator().manual_seed(0)
    cells = torch.randint(4, (800,), generator=g)
    z = torch.nn.functional.one_hot(cells, 16).float() * 3 + 0.1 * torch.randn(800, 16, generator=g)
    cfg = OmegaConf.create({"seed": 0, "lr": 0.05, "epochs": 30})
    ordered = fit_readout(z[:600], cells[:600], z[600:], cells[600:], 4, False, cfg)
    permuted = fit_readout(z[:600], cells[:600], z[600:], cells[600:], 4, True, cfg)
    assert ordered == 100.0 and permuted < 40.0  # the cell is in *which* channel fires: order carries it all


def compose_decode(*overrides):
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("decode", overrides=list(overrides))


def test_decode_a_frozen_classifier_end_to_end(fake_cifar10, tmp_path, monkeypatch, capsys):
    from spatialprobe import decode
    from spatialprobe.train import run

    monkeypatch.setenv("SPATIALPROBE_CACHE", str(tmp_path / "cache"))
    run(compose_train("dataset=cifar10", f"dataset.root={fake_cifar10}", *TINY, "eval.test_best=false"),
        tmp_path / "run")
    records = decode.run(compose_decode(f"sweep_dir={tmp_path}", "grid=[2,3]", "train_images=48", "test_images=32",
                                        "epochs=3", "batch_size=16"))
    assert len(records) == 1
    rec = json.loads((tmp_path / "run" / "checkpoints" / "decode.json").read_text())
    assert rec["network"] == "resnet18" and rec["latent_size"] == 32 and rec["placements"] == 2
    assert [r["grid"] for r in rec["results"]] == [2, 3] and rec["results"][1]["chance"] == pytest.approx(11.11)
    assert rec["train_images"] == 48 and rec["test_images"] == 32
    for r in rec["results"]:  # counts of the 32 test images placed right: multiples of 100 / 32 = 3.125
        for k in ("ordered", "permuted"):
            assert 0.0 <= r[k] <= 100.0 and r[k] / 3.125 == pytest.approx(round(r[k] / 3.125), abs=0.01), (r, k)
    # what the read-out is fitted and scored on: the frozen network's latents of the images at their cells
    from spatialprobe.data.grid import fixed_cells

    seen = []

    def spy(z_train, y_train, z_test, y_test, classes, permute, cfg):
        seen.append((tuple(z_train.shape), tuple(z_test.shape), y_test.tolist(), classes, permute))
        return 50.0 + classes + permute

    monkeypatch.setattr(decode, "fit_readout", spy)
    (spied,) = decode.run(compose_decode(f"checkpoint={tmp_path / 'run' / 'checkpoints' / 'last.ckpt'}",
                                         "grid=[3]", "train_images=48", "test_images=32", "placements=2"))
    assert seen == [((96, 32), (32, 32), fixed_cells(32, 3, 0).tolist(), 9, False),
                    ((96, 32), (32, 32), fixed_cells(32, 3, 0).tolist(), 9, True)]  # 48 images x 2 placements
    assert spied["results"] == [{"grid": 3, "chance": 11.11, "ordered": 59.0, "permuted": 60.0}]
    out = capsys.readouterr().out
    assert "| network | classifier top-1 | grid |" in out and "| resnet18 |" in out and "| 3x3 |" in out


def test_decode_refuses_what_it_cannot_do(tmp_path):
    from spatialprobe.decode import validate

    for bad, key in (("grid=1", "grid"), ("grid=[3,x]", "grid"), ("epochs=0", "epochs"), ("device=tpu", "device")):
        with pytest.raises(ConfigError) as err:
            validate(compose_decode("checkpoint=x.ckpt", bad))
        assert err.value.key == key
    with pytest.raises(ConfigError) as err:
        validate(compose_decode())
    assert err.value.key == "checkpoint" and "sweep_dir" in str(err.value)


def test_position_figures_redraws_from_a_record_and_refuses_other_files(tmp_path):
    record = {"metric": "top1", "top_n": [1, 2], "rank_ranges": [[1, 1]], "baseline": {"overall": 90.0, "left": 80.0},
              "switch_off": {n: {"random": {"overall": {"mean": 85.0, "std": 1.0}, "left": {"mean": 75.0, "std": 2.0}}}
                             for n in ("1", "2")},
              "rankings": {f"{r}/image_flip": {"top": {"1": {"overall": 70.0, "left": 60.0},
                                                       "2": {"overall": 50.0, "left": 40.0}},
                                               "ranges": {"1-1": {"overall": 70.0, "left": 60.0}}}
                           for r in ("overall", "left", "right")}}
    path = tmp_path / "position-x.json"
    path.write_text(json.dumps(record))
    p = cli("spatialprobe.position_figures", [str(path)])
    assert p.returncode == 0, p.stderr
    folder = tmp_path / "position-x-figures"
    assert {f.name for f in folder.iterdir()} == {f"{n}.{e}" for n in ("fig4_top", "fig4_bottom", "fig6")
                                                  for e in ("png", "pdf", "md")}  # no right region: no fig6_right
    assert "| left | 2 | 40.00 | 40.00 | 40.00 | 75.00 +- 2.00 | 80.00 |" in (folder / "fig6.md").read_text()
    (tmp_path / "other.json").write_text("{}")
    p = cli("spatialprobe.position_figures", [str(tmp_path / "other.json")])
    assert p.returncode == 2 and p.stderr.strip().startswith("spatialprobe: error: ") and "Traceback" not in p.stderr
