"""Sweep cost up front: training FLOPs per job (counted on the meta device) and GPU-hours; the GPU peak table."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from conftest import compose_train
from spatialprobe import CONF_DIR
from spatialprobe.config import gpus
from spatialprobe.errors import ConfigError
from spatialprobe.launch import cost
from spatialprobe.models import build_model
from spatialprobe.run.measure import count_flops
from spatialprobe.train import validate


@pytest.mark.parametrize("overrides", [("model=vgg16", "model.width=0.25", "method=spatial_shuffle", "k=3"),
                                       ("model=resnet18", "model.width=0.125", "method=conv1x1", "k=4"),
                                       ("model=resnet18", "model.width=0.125", "method=gap_fc", "k=2",
                                        "dataset=cifar100")])
def test_meta_count_equals_the_records_count(overrides):
    from spatialprobe import surgery

    cfg = compose_train(*overrides)
    torch.manual_seed(0)
    model = build_model(cfg.model, int(cfg.dataset.num_classes), 32)
    surgery.apply(model, cfg.method, int(cfg.k), 32)
    assert cost.count_forward_flops(cfg) == count_flops(model, 32)  # what train.py writes into the record
    assert not torch.Tensor.normal_.__name__ == "<lambda>"  # the initialisers are back after the meta build


def test_training_images_and_flops_of_a_job():
    cfg = compose_train("experiment=demo_cifar10_kcurve")
    assert cost.train_images(cfg) == 10_240
    assert cost.train_images(compose_train("dataset=cifar100", "dataset.val_size=5000")) == 45_000
    assert cost.train_images(compose_train("dataset=imagenet", "recipe=imagenet")) == 1_281_167
    assert cost.train_images(compose_train("dataset=grid_cifar10", "dataset.subset=640")) == 640
    c = cost.job_cost(cfg, cost.FlopCache(None))
    assert c.epochs == 8 and c.train_flops == 3 * c.forward_flops * 10_240 * 8
    assert 30e6 < c.forward_flops < 50e6  # the narrow VGG-16 at 32 px: about 40 MFLOPs


def test_gpu_hours_from_a_gpu_peak_or_a_measured_throughput(tmp_path):
    cfg = compose_train("experiment=demo_cifar10_kcurve", "cost.gpu=A100", "cost.mfu=0.5")
    lines, total = cost.report([cfg, cfg], tmp_path)
    c = cost.job_cost(cfg, cost.FlopCache(tmp_path / "flops.json"))
    # the baseline (k=0) is tested once per checkpoint: 2,000 test images x 1 pass x (final + best)
    assert (c.test_images, c.passes, c.tests) == (2000, 1, 2) and c.test_flops == c.forward_flops * 4000
    hours = (c.train_flops + c.test_flops) / (312e12 * 0.5) / 3600
    assert lines[0] == f"{cost.si(c.train_flops)} to train, {cost.si(c.test_flops)} to test (1 pass x 2), {cost.gpu_time(hours)}"
    assert total.startswith(f"cost: {cost.si(2 * (c.train_flops + c.test_flops))} to train and test")
    assert "A100 (312 TFLOP/s bf16 peak x MFU 0.5)" in total
    assert (tmp_path / "flops.json").is_file()  # counted once, remembered
    measured = compose_train("experiment=demo_cifar10_kcurve", "cost.images_per_s=2048")
    (line,), total = cost.report([measured], tmp_path)
    assert line.endswith(cost.gpu_time((10_240 * 8 + 4000 / 3) / 2048 / 3600)) and "2,048 images/s" in total
    # a shuffle active at test time is tested eval.test_passes times; conv1x1 (deterministic) once
    shuffled = compose_train("experiment=demo_cifar10_kcurve", "k=3", "eval.test_passes=200")
    assert cost.job_cost(shuffled, cost.FlopCache(None)).tested_images == 2000 * 200 * 2
    off_at_test = compose_train("experiment=demo_cifar10_kcurve", "k=3", "eval.test_passes=200", "method.test=false")
    assert cost.job_cost(off_at_test, cost.FlopCache(None)).passes == 1
    fixed = compose_train("experiment=demo_cifar10_kcurve", "method=conv1x1", "k=3", "eval.test_passes=200")
    assert cost.job_cost(fixed, cost.FlopCache(None)).passes == 1
    assert [cost.gpu_time(h) for h in (2.345, 0.5, 1 / 7200)] == ["2.3 GPU-hours", "30.0 GPU-minutes", "0.5 GPU-seconds"]


@pytest.mark.parametrize("override,key", [("cost.gpu=H900", "cost.gpu"), ("cost.mfu=1.5", "cost.mfu"),
                                          ("cost.images_per_s=0", "cost.images_per_s")])
def test_bad_cost_keys(override, key):
    with pytest.raises(ConfigError) as err:
        validate(compose_train(override))
    assert err.value.key == key


def test_cost_keys_do_not_change_a_runs_identity():
    from spatialprobe.run.records import config_hash

    a, b = (OmegaConf.to_container(compose_train(*o), resolve=True) for o in ((), ("cost.gpu=H100",)))
    assert config_hash(a) == config_hash(b)


def test_gpu_table_lookup_and_override(monkeypatch):
    monkeypatch.delenv("SPATIALPROBE_PEAK_TFLOPS", raising=False)
    assert gpus.lookup("NVIDIA A100-SXM4-80GB") == "A100" and gpus.lookup("NVIDIA A10") == "A10"
    assert gpus.lookup("NVIDIA H100 PCIe") == "H100 PCIe" and gpus.lookup("NVIDIA H100 80GB HBM3") == "H100"
    assert gpus.lookup("NVIDIA L40S") == "L40S" and gpus.lookup("Tesla V100-SXM2-32GB") == "V100"
    assert gpus.lookup("NVIDIA GeForce GTX 1080") is None and gpus.peak_tflops("GTX 1080") is None
    assert gpus.peak_tflops("NVIDIA H200", "bf16") == 989.0 and gpus.peak_tflops("NVIDIA H200", "fp32") == 67.0
    assert gpus.peak_tflops("anything", override=100.0) == 100.0
    monkeypatch.setenv("SPATIALPROBE_PEAK_TFLOPS", "123")
    assert gpus.peak_tflops("NVIDIA H200") == 123.0


def test_dry_run_of_a_sweep_prints_the_cost_per_job_and_in_total(tmp_path, capsys):
    from spatialprobe.launch.sweep import SweepCheck

    overrides = ["experiment=demo_cifar10_kcurve", "dry_run=true", "cost.gpu=H100", f"paths.run_root={tmp_path}",
                 f"paths.cache_dir={tmp_path}"]
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
        OmegaConf.set_struct(cfg, False)
        cfg.hydra.job.config_name = "train"
        cfg.hydra.overrides.task = overrides
        with pytest.raises(SystemExit) as stop:
            SweepCheck().on_multirun_start(cfg)
    assert stop.value.code == 0
    out = capsys.readouterr().out.splitlines()
    jobs = [line for line in out if line.startswith("  [to do]")]
    assert len(jobs) == 3 and all("TFLOP to train" in j and "to test" in j and "GPU-seconds" in j for j in jobs)
    assert out[-1].startswith("cost: 30 TFLOP to train and test"), out[-1]  # 3 x (9.83 + 0.16) TFLOP
    assert "H100 (989 TFLOP/s bf16 peak x MFU 0.3)" in out[-1]
    assert not (tmp_path / "sweeps").exists()  # a dry run writes no run directory


def test_every_run_measures_its_throughput_and_a_dry_run_prices_a_sweep_with_it(fake_cifar10, tmp_path, monkeypatch):
    """The record's images_per_s (training images per second, median over the epochs; logged per epoch as
    train_images_per_s) and mfu (None on a CPU: no known peak); cost.from_runs prices jobs with it."""
    import csv

    from spatialprobe.train import run

    monkeypatch.setenv("SPATIALPROBE_CACHE", str(tmp_path / "cache"))
    cfg = compose_train("dataset=cifar10", f"dataset.root={fake_cifar10}", "model.width=0.0625", "recipe.batch_size=16",
                        "trainer.max_epochs=2", "trainer.enable_progress_bar=false", "dataset.verify=false",
                        "dataset.download=false", f"paths.cache_dir={tmp_path / 'cache'}")
    rec = run(cfg, tmp_path / "runs" / "a")
    assert rec["images_per_s"] > 0 and rec["mfu"] is None
    rows = list(csv.DictReader(open(tmp_path / "runs" / "a" / "logs" / "attempt-1" / "metrics.csv")))
    per_epoch = sorted(float(r["train_images_per_s"]) for r in rows if r.get("train_images_per_s"))
    assert len(per_epoch) == 2 and rec["images_per_s"] == pytest.approx(sum(per_epoch) / 2, abs=0.01)  # the median of 2
    job = compose_train("experiment=demo_cifar10_kcurve", f"cost.from_runs={tmp_path / 'runs'}", "model=resnet18")
    (line,), total = cost.report([job], tmp_path)
    c = cost.job_cost(job, cost.FlopCache(None))
    hours = (c.images * c.epochs + c.tested_images / 3) / rec["images_per_s"] / 3600
    assert line.endswith(cost.gpu_time(hours)) and "measured by 1 run(s)" in total
    with pytest.raises(ConfigError, match="cost.from_runs.*holds no complete run record"):
        cost.report([compose_train("experiment=demo_cifar10_kcurve", f"cost.from_runs={tmp_path / 'cache'}")], tmp_path)
