"""S0's detection figures from the records of detection runs (``task=detect``), nothing re-trained.

    python -m spatialprobe.plot_detection runs/sweeps/detect_cpu [more run or sweep dirs] [-o DIR]

Every complete detection record under the given directories takes part, the baseline (K=0) first,
then by method and K. Written into DIR (default: ``figures/`` in the first directory), PNG and PDF:

* ``detection_errors``: S0 Fig. 9, one pie per run: the shares of its top detections that are
  correct, localization errors, wrong class and background (``errors`` in the record; see
  :mod:`spatialprobe.tasks.voc_eval` for the definitions);
* ``detection_examples``: S0 Fig. 8, the first 11 test images with each run's boxes side by side
  (the detections above ``detect.show_threshold`` kept in the record; thin white boxes: ground truth).
  The images are read again from the data set the record names (``--data-root`` if it moved);
  without them this figure is skipped with a note;
* ``detection_table.{csv,md}``: mAP@0.5 (VOC07 11-point and all-point) and the error shares per run.
"""

from __future__ import annotations

import logging
from pathlib import Path

from spatialprobe.errors import UserError
from spatialprobe.report import save_figure
from spatialprobe.run.records import RECORD_NAME, read_json

log = logging.getLogger("spatialprobe")
ERROR_LABELS = {"correct": "correct", "localization": "loc error", "wrong_class": "wrong class",
                "background": "background"}
ERROR_COLORS = {"correct": "#4c9a2a", "localization": "#e8a33d", "wrong_class": "#4a7fbf", "background": "#c44e52"}


def detection_records(dirs) -> list[tuple[Path, dict]]:
    """(run dir, record) of every complete detection run under ``dirs``, the baseline first."""
    found = []
    for d in map(Path, dirs):
        if not d.is_dir():
            raise UserError(f"{d}: no such directory (give run or sweep directories of task=detect runs)")
        for path in sorted(d.rglob(RECORD_NAME)):
            rec = read_json(path)
            if isinstance(rec, dict) and rec.get("status") == "complete" and rec.get("task") == "detect":
                found.append((path.parent, rec))
    if not found:
        raise UserError(f"no complete detection record (task=detect) under {', '.join(map(str, dirs))}")
    return sorted(found, key=lambda r: (int(r[1].get("k") or 0) > 0, str(r[1].get("method")), int(r[1].get("k") or 0),
                                        str(r[0])))


def title(rec: dict) -> str:
    if not rec.get("k"):
        return "baseline"
    return f"{rec['method']}, K={rec['k']}"


def table(records):
    import pandas as pd

    rows = []
    for run_dir, rec in records:
        rows.append({"model": rec.get("model"), "dataset": rec.get("dataset"), "method": rec.get("method"),
                     "k": rec.get("k"), "seed": rec.get("seed"), "epochs": rec.get("epochs"), "params": rec.get("params"),
                     "map50": rec.get("map50"), "map50_all_point": rec.get("map50_all_point"),
                     **{f"err_{k}": v for k, v in (rec.get("errors") or {}).items()}, "run_dir": str(run_dir)})
    return pd.DataFrame(rows)


def plot_errors(records, outdir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(records), figsize=(4.2 * len(records), 4.2), squeeze=False)
    for ax, (_, rec) in zip(axes[0], records, strict=True):
        errors = rec["errors"]
        keys = [k for k in ERROR_LABELS if errors.get(k)]
        if not keys:  # no detection at all
            ax.text(0.5, 0.5, "no detections", ha="center", va="center", transform=ax.transAxes)
            ax.axis("off")
        else:
            ax.pie([errors[k] for k in keys], labels=[f"{ERROR_LABELS[k]}\n{errors[k]:.1f}%" for k in keys],
                   colors=[ERROR_COLORS[k] for k in keys], startangle=90, counterclock=False,
                   wedgeprops={"linewidth": 1, "edgecolor": "white"})
        name = "the baseline" if title(rec) == "baseline" else f"the shuffled model ({title(rec)})"
        ax.set_title(f"Diagnosing {name}\nmAP@0.5 {rec['map50']:.1f}% ({rec['errors_analysed']} detections)",
                     fontsize=10)
    fig.tight_layout()
    return list(save_figure(fig, outdir / "detection_errors"))


def _test_images(rec: dict, data_root: str | None):
    """The test split of the run's data set, as (read function, indices), or None with a reason."""
    from omegaconf import OmegaConf

    from spatialprobe.data.detection import DetectionDataModule
    from spatialprobe.errors import DataError

    cfg = OmegaConf.create(rec["config"])
    if data_root:
        cfg.dataset.root = data_root
    try:
        dm = DetectionDataModule(cfg.dataset, 1, 0, cfg.paths.cache_dir)
    except DataError as err:
        return None, str(err)
    test = dm.sets["test"]
    return (test.read, test.indices), None


def plot_examples(records, outdir: Path, data_root: str | None = None) -> tuple[list[Path], str | None]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.patches import Rectangle

    source, problem = _test_images(records[0][1], data_root)
    if source is None:
        return [], problem
    read, indices = source
    classes = list(records[0][1]["ap50"])
    size = int(records[0][1]["config"]["dataset"]["image_size"])
    shown = [e["index"] for e in records[0][1]["examples"]]
    pairs_per_row = 4 if len(records) <= 2 else 2
    rows = -(-len(shown) // pairs_per_row)
    cols = pairs_per_row * len(records)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.2 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    colors = plt.get_cmap("tab20")
    for n, index in enumerate(shown):
        image = np.asarray(read(indices[index]))
        h, w = image.shape[:2]
        sx, sy = w / size, h / size  # boxes live in the resized image_size frame
        for r, (_, rec) in enumerate(records):
            ax = axes[n // pairs_per_row, (n % pairs_per_row) * len(records) + r]
            ax.imshow(image)
            example = next((e for e in rec["examples"] if e["index"] == index), {"detections": [], "truth": []})
            for _label, x0, y0, x1, y1, _difficult in example["truth"]:
                ax.add_patch(Rectangle((x0 * sx, y0 * sy), (x1 - x0) * sx, (y1 - y0) * sy, fill=False, ec="white",
                                       lw=0.6, ls="--"))
            for x0, y0, x1, y1, score, c in example["detections"]:
                color = colors(int(c) % 20)
                ax.add_patch(Rectangle((x0 * sx, y0 * sy), (x1 - x0) * sx, (y1 - y0) * sy, fill=False, ec=color, lw=1.4))
                ax.text(x0 * sx, y0 * sy, f"{classes[int(c)]} {score:.2f}", fontsize=5, color="black",
                        bbox={"facecolor": color, "alpha": 0.8, "pad": 0.5, "lw": 0}, va="bottom")
            if n < pairs_per_row:
                ax.set_title(title(rec), fontsize=8)
            ax.set_xlim(0, w)
            ax.set_ylim(h, 0)
    fig.tight_layout()
    return list(save_figure(fig, outdir / "detection_examples")), None


def make_all(dirs, outdir: str | Path | None = None, data_root: str | None = None) -> list[Path]:
    from spatialprobe.report.figures import write_table

    records = detection_records(dirs)
    outdir = Path(outdir) if outdir else Path(dirs[0]) / "figures"
    outdir.mkdir(parents=True, exist_ok=True)
    written = write_table(table(records), outdir / "detection_table")
    written += plot_errors(records, outdir)
    examples, problem = plot_examples(records, outdir, data_root)
    if problem:
        log.warning("spatialprobe: note: detection_examples skipped, the test images cannot be read: %s", problem)
    return written + examples
