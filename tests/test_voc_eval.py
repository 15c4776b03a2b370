"""VOC's AP and S0 Fig. 9's error diagnosis on hand-made boxes, and AP checked against torchmetrics."""

from __future__ import annotations

import numpy as np
import pytest

from spatialprobe.tasks.voc_eval import Detections, Truth, average_precision, box_iou, evaluate


def truth(*objects):
    """objects: (label, x0, y0, x1, y1[, difficult])"""
    rows = [list(o) + [0] * (6 - len(o)) for o in objects]
    a = np.asarray(rows, dtype=float).reshape(-1, 6)
    return Truth(a[:, 1:5], a[:, 0].astype(int), a[:, 5] > 0)


def dets(*objects):
    """objects: (label, score, x0, y0, x1, y1)"""
    a = np.asarray(objects, dtype=float).reshape(-1, 6)
    return Detections(a[:, 2:6], a[:, 1], a[:, 0].astype(int))


SCENE = [truth((0, 10, 10, 50, 50), (1, 60, 20, 90, 80)), truth((2, 0, 0, 30, 40)), truth((0, 5, 5, 25, 25))]


def perfect():
    return [dets(*[(int(c), 0.9, *b) for c, b in zip(t.labels, t.boxes, strict=True)]) for t in SCENE]


def test_iou_of_hand_made_boxes():
    assert box_iou([0, 0, 10, 10], [0, 0, 10, 10])[0, 0] == 1.0
    assert box_iou([0, 0, 10, 10], [5, 0, 15, 10])[0, 0] == pytest.approx(50 / 150)
    assert box_iou([0, 0, 10, 10], [20, 20, 30, 30])[0, 0] == 0.0


def test_perfect_detector_scores_map_1_and_only_correct_detections():
    r = evaluate(perfect(), SCENE, num_classes=3)
    assert r["map50"] == pytest.approx(100.0) and r["map50_all_point"] == pytest.approx(100.0)
    assert r["errors"] == {"correct": 100.0, "localization": 0.0, "wrong_class": 0.0, "background": 0.0}
    assert r["errors_analysed"] == 4


def test_box_shifted_by_half_its_width_is_a_localization_error():
    # IoU of a box with itself shifted by half its width: 1/3 < 0.5, >= 0.1
    shifted = [dets((0, 0.9, 30, 10, 70, 50)), dets(), dets()]
    r = evaluate(shifted, [truth((0, 10, 10, 50, 50)), truth(), truth()], num_classes=1)
    assert r["map50"] == 0.0
    assert r["errors"]["localization"] == 100.0


def test_wrong_class_background_and_duplicates():
    scene = [truth((0, 0, 0, 40, 40), (1, 100, 100, 140, 140))]
    d = [dets((0, 0.9, 0, 0, 40, 40),        # correct
              (0, 0.8, 1, 1, 40, 40),        # duplicate of a matched box: localization (Hoiem)
              (1, 0.7, 0, 0, 40, 40),        # class 1 on the class-0 object: wrong class
              (1, 0.6, 200, 200, 240, 240))]  # nothing there: background
    r = evaluate(d, scene, num_classes=2)
    # class 0 has 1 object -> its top-1 detection (correct); class 1 has 1 -> its top-1 (wrong class)
    assert r["errors"] == {"correct": 50.0, "localization": 0.0, "wrong_class": 50.0, "background": 0.0}
    scene2 = [truth((0, 0, 0, 40, 40), (0, 50, 50, 90, 90), (1, 100, 100, 140, 140), (1, 0, 100, 40, 140))]
    r2 = evaluate(d, scene2, num_classes=2)  # two objects per class: the top 2 of each
    assert r2["errors"] == {"correct": 25.0, "localization": 25.0, "wrong_class": 25.0, "background": 25.0}


def test_difficult_objects_are_neither_true_nor_false_positives():
    scene = [truth((0, 0, 0, 40, 40), (0, 100, 100, 140, 140, 1))]
    r = evaluate([dets((0, 0.5, 0, 0, 40, 40), (0, 0.9, 100, 100, 140, 140))], scene, num_classes=1)
    assert r["map50"] == pytest.approx(100.0)  # the higher-scored detection of the difficult box is ignored
    assert r["errors_analysed"] == 1
    missed = evaluate([dets((0, 0.9, 100, 100, 140, 140))], scene, num_classes=1)
    assert missed["map50"] == 0.0 and missed["errors_analysed"] == 0  # not a false positive either


def test_eleven_point_and_all_point_ap_by_hand():
    # ranked: TP, FP, TP of 2 objects -> recall .5 .5 1, precision 1 .5 .667
    recall, precision = np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3])
    assert average_precision(recall, precision, None) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    assert average_precision(recall, precision, 11) == pytest.approx((6 * 1 + 5 * 2 / 3) / 11)
    scene = [truth((0, 0, 0, 10, 10)), truth((0, 0, 0, 10, 10))]
    d = [dets((0, 0.9, 0, 0, 10, 10), (0, 0.8, 50, 50, 60, 60)), dets((0, 0.7, 0, 0, 10, 10))]
    r = evaluate(d, scene, num_classes=1)
    assert r["map50"] == pytest.approx(100 * (6 + 5 * 2 / 3) / 11)
    assert r["map50_all_point"] == pytest.approx(100 * (0.5 + 0.5 * 2 / 3))


def random_scene(rng, images=30, classes=4):
    """Random objects (same-class boxes of an image never overlap) and noisy detections of them."""
    truths, detections = [], []
    for _ in range(images):
        objects = []
        for k in range(int(rng.integers(1, 6))):
            c = int(rng.integers(classes))
            x0, y0 = 60.0 * (k % 3) + rng.uniform(0, 10), 60.0 * (k // 3) + rng.uniform(0, 10)  # disjoint slots
            objects.append((c, x0, y0, x0 + rng.uniform(10, 45), y0 + rng.uniform(10, 45)))
        t = truth(*objects)
        d = []
        for c, *b in objects:
            if rng.random() < 0.8:
                x0, y0, x1, y1 = np.asarray(b) + rng.normal(0, 3, 4)
                d.append((c if rng.random() < 0.85 else int(rng.integers(classes)), rng.random(),
                          x0, y0, max(x1, x0 + 2), max(y1, y0 + 2)))  # a detector's boxes are never empty
        for _ in range(int(rng.integers(0, 4))):  # false alarms
            x0, y0 = rng.uniform(0, 150, 2)
            d.append((int(rng.integers(classes)), rng.random() * 0.6, x0, y0, x0 + 20, y0 + 20))
        truths.append(t)
        detections.append(dets(*d))
    return detections, truths


def test_ap_agrees_with_torchmetrics_mean_average_precision():
    """Same matching, COCO's 101-point interpolation: our AP equals torchmetrics' (pycocotools backend)."""
    pytest.importorskip("pycocotools")
    import torch
    from torchmetrics.detection import MeanAveragePrecision

    rng = np.random.default_rng(0)
    detections, truths = random_scene(rng)
    ours = evaluate(detections, truths, num_classes=4)
    # COCO's recall thresholds as pycocotools makes them (torchmetrics' default rounds them to float32)
    metric = MeanAveragePrecision(iou_type="bbox", iou_thresholds=[0.5], rec_thresholds=np.linspace(0, 1, 101).tolist(),
                                  backend="pycocotools")
    metric.update(
        [{"boxes": torch.tensor(d.boxes, dtype=torch.float64).reshape(-1, 4), "scores": torch.tensor(d.scores),
          "labels": torch.tensor(d.labels)} for d in detections],
        [{"boxes": torch.tensor(t.boxes, dtype=torch.float64), "labels": torch.tensor(t.labels)} for t in truths])
    theirs = float(metric.compute()["map_50"]) * 100
    assert 20 < ours["map50_coco101"] < 95  # a scene that is neither trivial nor hopeless
    assert ours["map50_coco101"] == pytest.approx(theirs, abs=1e-3)
    assert abs(ours["map50_all_point"] - theirs) < 2.0 and abs(ours["map50"] - theirs) < 5.0
