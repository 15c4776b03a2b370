"""P's figures of the position-channel attack, from a record of :mod:`spatialprobe.rank` (PNG, PDF, markdown).

    python -m spatialprobe.position_figures runs/<run>/checkpoints/position-overall+left+right-image_flip.json

* Fig. 4 top (``fig4_top``): the metric per region (overall, left, centre, right) against N, the top-N
  channels of every ranking switched off, next to N random channels (mean +- std over the draws).
* Fig. 4 bottom (``fig4_bottom``): the metric per region with the channels of each rank range off.
* Fig. 6 (``fig6``): the left-half metric against N for the Left, Right and Overall rankings (and random);
  ``fig6_right`` is the mirrored attack on the right half (P's supplementary).
* Fig. 5 (:func:`masks_figure`, needs the network and data, so :mod:`spatialprobe.rank` draws it):
  image, ground truth, prediction, prediction with the top-N position channels off, with N random off.
"""

from __future__ import annotations

from pathlib import Path

from spatialprobe.report import pyplot, save_figure

REGIONS = ("overall", "left", "centre", "right")


def _save(fig, folder: Path, name: str, table: list[str]) -> list[Path]:
    """The figure as PNG and PDF and its numbers as a markdown table, ``folder/name.{png,pdf,md}``."""
    fig.tight_layout()
    paths = list(save_figure(fig, folder / name, tight=True))
    (folder / f"{name}.md").write_text("\n".join(table) + "\n")
    return [*paths, folder / f"{name}.md"]


def _regions(record: dict) -> list[str]:
    return [r for r in REGIONS if record["baseline"].get(r) is not None]


def versus_n(record: dict, folder: Path, name: str, rankings: dict[str, str], regions: list[str],
             title: str) -> list[Path]:
    """The metric against N on each region: one line per ranking (label -> record key), random, the baseline."""
    plt = pyplot()
    sizes = [int(n) for n in record["top_n"]]
    metric = record["metric"]
    fig, axes = plt.subplots(1, len(regions), figsize=(4 * len(regions), 3.4), squeeze=False)
    table = ["| region | N | " + " | ".join(rankings) + " | random (mean +- std) | none |",
             "|---|---|" + "---|" * (len(rankings) + 2)]
    for ax, region in zip(axes[0], regions, strict=True):
        for label, key in rankings.items():
            ax.plot(sizes, [record["rankings"][key]["top"][str(n)][region] for n in sizes], marker="o", label=label)
        mean = [record["switch_off"][str(n)]["random"][region]["mean"] for n in sizes]
        std = [record["switch_off"][str(n)]["random"][region]["std"] for n in sizes]
        ax.errorbar(sizes, mean, yerr=std, marker="s", color="gray", label="Random", capsize=3)
        ax.axhline(record["baseline"][region], color="black", linestyle="--", linewidth=1, label="none off")
        ax.set(title=f"{region}", xlabel="N channels switched off", ylabel=metric)
        for n, m, s in zip(sizes, mean, std, strict=True):
            cells = [f"{record['rankings'][key]['top'][str(n)][region]:.2f}" for key in rankings.values()]
            table.append(f"| {region} | {n} | " + " | ".join(cells) + f" | {m:.2f} +- {s:.2f} | "
                         f"{record['baseline'][region]:.2f} |")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title)
    return _save(fig, folder, name, table)


def by_range(record: dict, folder: Path, rankings: dict[str, str]) -> list[Path]:
    """P Fig. 4 bottom: the metric per region with only the channels of each rank range off."""
    plt = pyplot()
    regions = _regions(record)
    spans = [f"{a}-{b}" for a, b in record["rank_ranges"]]
    fig, axes = plt.subplots(1, len(regions), figsize=(4 * len(regions), 3.4), squeeze=False)
    table = ["| region | ranks | " + " | ".join(rankings) + " | none |", "|---|---|" + "---|" * (len(rankings) + 1)]
    for ax, region in zip(axes[0], regions, strict=True):
        for label, key in rankings.items():
            ax.plot(range(len(spans)), [record["rankings"][key]["ranges"][s][region] for s in spans], marker="o",
                    label=label)
        ax.axhline(record["baseline"][region], color="black", linestyle="--", linewidth=1, label="none off")
        ax.set_xticks(range(len(spans)), spans, rotation=30)
        ax.set(title=region, xlabel="ranks switched off", ylabel=record["metric"])
        for s in spans:
            cells = [f"{record['rankings'][key]['ranges'][s][region]:.2f}" for key in rankings.values()]
            table.append(f"| {region} | {s} | " + " | ".join(cells) + f" | {record['baseline'][region]:.2f} |")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("channels switched off by rank range (P Fig. 4 bottom)")
    return _save(fig, folder, "fig4_bottom", table)


VARIANT_LABELS = {"image_flip": "Normal", "kernel_flip_image": "Kernel-Flip*", "kernel_flip": "Kernel-Flip**"}


def draw_all(record: dict, folder: Path) -> list[Path]:
    """Every figure the record has the data for (see module docstring)."""
    keys = list(record.get("rankings", {}))
    overall = {VARIANT_LABELS.get(k.split("/")[1], k): k for k in keys if k.startswith("overall/")}
    paths: list[Path] = []
    if overall:
        paths += versus_n(record, folder, "fig4_top", overall, _regions(record),
                          "top-N overall position channels vs N random channels off (P Fig. 4 top)")
        if record.get("rank_ranges"):
            paths += by_range(record, folder, overall)
    variant = keys[0].split("/")[1] if keys else None
    sided = {label: f"{ranking}/{variant}" for label, ranking in (("Left", "left"), ("Right", "right"),
                                                                   ("Overall", "overall"))
             if f"{ranking}/{variant}" in keys}
    if {"Left", "Right"} <= set(sided):
        for region, name in (("left", "fig6"), ("right", "fig6_right")):
            if record["baseline"].get(region) is not None:
                paths += versus_n(record, folder, name, sided, [region],
                                  f"{region} half, top-N region channels off (P Fig. 6{'' if region == 'left' else ', mirrored'})")
    return paths


def masks_figure(probe, batches, ranking: list[int], n: int, count: int, folder: Path, seed: int = 0) -> list[Path]:
    """P Fig. 5: one PNG per image (image, ground truth, prediction, top-N off, N random off)."""
    import numpy as np
    import torch

    from spatialprobe.data.cityscapes import IMAGENET_MEAN, IMAGENET_STD, colorize

    plt = pyplot()
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(int(seed))
    top = torch.tensor(ranking[:n], dtype=torch.long)
    paths, done = [], 0
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    for x, y, _ in batches:
        with torch.no_grad():
            feats = probe.features(x)
            preds = {"prediction": probe.head(feats, None).argmax(1),
                     f"top {n} position channels off": probe.head(feats, top).argmax(1),
                     f"{n} random channels off": probe.head(feats, torch.randperm(len(ranking), generator=g)[:n]).argmax(1)}
        for i in range(len(x)):
            if done >= count:
                return paths
            image = (x[i].cpu() * std + mean).clamp(0, 1).permute(1, 2, 0).numpy()
            panels = {"image": image, "ground truth": colorize(y[i])} | {k: colorize(v[i]) for k, v in preds.items()}
            fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 2.0))
            for ax, (title, img) in zip(axes, panels.items(), strict=True):
                ax.imshow(np.asarray(img))
                ax.set_title(title, fontsize=8)
                ax.axis("off")
            path = folder / f"fig5_{done:02d}.png"
            fig.savefig(path, dpi=150, bbox_inches="tight")
            plt.close(fig)
            paths.append(path)
            done += 1
    return paths
