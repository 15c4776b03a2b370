"""task=detect: VOC reading, cifar10_detect, the YOLO loss and decoding, the detector, a fake VOC run, figures."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from conftest import compose_train
from fakedata import make_voc
from spatialprobe.errors import ConfigError, DataError

TINY_DETECT = ["task=detect", "model=resnet50", "model.width=0.0625", "dataset.image_size=64", "recipe=voc",
               "recipe.batch_size=4", "trainer.max_epochs=1", "trainer.enable_progress_bar=false",
               "trainer.log_every_n_steps=1", "trainer.precision=32-true"]


@pytest.fixture(scope="module")
def fake_voc(tmp_path_factory):
    return make_voc(tmp_path_factory.mktemp("voc"))


@pytest.fixture(scope="module")
def voc_run(fake_voc, tmp_path_factory):
    """Two epochs of a detector with a shuffled last backbone unit on the fake VOC tree, in process; every
    box scoring above 0 is a detection (an untrained detector's scores can all lie below the 0.005 default)."""
    from spatialprobe.train import run

    tmp = tmp_path_factory.mktemp("voc_run")
    cfg = compose_train("dataset=voc", f"dataset.root={fake_voc}", "dataset.num_workers=0", *TINY_DETECT,
                        "trainer.max_epochs=2", "detect.score_threshold=0", "method=spatial_shuffle", "k=1",
                        f"paths.cache_dir={tmp / 'cache'}")
    return run(cfg, tmp / "run"), tmp / "run"


def evaluate_by_hand(ckpt_path, eval_seed: int) -> dict:
    """VOC evaluation of a checkpoint's network on its test images, outside Lightning: restore the network, the
    test epoch's random stream (the shuffle draws), forward, decode with the run's detect.* keys, evaluate."""
    from spatialprobe.data import build_datamodule
    from spatialprobe.run.streams import seed_global
    from spatialprobe.tasks import load_checkpoint, restore
    from spatialprobe.tasks.detect import decode
    from spatialprobe.tasks.voc_eval import Detections, Truth, evaluate

    ckpt, tcfg = load_checkpoint(ckpt_path)
    net = restore(ckpt, tcfg).eval()
    dm = build_datamodule(tcfg)
    d = tcfg.detect
    seed_global(eval_seed, "test")  # what SeedSchedule does at the start of every test epoch
    found, truth = [], []
    with torch.no_grad():
        for batch in dm.test_dataloader():
            x, targets, _ = dm.on_after_batch_transfer(batch, 0)
            for det, t in zip(decode(net(x), net.image_size, net.boxes, d.score_threshold, d.nms_iou,
                                     d.max_detections), targets, strict=True):
                t = t[t[:, 0] >= 0].double().numpy()
                det = det.double().numpy()
                found.append(Detections(det[:, :4], det[:, 4], det[:, 5].astype(int)))
                truth.append(Truth(t[:, 1:5], t[:, 0].astype(int), t[:, 5] > 0))
    return evaluate(found, truth, 20, list(dm.classes))


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


def test_no_object_covers_more_than_max_overlap_of_another(fake_cifar10):
    """docs/detection.md: "no object covering more than max_overlap of another's box" (the share of the smaller
    box two boxes have in common, by hand first)."""
    from spatialprobe.data.detection import _covered, make_canvases

    assert _covered(np.array([0, 0, 10, 10]), np.array([5, 0, 15, 10])) == 0.5
    assert _covered(np.array([0, 0, 10, 10]), np.array([2, 2, 4, 4])) == 1.0  # inside: all of the smaller one
    images = np.full((8, 32, 32, 3), 200, dtype=np.uint8)
    worst = {}
    for limit in (0.0, 0.3):
        _, targets = make_canvases(images, np.arange(8), 40, 64, (3, 4), (16, 30), limit, seed=1)
        shares = [_covered(a[1:5], b[1:5]) for t in targets for i, a in enumerate(t) for b in t[i + 1:]
                  if a[0] >= 0 and b[0] >= 0]
        assert shares and max(shares) <= limit + 1e-6, limit
        worst[limit] = max(shares)
    assert worst[0.0] == 0.0 and worst[0.3] > 0.0  # crowded canvases do use the overlap they are allowed


def test_training_augmentation_is_yolos_and_moves_the_boxes_with_the_image(tmp_path):
    """docs/detection.md: flip, random scaling and translation by up to 20 % (jitter), exposure and saturation by
    up to 1.5x (color), boxes transformed with the image. The pipeline dataset=voc builds, then a white object on
    black: after every draw its box is where its pixels are; flips and scales between 0.8x and 1.2x occur."""
    from torchvision.transforms import v2

    from spatialprobe.data.detection import DetectionSet, transforms

    ds = compose_train("task=detect", "dataset=voc", "dataset.image_size=64").dataset
    steps = transforms(True, ds).transforms
    kinds = [type(t) for t in steps]
    assert kinds[:5] == [v2.ToImage, v2.Resize, v2.RandomHorizontalFlip, v2.RandomAffine, v2.ColorJitter]
    affine, color = steps[3], steps[4]
    assert affine.degrees == [0.0, 0.0] and affine.translate == (0.2, 0.2) and affine.scale == (0.8, 1.2)
    assert color.brightness == (0.5, 1.5) and color.saturation == (0.5, 1.5) and color.hue is None
    assert [type(t) for t in transforms(False, ds).transforms] == [v2.ToImage, v2.Resize]  # evaluation: resize only

    image = np.zeros((64, 64, 3), dtype=np.uint8)
    image[20:40, 10:20] = 255  # the object: x 10..30, y 20..40, white in its left half, grey in its right half
    image[20:40, 20:30] = 128
    target = np.array([[3, 10, 20, 30, 40, 0]], dtype=np.float32)
    ds.color = 0.0  # keep the colours, to find the object's pixels
    data = DetectionSet(lambda i: image, [target], transforms(True, ds))
    torch.manual_seed(0)
    widths, mirrored = [], 0
    for _ in range(30):
        x, t, _ = data[0]
        assert x.shape == (3, 64, 64) and t.shape == (1, 6) and t[0, 0] == 3
        grey = x.float().mean(0)
        ys, xs = (grey > 60).nonzero(as_tuple=True)
        box = t[0, 1:5]
        assert abs(xs.min() - box[0]) <= 1.5 and abs(xs.max() + 1 - box[2]) <= 1.5, (box, xs.min(), xs.max())
        assert abs(ys.min() - box[1]) <= 1.5 and abs(ys.max() + 1 - box[3]) <= 1.5, (box, ys.min(), ys.max())
        widths.append(float(box[2] - box[0]))
        white_x = (grey > 200).nonzero(as_tuple=True)[1].float().mean()
        grey_x = ((grey > 100) & (grey < 160)).nonzero(as_tuple=True)[1].float().mean()
        mirrored += bool(white_x > grey_x)
    assert 0 < mirrored < 30


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


def test_decoding_suppresses_per_class_and_keeps_max_detections():
    """docs/detection.md: score = confidence x class score, per-class NMS (torchvision's batched_nms), the best
    max_detections. One cell, two boxes at the same place (confidence 0.9 and 0.8), class scores 1.0 / 0.5: each
    class keeps its best box (a class-agnostic NMS would keep one detection), max_detections=1 the best one."""
    from spatialprobe.tasks.detect import decode

    out = torch.zeros(1, 1, 1, 2 * 5 + 2)
    out[0, 0, 0, :10] = torch.tensor([0.5, 0.5, 0.5, 0.5, 0.9, 0.5, 0.5, 0.5, 0.5, 0.8])
    out[0, 0, 0, 10:] = torch.tensor([1.0, 0.5])
    (dets,) = decode(out, 64, 2)
    # centre (0 + 0.5) x 64 = 32, side 0.5^2 x 64 = 16: the box 24..40
    assert dets.tolist() == [[24.0, 24.0, 40.0, 40.0, pytest.approx(0.9), 0.0],
                             [24.0, 24.0, 40.0, 40.0, pytest.approx(0.45), 1.0]]
    (best,) = decode(out, 64, 2, max_detections=1)
    assert best[:, 4:].tolist() == [[pytest.approx(0.9), 0.0]]
    (kept,) = decode(out, 64, 2, score_threshold=0.5)  # 0.45 and 0.4 fall below it
    assert kept[:, 4:].tolist() == [[pytest.approx(0.9), 0.0]]
    moved = out.clone()
    moved[0, 0, 0, 5:7] = torch.tensor([0.0, 0.0])  # the second box moved to the corner: IoU 0, both kept
    (apart,) = decode(moved, 64, 2)
    assert sorted(round(float(s), 2) for s in apart[:, 4]) == [0.4, 0.45, 0.8, 0.9]


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
    (["dataset=cifar10_detect", "model=gapnet_resnet18"], "model.head='gapnet' is invalid: a detector replaces the "
                                                           "classifier head .valid: linear.$"),
    (["dataset=cifar10_detect", "model=permutenet_resnet18"], "model.head='permutenet' is invalid"),
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
def test_fake_voc_trains_and_records_map_and_errors_of_the_final_and_the_best_network(voc_run):
    rec, run_dir = voc_run
    assert rec["status"] == "complete" and rec["task"] == "detect" and rec["dataset"] == "voc"
    assert rec["modified_unit_names"] == ["layer4.2"] and rec["params"] > 0 and rec["flops"] > 0
    assert rec["data_sizes"] == {"train": 12, "test": 4, "val": 4} and rec["epochs"] == 2
    assert list(rec["ap50"])[:2] == ["aeroplane", "bicycle"] and len(rec["ap50"]) == 20
    # the record's mAP is the mean AP over the classes with a test box (the others have none)
    scored = [ap for ap in rec["ap50"].values() if ap is not None]
    assert 0 < len(scored) < 20 and rec["map50"] == pytest.approx(np.mean(scored), abs=0.01)
    # mAP, AP and the error shares (docs/detection.md) are those of the final network (last.ckpt) and, with
    # _best, of the best-validation checkpoint (best.ckpt) on the 4 test images, computed here outside Lightning
    assert set(rec["errors"]) == {"correct", "localization", "wrong_class", "background"}
    for ckpt, suffix in (("last", ""), ("best", "_best")):
        by_hand = evaluate_by_hand(run_dir / "checkpoints" / f"{ckpt}.ckpt", rec["eval_seed"])
        assert rec[f"map50{suffix}"] == pytest.approx(by_hand["map50"], abs=1e-3), ckpt
        assert rec[f"map50_all_point{suffix}"] == pytest.approx(by_hand["map50_all_point"], abs=1e-3), ckpt
        assert rec[f"errors{suffix}"] == pytest.approx(by_hand["errors"], abs=1e-3), ckpt
        if ckpt == "last":
            assert rec["errors_analysed"] == by_hand["errors_analysed"] > 0
            assert rec["ap50"] == pytest.approx({k: v for k, v in by_hand["ap50"].items()}, abs=1e-3)
    assert sum(rec["errors"].values()) == pytest.approx(100.0, abs=0.01)
    assert [e["index"] for e in rec["examples"]] == [0, 1, 2, 3] and rec["test_images"] == 4
    assert rec.get("test_top1") is None and rec["val_top1_best"] is None and rec["task"] == "detect"
    on_disk = json.loads((run_dir / "result.json").read_text())
    assert on_disk["map50"] == rec["map50"] and (run_dir / "checkpoints" / "best.ckpt").is_file()
    header = (run_dir / "logs" / "attempt-1" / "metrics.csv").read_text().splitlines()[0]
    assert "val_map50" in header and "train_loss_coord" in header


def test_the_record_takes_the_final_networks_test_and_the_best_checkpoints_as_best():
    """record_fields: the first test of a run is the final network's, the last the best checkpoint's (the runner
    tests best.ckpt after last); errors / map50 come from the one and errors_best / map50_best from the other."""
    from types import SimpleNamespace

    from spatialprobe.tasks.detect import TASK

    def result(map50, correct):
        return {"map50": map50, "map50_all_point": map50 / 2, "ap50": {"dog": map50},
                "errors": {"correct": correct, "localization": 10.0, "wrong_class": 90.0 - correct, "background": 0.0},
                "errors_analysed": 7, "images": 4, "examples": []}

    module = SimpleNamespace(test_results=[result(40.0, 30.0), result(55.5, 50.0)])
    fields = TASK.record_fields(None, module)
    assert (fields["map50"], fields["map50_all_point"], fields["errors"]["correct"]) == (40.0, 20.0, 30.0)
    assert (fields["map50_best"], fields["map50_all_point_best"], fields["errors_best"]["correct"]) == (55.5, 27.75, 50.0)
    assert fields["errors_best"]["wrong_class"] == 40.0 and fields["ap50"] == {"dog": 40.0}
    module.test_results = module.test_results[:1]  # best == final: tested once
    assert TASK.record_fields(None, module)["errors_best"] == TASK.record_fields(None, module)["errors"]


def test_detection_figures_from_the_records(voc_run, fake_voc, tmp_path, monkeypatch):
    """plot_detection draws what the records say (docs/detection.md): two records written from the real run's,
    with error shares, mAPs and boxes chosen here. Fig. 9: one pie per run, the baseline first, each wedge its
    share (a zero share left out); the table: the records' numbers; Fig. 8: the records' boxes, scaled from the
    image_size frame to the stored image, ground truth dashed white. The images are read from the data set the
    record names; when it moved, the figure is skipped with a note unless --data-root says where it is now."""
    import matplotlib.pyplot as plt
    import pandas as pd
    from matplotlib.patches import Rectangle, Wedge
    from PIL import Image

    from conftest import cli
    from spatialprobe.data.detection import read_voc

    rec, _ = voc_run
    moved = json.loads(json.dumps(rec))
    moved["config"]["dataset"]["root"] = str(tmp_path / "moved-away")
    runs = {
        "base": dict(k=0, method="none", map50=50.0, map50_all_point=48.0, errors_analysed=10,
                     errors={"correct": 60.0, "localization": 25.0, "wrong_class": 15.0, "background": 0.0},
                     examples=[{"index": 1, "detections": [[8.0, 16.0, 32.0, 48.0, 0.9, 11]],
                                "truth": [[11, 4.0, 8.0, 20.0, 40.0, 0]]}]),
        "shuffled": dict(k=1, method="spatial_shuffle", map50=34.0, map50_all_point=30.0, errors_analysed=10,
                         errors={"correct": 40.0, "localization": 30.0, "wrong_class": 20.0, "background": 10.0},
                         examples=[{"index": 1, "detections": [], "truth": [[11, 4.0, 8.0, 20.0, 40.0, 0]]}]),
    }
    for folder, name in (("a", "shuffled"), ("b", "base")):  # by path the shuffled run comes first; in figures not
        (tmp_path / "runs" / folder).mkdir(parents=True)
        (tmp_path / "runs" / folder / "result.json").write_text(json.dumps({**moved, **runs[name]}))

    figures = []
    real_close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: figures.append(fig))
    try:
        p = cli("spatialprobe.plot_detection", [str(tmp_path / "runs"), "-o", str(tmp_path / "figs")])
        assert p.returncode == 0, p.stderr
        assert "note: detection_examples skipped, the test images cannot be read" in p.stderr
        assert {f.name for f in (tmp_path / "figs").iterdir()} == {
            "detection_errors.png", "detection_errors.pdf", "detection_table.csv", "detection_table.md"}
        (pies,) = figures
        titles = [ax.get_title() for ax in pies.axes]
        assert titles == ["Diagnosing the baseline\nmAP@0.5 50.0% (10 detections)",
                          "Diagnosing the shuffled model (spatial_shuffle, K=1)\nmAP@0.5 34.0% (10 detections)"]
        for ax, name in zip(pies.axes, ("base", "shuffled"), strict=True):
            wedges = [w for w in ax.patches if isinstance(w, Wedge)]
            shares = [v for v in runs[name]["errors"].values() if v]
            assert [round((w.theta2 - w.theta1) / 3.6, 6) for w in wedges] == shares, name
            labels = [t.get_text() for t in ax.texts if "%" in t.get_text()]
            assert labels == [f"{lbl}\n{v:.1f}%" for lbl, v in zip(("correct", "loc error", "wrong class", "background"),
                                                                     runs[name]["errors"].values(), strict=True) if v]
        table = pd.read_csv(tmp_path / "figs" / "detection_table.csv")
        assert table["k"].tolist() == [0, 1] and table["map50"].tolist() == [50.0, 34.0]
        assert table["err_localization"].tolist() == [25.0, 30.0] and table["err_background"].tolist() == [0.0, 10.0]

        figures.clear()
        p = cli("spatialprobe.plot_detection", [str(tmp_path / "runs"), "-o", str(tmp_path / "figs2"),
                                                "--data-root", str(fake_voc)])
        assert p.returncode == 0 and "skipped" not in p.stderr, p.stderr
        assert (tmp_path / "figs2" / "detection_examples.png").is_file()
        examples = figures[-1]
        images, _ = read_voc(fake_voc, "2007", "test")
        w, h = Image.open(images[1]).size
        sx, sy = w / 64, h / 64  # the record's boxes live in the 64 px frame of dataset.image_size
        drawn = [ax for ax in examples.axes if ax.images]
        assert [ax.get_title() for ax in drawn] == ["baseline", "spatial_shuffle, K=1"]  # side by side
        for ax, dets in zip(drawn, (1, 0), strict=True):
            boxes = [(r.get_x(), r.get_y(), r.get_width(), r.get_height(), r.get_linestyle(), r.get_edgecolor()[:3])
                     for r in ax.patches if isinstance(r, Rectangle)]
            truth = [b for b in boxes if b[4] == "--"]
            assert truth == [(pytest.approx(4 * sx), pytest.approx(8 * sy), pytest.approx(16 * sx), pytest.approx(32 * sy),
                              "--", (1.0, 1.0, 1.0))]
            found = [b[:4] for b in boxes if b[4] != "--"]
            assert found == ([(pytest.approx(8 * sx), pytest.approx(16 * sy), pytest.approx(24 * sx),
                               pytest.approx(32 * sy))] if dets else [])
        assert any(t.get_text() == "dog 0.90" for t in drawn[0].texts)
    finally:
        for fig in figures:
            real_close(fig)


def test_a_hand_written_voc_annotation_reads_as_the_devkit_boxes(tmp_path):
    """``read_voc`` on one annotation written out by hand (not by the fixture): the class index in VOC's
    order, the devkit's 1-based inclusive box ``[xmin, xmax]`` as ``(xmin - 1, xmax)``, difficult as 0 / 1
    (absent: 0), and the objects in file order."""
    from PIL import Image

    from spatialprobe.data.detection import read_voc

    base = tmp_path / "VOCdevkit" / "VOC2007"
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (base / sub).mkdir(parents=True)
    Image.new("RGB", (20, 16)).save(base / "JPEGImages" / "000001.jpg")
    (base / "ImageSets" / "Main" / "test.txt").write_text("000001\n")
    (base / "Annotations" / "000001.xml").write_text("""<annotation>
  <filename>000001.jpg</filename><size><width>20</width><height>16</height><depth>3</depth></size>
  <object><name>dog</name><truncated>1</truncated><difficult>1</difficult>
    <bndbox><xmin>1</xmin><ymin>2</ymin><xmax>5</xmax><ymax>6</ymax></bndbox></object>
  <object><name>aeroplane</name>
    <bndbox><xmin>10</xmin><ymin>3</ymin><xmax>20</xmax><ymax>16</ymax></bndbox></object>
  <object><name> tvmonitor </name><difficult>0</difficult>
    <bndbox><xmin>7.5</xmin><ymin>8</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object>
</annotation>""")
    images, targets = read_voc(tmp_path, "2007", "test")
    assert images == [str(base / "JPEGImages" / "000001.jpg")]
    # dog is class 11 of VOC's 20 (aeroplane 0, ..., tvmonitor 19)
    assert targets[0].tolist() == [[11, 0, 1, 5, 6, 1], [0, 9, 2, 20, 16, 0], [19, 6.5, 7, 9, 9, 0]]
    (base / "Annotations" / "000001.xml").write_text(
        "<annotation><object><name>dog</name><bndbox><xmin>4</xmin><ymin>2</ymin><xmax>3</xmax><ymax>6</ymax>"
        "</bndbox></object></annotation>")
    with pytest.raises(DataError, match=r"000001.xml: object 0 \(dog\) has an empty bndbox \(4.0, 2.0, 3.0, 6.0\)"):
        read_voc(tmp_path, "2007", "test")


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
