"""task=detect: VOC reading, cifar10_detect, the YOLO loss and decoding, the detector, a fake VOC run, figures."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from conftest import compose_train
from fakedata import make_voc, voc_xml
from spatialprobe.errors import ConfigError, DataError

TINY_DETECT = ["task=detect", "model=resnet50", "model.width=0.0625", "dataset.image_size=64", "recipe=voc",
               "recipe.batch_size=4", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
               "trainer.log_every_n_steps=1", "trainer.precision=32-true"]


@pytest.fixture(scope="module")
def fake_voc(tmp_path_factory):
    return make_voc(tmp_path_factory.mktemp("voc"))


@pytest.fixture(scope="module")
def voc_run(fake_voc, tmp_path_factory):
    """One epoch of a detector with a shuffled last backbone unit on the fake VOC tree, in process."""
    from spatialprobe.train import run

    tmp = tmp_path_factory.mktemp("voc_run")
    cfg = compose_train("dataset=voc", f"dataset.root={fake_voc}", "dataset.num_workers=0", *TINY_DETECT,
                        "method=spatial_shuffle", "k=1", f"paths.cache_dir={tmp / 'cache'}")
    return run(cfg, tmp / "run"), tmp / "run"


# --------------------------------------------------------------------------- data
def test_voc_boxes_are_torchvisions_shifted_to_continuous_pixels(fake_voc):
    from torchvision.datasets import VOCDetection

    from spatialprobe.data.detection import VOC_CLASSES, read_voc

    images, targets = read_voc(fake_voc, "2007", "test")
    reference = VOCDetection(str(fake_voc), year="2007", image_set="test")
    assert images == reference.images
    for target, (_, ann) in zip(targets, reference, strict=True):
        objects = ann["annotation"]["object"]
        assert len(target) == len(objects)
        for row, obj in zip(target, objects, strict=True):
            box = obj["bndbox"]
            assert VOC_CLASSES[int(row[0])] == obj["name"]
            assert row[1:5].tolist() == [float(box["xmin"]) - 1, float(box["ymin"]) - 1, float(box["xmax"]),
                                         float(box["ymax"])]
            assert row[5] == float(obj["difficult"] == "1")
    assert any(t[:, 5].any() for t in targets)  # the fixture has difficult objects


def test_voc_datamodule_trains_on_2007_and_2012_trainval_and_tests_on_2007_test(fake_voc, tmp_path):
    from spatialprobe.data import build_datamodule

    cfg = compose_train("dataset=voc", f"dataset.root={fake_voc}", *TINY_DETECT, "dataset.num_workers=0")
    dm = build_datamodule(cfg)
    assert dm.sizes() == {"train": 12, "test": 4, "val": 4} and len(dm.classes) == 20
    x, targets, index = next(iter(dm.test_dataloader()))
    assert x.dtype == torch.uint8 and x.shape == (4, 3, 64, 64) and index.tolist() == [0, 1, 2, 3]
    assert targets.shape[-1] == 6 and (targets[..., 1:5] <= 64).all()
    x, targets, index = dm.on_after_batch_transfer((x, targets, index), 0)
    assert x.dtype == torch.float32 and abs(float(x.mean())) < 3


def test_cifar10_detect_is_a_pure_function_of_its_seed_and_is_cached(fake_cifar10, tmp_path):
    from spatialprobe.data.detection import load_canvases

    def canvases(seed):
        cfg = compose_train("dataset=cifar10_detect", f"dataset.root={fake_cifar10}", "dataset.verify=false",
                            "dataset.download=false", "dataset.image_size=64", "dataset.object_size=[12,30]",
                            "dataset.train_canvases=20", "dataset.test_canvases=10", f"dataset.build_seed={seed}")
        return load_canvases(cfg.dataset, tmp_path / "cache")

    (a, classes), (b, _), (c, _) = canvases(0), canvases(0), canvases(1)
    assert len(list((tmp_path / "cache").glob("cifar10_detect-64px-*.npz"))) == 2 and len(classes) == 10
    assert np.array_equal(a["train"][0].images, b["train"][0].images)
    assert not np.array_equal(a["train"][0].images, c["train"][0].images)
    for split, n in (("train", 20), ("test", 10)):
        read, targets = a[split]
        assert len(read) == n and len(targets) == n
        for t in targets:
            assert 1 <= len(t) <= 4 and ((t[:, 1:5] >= 0) & (t[:, 1:5] <= 64)).all()
            sides = np.concatenate([t[:, 3] - t[:, 1], t[:, 4] - t[:, 2]])
            assert (sides >= 9).all() and (sides <= 35).all()  # 12..30 px at aspect 3:4..4:3


def test_cifar10_detect_can_keep_some_classes(fake_cifar10, tmp_path):
    from spatialprobe.data.detection import load_canvases

    cfg = compose_train("dataset=cifar10_detect", f"dataset.root={fake_cifar10}", "dataset.verify=false",
                        "dataset.download=false", "dataset.image_size=64", "dataset.object_size=[12,30]",
                        "dataset.train_canvases=20", "dataset.test_canvases=10", "dataset.classes=[class7,class2]")
    assert cfg.dataset.num_classes == 2
    splits, classes = load_canvases(cfg.dataset, tmp_path)
    assert classes == ["class7", "class2"]
    labels = np.concatenate([t[:, 0] for t in splits["train"][1]])
    assert set(labels.tolist()) == {0.0, 1.0}
    bad = compose_train("dataset=cifar10_detect", f"dataset.root={fake_cifar10}", "dataset.verify=false",
                        "dataset.classes=[class7,unicorn]")
    with pytest.raises(ConfigError, match="unicorn not among the source's classes"):
        load_canvases(bad.dataset, tmp_path)


def test_a_pasted_object_is_where_its_box_says(fake_cifar10):
    from spatialprobe.data.detection import make_canvases

    images = np.full((3, 32, 32, 3), 255, dtype=np.uint8)
    canvases, targets = make_canvases(images, np.array([0, 1, 2]), 4, 48, (1, 2), (10, 20), 0.0, seed=3)
    for canvas, target in zip(canvases, targets, strict=True):
        for _label, x0, y0, x1, y1, _ in target[target[:, 0] >= 0]:
            assert (canvas[int(y0):int(y1), int(x0):int(x1)] == 255).all()


# --------------------------------------------------------------------------- loss and decoding
def encode(targets: torch.Tensor, grid: int, size: int, boxes: int, classes: int) -> torch.Tensor:
    """The YOLO tensor a perfect detector outputs for ``targets``: its first box holds each object."""
    from spatialprobe.tasks.detect import assign_targets

    out = torch.zeros(targets.shape[0] * grid * grid, boxes * 5 + classes)
    flat, rows = assign_targets(targets, grid, size)
    cell = size / grid
    out[flat, 0] = (rows[:, 1] + rows[:, 3]) / 2 / cell - flat % grid
    out[flat, 1] = (rows[:, 2] + rows[:, 4]) / 2 / cell - flat // grid % grid
    out[flat, 2] = ((rows[:, 3] - rows[:, 1]) / size).sqrt()
    out[flat, 3] = ((rows[:, 4] - rows[:, 2]) / size).sqrt()
    out[flat, 4] = 1.0
    out[flat, boxes * 5 + rows[:, 0].long()] = 1.0
    return out.view(targets.shape[0], grid, grid, -1)


TARGETS = torch.tensor([[[2, 4, 6, 30, 40, 0], [0, 40, 40, 62, 60, 0], [-1] * 6],
                        [[1, 10, 10, 20, 20, 0], [3, 30, 2, 60, 28, 0], [1, 0, 40, 20, 62, 1]]], dtype=torch.float32)


def test_perfect_prediction_has_zero_loss_and_decodes_to_the_boxes():
    from spatialprobe.tasks.detect import decode, yolo_loss
    from spatialprobe.tasks.voc_eval import Detections, Truth, evaluate

    out = encode(TARGETS, grid=4, size=64, boxes=2, classes=5)
    loss, parts = yolo_loss(out, TARGETS, 64, 2, 5)
    assert float(loss) == pytest.approx(0.0, abs=1e-6)
    dets = decode(out, 64, 2)
    assert [len(d) for d in dets] == [2, 2]  # the difficult object is no target: nothing predicted there
    for d, t in zip(dets, TARGETS, strict=True):
        real = t[(t[:, 0] >= 0) & (t[:, 5] == 0)]
        got, want = np.array(sorted(d[:, :4].tolist())), np.array(sorted(real[:, 1:5].tolist()))
        assert np.allclose(got, want, atol=1e-4)
        assert d[:, 4].tolist() == pytest.approx([1.0, 1.0])
    r = evaluate([Detections(d[:, :4].numpy(), d[:, 4].numpy(), d[:, 5].long().numpy()) for d in dets],
                 [Truth(t[t[:, 0] >= 0, 1:5].numpy(), t[t[:, 0] >= 0, 0].long().numpy(), t[t[:, 0] >= 0, 5].numpy() > 0)
                  for t in TARGETS], num_classes=5)
    assert r["map50"] == pytest.approx(100.0) and r["errors"]["correct"] == 100.0


def test_each_loss_term_sees_its_own_error():
    from spatialprobe.tasks.detect import yolo_loss

    perfect = encode(TARGETS, 4, 64, 2, 5)
    # a shifted box also lowers its IoU, the confidence's target: coord and obj
    for column, part in ((0, "coord+obj"), (4, "obj"), (9, "noobj"), (11, "cls")):
        out = perfect.clone()
        flat = out.view(-1, out.shape[-1])
        cell = int(flat[:, 4].nonzero()[0]) if part != "noobj" else int((flat[:, 4] == 0).nonzero()[0])
        flat[cell, column] += 0.5
        _, parts = yolo_loss(out, TARGETS, 64, 2, 5)
        hit = part.split("+")
        assert all(float(parts[k]) > 0.01 for k in hit) and all(float(v) < 1e-6 for k, v in parts.items()
                                                                 if k not in hit), part


def test_one_object_per_cell_the_largest():
    from spatialprobe.tasks.detect import assign_targets

    t = torch.tensor([[[0, 0, 0, 10, 10, 0], [1, 0, 0, 14, 14, 0], [2, 40, 40, 50, 50, 0]]], dtype=torch.float32)
    flat, rows = assign_targets(t, 4, 64)
    assert sorted(rows[:, 0].tolist()) == [1, 2]


def test_training_a_tiny_detector_on_one_batch_lowers_the_loss():
    from spatialprobe.models import build_model
    from spatialprobe.tasks.detect import Detector, yolo_loss

    torch.manual_seed(0)
    cfg = compose_train(*TINY_DETECT, "dataset=cifar10_detect")
    net = Detector(build_model(cfg.model, 5, 64), 5, 64)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.randn(2, 3, 64, 64)
    losses = []
    for _ in range(25):
        loss, _ = yolo_loss(net(x), TARGETS, 64, 2, 5)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_the_backbone_is_the_registry_network_with_the_surgery_and_no_classifier():
    from torch import nn

    from spatialprobe import surgery
    from spatialprobe.methods.spatial_shuffle import SpatialShuffle
    from spatialprobe.models import build_model
    from spatialprobe.run.measure import count_params
    from spatialprobe.tasks import build_network

    cfg = compose_train(*TINY_DETECT, "dataset=cifar10_detect", "method=spatial_shuffle", "k=1", "model.stem=imagenet")
    backbone = build_model(cfg.model, 10, 64)
    surgery.apply(backbone, cfg.method, 1, 64)
    net = build_network(cfg, backbone)
    shuffles = [n for n, m in net.named_modules() if isinstance(m, SpatialShuffle)]
    assert shuffles and all(n.startswith("backbone.body.layer4.2.") for n in shuffles)
    assert isinstance(net.body.fc, nn.Identity) and net.unit_names() == backbone.unit_names()
    out = net(torch.zeros(2, 3, 64, 64))
    assert out.shape == (2, net.grid, net.grid, 2 * 5 + 10) and net.grid == 2  # 64 px / 32
    plain = build_model(cfg.model, 10, 64)
    assert count_params(net) == count_params(plain) - count_params(plain.body.fc) + count_params(net.head)
    strided_cfg = compose_train(*TINY_DETECT, "dataset=cifar10_detect", "detect.head_stride=2", "model.stem=imagenet_nopool")
    strided = build_network(strided_cfg, build_model(strided_cfg.model, 10, 64))  # 64 px / 16 = 4, halved
    assert strided.grid == 2 and strided(torch.zeros(1, 3, 64, 64)).shape[1] == 2


def test_map_metric_counts_an_image_once_however_often_it_is_seen():
    from spatialprobe.tasks.detect import VOCMeanAP, decode

    out = encode(TARGETS, 4, 64, 2, 5)
    noisy = out.clone()
    noisy[0, ..., 0] += 1.0  # image 0: every box a cell to the right
    once, twice = VOCMeanAP(5), VOCMeanAP(5)
    once.update(decode(noisy, 64, 2), TARGETS, torch.tensor([0, 1]))
    twice.update(decode(noisy, 64, 2), TARGETS, torch.tensor([0, 1]))
    twice.update(decode(out, 64, 2), TARGETS, torch.tensor([0, 1]))  # a padded sampler's repeat: ignored
    assert once.compute()["map50"] == twice.compute()["map50"] < 100.0


# --------------------------------------------------------------------------- config checks and weights
@pytest.mark.parametrize("overrides,needle", [
    (["dataset=cifar10"], "task=detect needs a detection data set"),
    (["dataset=cifar10_detect", "task=classify"], "cifar10_detect is a detection data set"),
    (["dataset=cifar10_detect", "method=gap_fc", "k=1"], "method.name='gap_fc' is invalid"),
    (["dataset=cifar10_detect", "detect.head_stride=3"], "detect.head_stride=3 is invalid"),
    (["dataset=voc", "dataset.test_set=2012:test"], "dataset.test_set='2012:test' is invalid"),
    (["dataset=cifar10_detect", "dataset.objects=[3,1]"], "dataset.objects=[3, 1] is invalid"),
])
def test_bad_detection_configs_are_refused_before_anything_runs(overrides, needle):
    from spatialprobe.train import validate

    cfg = compose_train(*[o for o in TINY_DETECT if not o.startswith("task=")],
                        *(["task=detect"] if "task=classify" not in overrides else []), *overrides)
    with pytest.raises(ConfigError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        validate(cfg)


def test_pretrained_weights_from_a_state_dict_file(tmp_path):
    import torchvision

    from spatialprobe.models import build_model

    reference = torchvision.models.resnet18()
    torch.save(reference.state_dict(), tmp_path / "r18.pth")
    cfg = compose_train("task=detect", "dataset=cifar10_detect", "model=resnet18", "model.stem=imagenet",
                        f"model.pretrained={tmp_path / 'r18.pth'}")
    net = build_model(cfg.model, 10, 64)
    assert torch.equal(net.body.conv1.weight, reference.conv1.weight)
    assert torch.equal(net.body.layer4[1].bn2.running_var, reference.layer4[1].bn2.running_var)
    assert net.body.fc.out_features == 10  # the classifier of another shape keeps its own initialisation
    narrow = compose_train("task=detect", "dataset=cifar10_detect", "model=resnet18", "model.width=0.5",
                           f"model.pretrained={tmp_path / 'r18.pth'}")
    with pytest.raises(DataError, match="do not fit resnet18 .* e.g. conv1.weight: shape"):
        build_model(narrow.model, 10, 64)


def test_pretrained_imagenet_without_the_weights_is_one_clear_error(monkeypatch):
    from torchvision.models import ResNet18_Weights

    from spatialprobe.models import build_model

    def offline(self, *args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(ResNet18_Weights, "get_state_dict", offline)
    cfg = compose_train("task=detect", "dataset=cifar10_detect", "model=resnet18", "model.pretrained=imagenet")
    with pytest.raises(DataError, match="could not be downloaded .*resnet18-f37072fd.pth"):
        build_model(cfg.model, 10, 64)


# --------------------------------------------------------------------------- end to end
def test_fake_voc_trains_one_epoch_and_records_map_and_errors(voc_run):
    rec, run_dir = voc_run
    assert rec["status"] == "complete" and rec["task"] == "detect" and rec["dataset"] == "voc"
    assert rec["modified_unit_names"] == ["layer4.2"] and rec["params"] > 0 and rec["flops"] > 0
    assert rec["data_sizes"] == {"train": 12, "test": 4, "val": 4}
    for key in ("map50", "map50_all_point", "map50_best", "val_map50_best"):
        assert 0.0 <= rec[key] <= 100.0, key
    assert list(rec["ap50"])[:2] == ["aeroplane", "bicycle"] and len(rec["ap50"]) == 20
    # the record's mAP is the mean AP over the classes with a test box (the others have none)
    scored = [ap for ap in rec["ap50"].values() if ap is not None]
    assert 0 < len(scored) < 20 and rec["map50"] == pytest.approx(np.mean(scored), abs=0.01)
    # the error shares are those of the analysed top detections (after one epoch on 12 images the detector
    # may score every box below the 0.005 floor: then none); test_voc_eval checks each kind on known boxes
    assert set(rec["errors"]) == {"correct", "localization", "wrong_class", "background"}
    shares = sum(rec["errors"].values())
    assert shares == pytest.approx(100.0, abs=0.01) if rec["errors_analysed"] else shares == 0
    assert [e["index"] for e in rec["examples"]] == [0, 1, 2, 3] and rec["test_images"] == 4
    assert rec.get("test_top1") is None and rec["val_top1_best"] is None and rec["task"] == "detect"
    on_disk = json.loads((run_dir / "result.json").read_text())
    assert on_disk["map50"] == rec["map50"] and (run_dir / "checkpoints" / "best.ckpt").is_file()
    header = (run_dir / "logs" / "attempt-1" / "metrics.csv").read_text().splitlines()[0]
    assert "val_map50" in header and "train_loss_coord" in header


def test_detection_figures_from_the_records(voc_run, fake_voc, tmp_path):
    from spatialprobe.report.collect import collect_dirs
    from spatialprobe.report.detection import make_all

    _, run_dir = voc_run
    written = {p.name for p in make_all([run_dir], tmp_path / "figs")}
    assert {"detection_errors.png", "detection_examples.png", "detection_table.md"} <= written
    df = collect_dirs([run_dir])
    assert df.loc[0, "map50"] >= 0 and "examples" not in df.columns


def test_detection_record_holds_a_small_voc_xml(tmp_path):
    """The fixture's own XML is what VOC's parser reads (guards the fake tree the tests rely on)."""
    from xml.etree.ElementTree import fromstring

    from torchvision.datasets import VOCDetection

    node = VOCDetection.parse_voc_xml(fromstring(voc_xml("a.jpg", (10, 10), [("dog", (1, 2, 5, 6), 1)])))
    obj = node["annotation"]["object"][0]
    assert obj["name"] == "dog" and obj["difficult"] == "1" and obj["bndbox"]["xmax"] == "5"


@pytest.mark.parametrize("experiment", ["resnet50_voc_detect", "detect_cpu"])
def test_voc_schedule_decays_the_rate_100x_over_the_run(experiment):
    """S0: exponential decay from 1e-3; ours by 100x over the run, gamma per epoch (torch's convention)."""
    from conftest import compose_train
    from spatialprobe.tasks.base import build_scheduler

    cfg = compose_train(f"experiment={experiment}")
    epochs, per_epoch = int(cfg.recipe.epochs), 3
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=cfg.recipe.lr)
    sched = build_scheduler(opt, OmegaConf.to_container(cfg.recipe), epochs=epochs, total_steps=epochs * per_epoch)
    for _ in range(epochs * per_epoch):
        opt.step()
        sched["scheduler"].step()
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-5, rel=0.01)
