"""``task=detect``: S0's YOLO-like detector on a backbone of the model registry (S0 section 4.5).

S0: "The architecture consists of a backbone and a detection head; the backbone is a ResNet-50
without the classifier and the detection head has 3 bottlenecks and a 3 x 3 convolutional layer
whose outputs is in the same format as [YOLO]. [...] we use a 3 x 3 convolution so that the
prediction of a bounding box at a certain location does not depend on all activation on the
feature map."

* **Network** (:class:`Detector`): the registry's network (any architecture; ``method=`` and ``k=``
  have already modified its units, exactly as for classification) without its classifier, its last
  spatial map (``forward_features``) into :class:`YoloHead`: three torchvision bottlenecks at the
  backbone's width (the first with stride ``detect.head_stride``) and a 3x3 conv with
  ``B * 5 + C`` outputs per cell. The output is YOLO's S x S x (B * 5 + C) tensor: per cell B boxes
  ``(x, y, sqrt w, sqrt h, confidence)``, x / y the centre's offset inside the cell, w / h relative
  to the image, then C class scores shared by the cell's boxes; linear outputs, as YOLO's.
* **Loss** (:func:`yolo_loss`, YOLO v1 eq. 3, sum-squared error, summed over the grid and averaged
  over the images): an object belongs to the cell holding its centre (one object per cell: the
  largest); of that cell's B boxes the one with the highest IoU with it is "responsible". Terms:
  ``lambda_coord`` x the squared errors of x, y, sqrt w, sqrt h of responsible boxes; (confidence -
  IoU)^2 of responsible boxes; ``lambda_noobj`` x confidence^2 of every other box; the squared
  error of the class scores of cells with an object. ``difficult`` objects are not targets.
* **Decoding** (:func:`decode`): score = confidence x class score for every box and class;
  scores above ``detect.score_threshold``, per-class non-maximum suppression at IoU
  ``detect.nms_iou`` (torchvision's ``batched_nms``), the best ``detect.max_detections`` per image.
* **Evaluation**: :class:`VOCMeanAP` (a torchmetrics ``Metric``, exact under DDP) collects the
  detections and ground truth of every image, and :func:`spatialprobe.tasks.voc_eval.evaluate` gives
  mAP@0.5 (VOC 2007 11-point and all-point) and S0 Fig. 9's error shares.
"""

from __future__ import annotations

import torch
import torchmetrics
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torchvision.models.resnet import Bottleneck
from torchvision.ops import batched_nms

from spatialprobe.models import SpatialNet, init_like_torchvision
from spatialprobe.run.measure import dummy_forward
from spatialprobe.run.records import rounded
from spatialprobe.tasks import voc_eval
from spatialprobe.tasks.base import Task, TaskModule

STAGES = ("val", "test")
EXAMPLES = 11  # S0 Fig. 8: "the first 11 images in the test set"


# --------------------------------------------------------------------------- network
class YoloHead(nn.Module):
    """Three bottlenecks (torchvision's, width kept) and a 3x3 conv to ``outputs`` channels per cell."""

    def __init__(self, channels: int, outputs: int, stride: int = 1):
        super().__init__()
        planes = max(1, channels // Bottleneck.expansion)
        width = planes * Bottleneck.expansion
        down = None
        if stride != 1 or width != channels:
            down = nn.Sequential(nn.Conv2d(channels, width, 1, stride=stride, bias=False), nn.BatchNorm2d(width))
        self.blocks = nn.Sequential(Bottleneck(channels, planes, stride, down), Bottleneck(width, planes),
                                    Bottleneck(width, planes))
        self.out = nn.Conv2d(width, outputs, 3, padding=1)
        init_like_torchvision(self)
        nn.init.zeros_(self.out.weight)  # every prediction starts at 0: no box, no class, a calm first step
        nn.init.zeros_(self.out.bias)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.out(self.blocks(f))


class Detector(nn.Module):
    """A registry network without its classifier, and :class:`YoloHead` on its last spatial map.

    ``body``, ``family`` and ``unit_names`` are the backbone's, so the measurements of a run
    (feature maps, receptive field) read the backbone as for classification; ``forward`` returns
    the raw YOLO tensor (N, S, S, B * 5 + C).
    """

    def __init__(self, backbone: SpatialNet, num_classes: int, image_size: int, boxes: int = 2,
                 head_stride: int = 1):
        super().__init__()
        backbone.family.drop_classifier(backbone.body)
        self.backbone = backbone
        self.num_classes, self.boxes, self.image_size = int(num_classes), int(boxes), int(image_size)
        f = dummy_forward(backbone, image_size, backbone.forward_features)
        if f.dim() != 4:
            raise ValueError(f"{backbone.arch}: the backbone gives no spatial map at {image_size} px")
        self.head = YoloHead(f.shape[1], self.boxes * 5 + self.num_classes, head_stride)
        self.grid = -(-f.shape[-1] // head_stride)

    @property
    def body(self) -> nn.Module:
        return self.backbone.body

    @property
    def family(self):
        return self.backbone.family

    @property
    def arch(self) -> str:
        return self.backbone.arch

    def unit_names(self) -> list[str]:
        return self.backbone.unit_names()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone.forward_features(x)).permute(0, 2, 3, 1)


# --------------------------------------------------------------------------- loss and decoding
def _cell_boxes(pred: torch.Tensor, grid: int, image_size: int) -> torch.Tensor:
    """YOLO box outputs (..., S, S, B, 4+) -> (x0, y0, x1, y1) in pixels (..., S, S, B, 4)."""
    cell = image_size / grid
    j = torch.arange(grid, device=pred.device, dtype=pred.dtype).view(1, grid, 1)
    i = torch.arange(grid, device=pred.device, dtype=pred.dtype).view(grid, 1, 1)
    cx, cy = (j + pred[..., 0]) * cell, (i + pred[..., 1]) * cell
    w, h = pred[..., 2].square() * image_size, pred[..., 3].square() * image_size
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


def paired_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of the boxes ``a[..., :]`` and ``b[..., :]`` pair by pair (broadcast), ``x0, y0, x1, y1``."""
    w = (torch.minimum(a[..., 2], b[..., 2]) - torch.maximum(a[..., 0], b[..., 0])).clamp(min=0)
    h = (torch.minimum(a[..., 3], b[..., 3]) - torch.maximum(a[..., 1], b[..., 1])).clamp(min=0)
    inter = w * h
    union = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1]) + (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1]) - inter
    return inter / union.clamp(min=1e-9)


def assign_targets(targets: torch.Tensor, grid: int, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(flat cell index in N*S*S, target row) of every object a cell is responsible for.

    ``targets``: (N, M, 6) rows ``label, x0, y0, x1, y1, difficult`` (label -1: padding). Difficult
    objects are left out; of several objects centred in one cell the largest is kept (ties: the first).
    """
    valid = (targets[..., 0] >= 0) & (targets[..., 5] == 0)
    n_idx, _ = valid.nonzero(as_tuple=True)
    rows = targets[valid]
    cell = image_size / grid
    cx, cy = (rows[:, 1] + rows[:, 3]) / 2, (rows[:, 2] + rows[:, 4]) / 2
    j = (cx / cell).floor().clamp(0, grid - 1).long()
    i = (cy / cell).floor().clamp(0, grid - 1).long()
    flat = n_idx * grid * grid + i * grid + j
    area = (rows[:, 3] - rows[:, 1]) * (rows[:, 4] - rows[:, 2])
    size = targets.shape[0] * grid * grid
    largest = torch.full((size,), -1.0, device=rows.device).scatter_reduce(0, flat, area, "amax")
    order = torch.arange(len(rows), device=rows.device)
    candidate = torch.where(area == largest[flat], order, len(rows))
    first = torch.full((size,), len(rows), device=rows.device).scatter_reduce(0, flat, candidate, "amin")
    keep = first[flat] == order
    return flat[keep], rows[keep]


def yolo_loss(out: torch.Tensor, targets: torch.Tensor, image_size: int, boxes: int, num_classes: int,
              lambda_coord: float = 5.0, lambda_noobj: float = 0.5) -> tuple[torch.Tensor, dict]:
    """YOLO v1's loss (module docstring); returns (loss, its parts), both averaged over the images."""
    out = out.float()
    n, grid = out.shape[0], out.shape[1]
    cells = out.reshape(n * grid * grid, -1)
    pred = cells[:, : boxes * 5].reshape(-1, boxes, 5)
    flat, rows = assign_targets(targets.float(), grid, image_size)
    cell = image_size / grid
    # the targets in YOLO's parametrisation
    cx, cy = (rows[:, 1] + rows[:, 3]) / 2, (rows[:, 2] + rows[:, 4]) / 2
    tx, ty = cx / cell - (flat % grid), cy / cell - (flat // grid % grid)
    tw = ((rows[:, 3] - rows[:, 1]) / image_size).clamp(min=0).sqrt()
    th = ((rows[:, 4] - rows[:, 2]) / image_size).clamp(min=0).sqrt()
    # the responsible box of each object's cell: the highest IoU with the object
    p = pred[flat]  # (objects, B, 5)
    col, row = (flat % grid).float().view(-1, 1), (flat // grid % grid).float().view(-1, 1)
    pcx, pcy = (col + p[..., 0]) * cell, (row + p[..., 1]) * cell
    pw, ph = p[..., 2].square() * image_size, p[..., 3].square() * image_size
    pboxes = torch.stack([pcx - pw / 2, pcy - ph / 2, pcx + pw / 2, pcy + ph / 2], -1).detach()
    ious = paired_iou(pboxes, rows[:, None, 1:5])  # (objects, B)
    best = ious.argmax(1)
    resp = p[torch.arange(len(rows), device=out.device), best]  # (objects, 5)
    coord = ((resp[:, 0] - tx) ** 2 + (resp[:, 1] - ty) ** 2 + (resp[:, 2] - tw) ** 2 + (resp[:, 3] - th) ** 2).sum()
    obj = ((resp[:, 4] - ious.gather(1, best[:, None])[:, 0]) ** 2).sum()
    responsible = torch.zeros_like(pred[..., 4], dtype=torch.bool)
    responsible[flat, best] = True
    noobj = (pred[..., 4][~responsible] ** 2).sum()
    onehot = nn.functional.one_hot(rows[:, 0].long(), num_classes).float()
    cls = ((cells[flat, boxes * 5:] - onehot) ** 2).sum()
    parts = {"coord": lambda_coord * coord / n, "obj": obj / n, "noobj": lambda_noobj * noobj / n, "cls": cls / n}
    return sum(parts.values()), parts


def decode(out: torch.Tensor, image_size: int, boxes: int, score_threshold: float = 0.005, nms_iou: float = 0.5,
           max_detections: int = 100) -> list[torch.Tensor]:
    """Per image a (d, 6) tensor ``x0, y0, x1, y1, score, label`` of its detections, best first."""
    out = out.float()
    n, grid = out.shape[0], out.shape[1]
    pred = out[..., : boxes * 5].reshape(n, grid, grid, boxes, 5)
    xyxy = _cell_boxes(pred, grid, image_size).clamp(0, image_size).reshape(n, -1, 4)
    scores = (pred[..., 4:5] * out[..., None, boxes * 5:]).reshape(n, grid * grid * boxes, -1)
    result = []
    for k in range(n):
        box_idx, label = (scores[k] > score_threshold).nonzero(as_tuple=True)
        s, b = scores[k][box_idx, label], xyxy[k][box_idx]
        keep = batched_nms(b, s, label, nms_iou)[:max_detections]
        result.append(torch.cat([b[keep], s[keep, None], label[keep, None].float()], 1))
    return result


# --------------------------------------------------------------------------- evaluation
class VOCMeanAP(torchmetrics.Metric):
    """Detections and ground truth of every image evaluated (:func:`spatialprobe.tasks.voc_eval.evaluate`).

    Rows are kept flat with their image index and the update that added them, so that DDP's gather
    (which concatenates) keeps them apart and an image seen twice (a padded distributed sampler)
    counts once.
    """

    full_state_update = False

    def __init__(self, num_classes: int, class_names: list[str] | None = None):
        super().__init__()
        self.num_classes, self.class_names = num_classes, class_names
        self.add_state("dets", default=[], dist_reduce_fx="cat")    # image, update, x0, y0, x1, y1, score, label
        self.add_state("truth", default=[], dist_reduce_fx="cat")   # image, update, label, x0, y0, x1, y1, difficult
        self.add_state("seen", default=[], dist_reduce_fx="cat")    # image, update
        self.updates = 0

    def update(self, detections: list[torch.Tensor], targets: torch.Tensor, index: torch.Tensor) -> None:
        tag = float(self.updates + (1 << 20) * (torch.distributed.get_rank() if torch.distributed.is_initialized() else 0))
        self.updates += 1
        index = index.to(targets.device).float()
        for k, det in enumerate(detections):
            head = torch.tensor([index[k], tag], device=targets.device)
            self.dets.append(torch.cat([head.expand(len(det), 2), det.float()], 1))
            t = targets[k][targets[k, :, 0] >= 0].float()
            self.truth.append(torch.cat([head.expand(len(t), 2), t], 1))
            self.seen.append(head[None])

    def compute(self) -> dict:
        cat = lambda rows, width: (torch.cat(rows) if isinstance(rows, list) and rows else  # noqa: E731
                                   rows if torch.is_tensor(rows) else torch.zeros(0, width)).double().cpu().numpy()
        dets, truth, seen = cat(self.dets, 8), cat(self.truth, 8), cat(self.seen, 2)
        first: dict[int, float] = {}
        for image, tag in seen:
            first.setdefault(int(image), tag)
        images = sorted(first)
        det_rows, truth_rows = _by_image(dets, first, images), _by_image(truth, first, images)
        det_list = [voc_eval.Detections(d[:, 2:6], d[:, 6], d[:, 7].astype(int)) for d in det_rows]
        truth_list = [voc_eval.Truth(t[:, 3:7], t[:, 2].astype(int), t[:, 7] > 0) for t in truth_rows]
        result = voc_eval.evaluate(det_list, truth_list, self.num_classes, self.class_names)
        result["images"] = len(images)
        result["by_image"] = dict(zip(images, zip(det_list, truth_list, strict=True), strict=True))
        return result


def _by_image(rows, first: dict[int, float], images: list[int]) -> list:
    """The rows of every image in ``images`` (from the update that saw it first), in that order."""
    import numpy as np

    tags = np.array([first.get(int(i), -1.0) for i in rows[:, 0]])
    rows = rows[rows[:, 1] == tags] if len(rows) else rows
    rows = rows[np.argsort(rows[:, 0], kind="stable")]
    bounds = np.searchsorted(rows[:, 0], np.asarray(images, dtype=float), side="left").tolist() + [len(rows)]
    return [rows[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def examples(result: dict, show_threshold: float, count: int = EXAMPLES, max_boxes: int = 30) -> list[dict]:
    """Boxes of the first ``count`` images for S0 Fig. 8: detections scoring >= ``show_threshold`` and the truth."""
    out = []
    for image in sorted(result["by_image"])[:count]:
        det, truth = result["by_image"][image]
        keep = det.scores >= show_threshold
        dets = [[*map(lambda v: round(float(v), 2), b), round(float(s), 4), int(c)]
                for b, s, c in zip(det.boxes[keep], det.scores[keep], det.labels[keep], strict=True)][:max_boxes]
        gts = [[int(c), *map(lambda v: round(float(v), 2), b), int(d)]
               for b, c, d in zip(truth.boxes, truth.labels, truth.difficult, strict=True)]
        out.append({"index": int(image), "detections": dets, "truth": gts})
    return out


class DetectionModule(TaskModule):
    """Trains a :class:`Detector` with the YOLO loss; logs ``{stage}_loss`` and the loss parts, and for
    validation / test ``{stage}_map50`` (11-point), ``{stage}_map50_all_point`` and the error shares
    ``{stage}_err_<type>``. Every test run's full evaluation is kept in ``test_results``."""

    def __init__(self, model: Detector, num_classes: int, recipe: dict, config: dict | None = None,
                 steps_per_epoch=None, detect: dict | None = None, class_names: list[str] | None = None):
        super().__init__(model, recipe, config, steps_per_epoch)
        self.num_classes = num_classes
        self.detect = dict(detect or {})
        self.maps = nn.ModuleDict({s: VOCMeanAP(num_classes, class_names) for s in STAGES})
        self.test_results: list[dict] = []

    def step(self, batch, stage: str) -> torch.Tensor:
        x, targets, index = batch
        out = self(x)
        d = self.detect
        loss, parts = yolo_loss(out, targets, self.model.image_size, self.model.boxes, self.model.num_classes,
                                d.get("lambda_coord", 5.0), d.get("lambda_noobj", 0.5))
        n = len(x)
        self.log(f"{stage}_loss", loss, on_step=stage == "train", on_epoch=True, prog_bar=stage != "test",
                 batch_size=n, sync_dist=stage != "train")
        self.log_dict({f"{stage}_loss_{k}": v for k, v in parts.items()}, on_step=False, on_epoch=True, batch_size=n,
                      sync_dist=stage != "train")
        if stage in self.maps:
            dets = decode(out.detach(), self.model.image_size, self.model.boxes, d.get("score_threshold", 0.005),
                          d.get("nms_iou", 0.5), d.get("max_detections", 100))
            self.maps[stage].update(dets, targets, index)
        return loss

    def _evaluate(self, stage: str) -> dict:
        metric = self.maps[stage]
        result = metric.compute()
        metric.reset()
        metric.updates = 0
        self.log(f"{stage}_map50", result["map50"], prog_bar=True, sync_dist=True)
        self.log(f"{stage}_map50_all_point", result["map50_all_point"], sync_dist=True)
        for kind, share in result["errors"].items():
            self.log(f"{stage}_err_{kind}", share, sync_dist=True)
        return result

    def on_validation_epoch_end(self) -> None:
        self._evaluate("val")

    def on_test_epoch_end(self) -> None:
        result = self._evaluate("test")
        result["examples"] = examples(result, float(self.detect.get("show_threshold", 0.2)))
        del result["by_image"]
        self.test_results.append(result)


class Detect(Task):
    """S0's detector: the registry network (already modified) as backbone of :class:`Detector`."""

    name = "detect"

    def network(self, cfg: DictConfig, model: nn.Module) -> nn.Module:
        return Detector(model, int(cfg.dataset.num_classes), int(cfg.dataset.image_size), int(cfg.detect.boxes),
                        int(cfg.detect.head_stride))

    def module(self, cfg: DictConfig, network: nn.Module, config: dict, steps_per_epoch=None,
               datamodule=None) -> DetectionModule:
        return DetectionModule(network, int(cfg.dataset.num_classes), self.recipe(cfg), config=config,
                               steps_per_epoch=steps_per_epoch,
                               detect=OmegaConf.to_container(cfg.detect, resolve=True),
                               class_names=getattr(datamodule, "classes", None))

    def record_fields(self, cfg: DictConfig, module: DetectionModule) -> dict:
        """mAP and error shares of the final network (``map50`` ...) and of the best-validation checkpoint
        (``map50_best`` ...), AP per class, the boxes of the first test images (S0 Figs. 8, 9)."""
        final, best = module.test_results[0], module.test_results[-1]
        return {
            "map50": rounded(final["map50"]), "map50_all_point": rounded(final["map50_all_point"]),
            "map50_best": rounded(best["map50"]), "map50_all_point_best": rounded(best["map50_all_point"]),
            "ap50": {k: rounded(v) for k, v in final["ap50"].items()},
            "errors": {k: rounded(v) for k, v in final["errors"].items()},
            "errors_best": {k: rounded(v) for k, v in best["errors"].items()},
            "errors_analysed": int(final["errors_analysed"]),
            "test_images": int(final["images"]),
            "examples": final["examples"],
        }


TASK = Detect()
