"""Pascal VOC detection evaluation: AP at IoU 0.5 and S0 Fig. 9's error diagnosis.

Boxes are ``(x0, y0, x1, y1)`` in continuous pixel coordinates (a pixel spans one unit). The VOC
devkit's 1-based inclusive boxes ``[xmin, xmax]`` are ``(xmin - 1, xmax)`` here, so every IoU below
equals the devkit's "+1" IoU.

**Matching** (VOC devkit, ``VOCevaldet.m``): per class, the detections of all images are ranked by
score; each is matched to the ground-truth box of its class in its image with which it has the
highest IoU. IoU >= 0.5 with a ``difficult`` box: the detection is ignored (neither true nor false
positive); IoU >= 0.5 with a box not matched yet: true positive; with one already matched: false
positive (a duplicate); IoU < 0.5: false positive. Recall counts the non-difficult boxes.

**AP**: ``points=11`` is VOC 2007's 11-point interpolated AP (the mean over recall 0, 0.1, ..., 1
of the highest precision at that recall or above), the metric of the VOC 2007 test set and of S0's
numbers; ``points=None`` is the all-point AP of VOC 2010+ (the area under the precision envelope);
``points=101`` is COCO's interpolation (used to check this module against torchmetrics /
pycocotools in the tests). mAP is the mean over the classes with at least one non-difficult box.

**Error diagnosis** (S0 Fig. 9, the analysis of Hoiem et al. 2012 as YOLO's Fig. 4 reports it): for
each class the top N detections (N = its number of non-difficult boxes; ignored detections left
out), each counted as exactly one of

* ``correct``: a true positive above (right class, IoU >= 0.5, first match);
* ``localization``: right class, 0.1 <= IoU < 0.5 with a box of the class, or a duplicate
  detection of an already matched box (S0: "correct class label and the IoU to the ground truth
  is less than 0.5");
* ``wrong_class``: IoU >= 0.1 with a box of another class (Hoiem's "similar" and "other" merged,
  as S0's pie does);
* ``background``: IoU < 0.1 with every box of the image;

and the shares are percentages of all the detections analysed (pooled over classes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

IOU_MATCH = 0.5      # a detection is correct at IoU >= 0.5 (VOC)
IOU_NEAR = 0.1       # Hoiem et al.: below this a detection does not touch an object
ERROR_TYPES = ("correct", "localization", "wrong_class", "background")


@dataclass
class Truth:
    """The ground truth of one image: boxes (m, 4), labels (m,), difficult (m,) bool."""

    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray


@dataclass
class Detections:
    """The detections of one image: boxes (n, 4), scores (n,), labels (n,)."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` (n, 4) with every box of ``b`` (m, 4): (n, m), torchvision's ``box_iou``
    in float64 (two empty boxes: 0)."""
    from torchvision.ops import box_iou as torchvision_box_iou

    a, b = (torch.as_tensor(np.asarray(v, dtype=np.float64).reshape(-1, 4)) for v in (a, b))
    return torchvision_box_iou(a, b).nan_to_num(0.0).numpy()


def average_precision(recall: np.ndarray, precision: np.ndarray, points: int | None = 11) -> float:
    """AP from a ranked list's recall / precision (see the module docstring for ``points``)."""
    recall, precision = np.asarray(recall, dtype=np.float64), np.asarray(precision, dtype=np.float64)
    if points is None:
        r = np.concatenate([[0.0], recall, [1.0]])
        p = np.concatenate([[0.0], precision, [0.0]])
        p = np.maximum.accumulate(p[::-1])[::-1]
        step = np.nonzero(r[1:] != r[:-1])[0]
        return float(np.sum((r[step + 1] - r[step]) * p[step + 1]))
    if len(recall) == 0:
        return 0.0
    envelope = np.maximum.accumulate(precision[::-1])[::-1]  # the best precision at this recall or above
    at = np.searchsorted(recall, np.linspace(0.0, 1.0, points), side="left")
    return float(np.mean(np.where(at < len(recall), envelope[np.minimum(at, len(recall) - 1)], 0.0)))


def _rank_class(c: int, dets: list[Detections], truths: list[Truth]):
    """Match the detections of class ``c`` (VOC's rule, module docstring).

    Returns, for the detections ranked by score: the outcome (1 true positive, 0 false positive, 2
    duplicate, i.e. a false positive on an already matched box, -1 ignored), their image, boxes and
    best IoU with a box of class ``c``; and the number of non-difficult boxes of the class.
    """
    images, scores, boxes, best_iou, best_gt = [], [], [], [], []
    gt = []
    for i, (d, t) in enumerate(zip(dets, truths, strict=True)):
        keep = d.labels == c
        b = d.boxes[keep].reshape(-1, 4)
        g = t.boxes[t.labels == c].reshape(-1, 4)
        gt.append(t.difficult[t.labels == c].astype(bool))
        ious = box_iou(b, g) if len(g) else np.zeros((len(b), 0))
        images.append(np.full(len(b), i))
        scores.append(d.scores[keep])
        boxes.append(b)
        best_gt.append(ious.argmax(1) if len(g) else np.full(len(b), -1))
        best_iou.append(ious.max(1) if len(g) else np.zeros(len(b)))
    order = np.argsort(-np.concatenate(scores), kind="mergesort")
    images, boxes = np.concatenate(images)[order], np.concatenate(boxes)[order]
    best_iou, best_gt = np.concatenate(best_iou)[order], np.concatenate(best_gt)[order]
    matched = [np.zeros(len(g), dtype=bool) for g in gt]
    npos = int(sum((~g).sum() for g in gt))
    outcome = np.zeros(len(order), dtype=np.int64)
    for r in np.nonzero(best_iou >= IOU_MATCH)[0]:
        i, m = images[r], best_gt[r]
        if gt[i][m]:
            outcome[r] = -1
        elif not matched[i][m]:
            outcome[r], matched[i][m] = 1, True
        else:
            outcome[r] = 2
    return outcome, images, boxes, best_iou, npos


def evaluate(dets: list[Detections], truths: list[Truth], num_classes: int,
             class_names: list[str] | None = None) -> dict:
    """mAP@0.5 (11-point, all-point, 101-point), AP per class and the error diagnosis, in percent.

    ``dets[i]`` and ``truths[i]`` belong to the same image. Classes without a non-difficult box have
    no AP (None) and stay out of the means.
    """
    names = class_names or [str(c) for c in range(num_classes)]
    aps = {11: {}, None: {}, 101: {}}
    counts = dict.fromkeys(ERROR_TYPES, 0)
    for c in range(num_classes):
        outcome, images, boxes, best_iou, npos = _rank_class(c, dets, truths)
        kept = outcome >= 0
        tp, fp = np.cumsum(outcome[kept] == 1), np.cumsum(outcome[kept] != 1)
        for points in aps:
            if npos == 0:
                aps[points][names[c]] = None
                continue
            recall = tp / npos
            precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
            aps[points][names[c]] = 100.0 * average_precision(recall, precision, points)
        # Fig. 9: the top-N detections of this class
        top = np.nonzero(kept)[0][:npos]
        for r in top:
            if outcome[r] == 1:
                counts["correct"] += 1
            elif best_iou[r] >= IOU_NEAR:
                counts["localization"] += 1
            else:
                t = truths[images[r]]
                other = t.boxes[t.labels != c].reshape(-1, 4)
                near = len(other) and box_iou(boxes[r], other).max() >= IOU_NEAR
                counts["wrong_class" if near else "background"] += 1
    total = sum(counts.values())

    def mean(ap: dict) -> float:
        values = [v for v in ap.values() if v is not None]
        return float(np.mean(values)) if values else 0.0

    return {
        "map50": mean(aps[11]),
        "map50_all_point": mean(aps[None]),
        "map50_coco101": mean(aps[101]),
        "ap50": aps[11],
        "errors": {k: (100.0 * v / total if total else 0.0) for k, v in counts.items()},
        "errors_analysed": total,
    }
