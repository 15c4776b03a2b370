"""Build a (modified) network without data and report its size.

    python -m spatialprobe.inspect model=vgg16 dataset=cifar100 method=conv1x1 k=5

Prints a short table of the units, then, as the last line of stdout, one JSON object with
``params`` (exact), ``flops`` (one image, forward), ``modified_units``, ``feature_maps`` (input /
output size of every unit) and ``receptive_field`` (theoretical, of the last spatial layer).
"""

from __future__ import annotations

import json

import hydra
from omegaconf import DictConfig

from spatialprobe import CONF_DIR
from spatialprobe.config.cli import hydra_entry
from spatialprobe.config.schema import validate_inspect
from spatialprobe.errors import reported


def describe(cfg: DictConfig) -> dict:
    validate_inspect(cfg)  # before torch is imported: a bad K is answered at once
    import torch

    from spatialprobe import models, surgery
    from spatialprobe.run.measure import count_flops, count_params, feature_maps, receptive_field
    from spatialprobe.tasks import build_network

    torch.manual_seed(int(cfg.seed))
    size = int(cfg.dataset.image_size)
    model = models.build_model(cfg.model, int(cfg.dataset.num_classes), size)
    report = surgery.apply(model, cfg.method, int(cfg.k), size)
    model = build_network(cfg, model)  # task=detect: the detector on the modified network
    return {
        "model": cfg.model.name, "arch": cfg.model.arch, "dataset": cfg.dataset.name, "image_size": size,
        "num_classes": int(cfg.dataset.num_classes), "method": cfg.method.name, "k": int(cfg.k),
        "params": count_params(model), "params_m": round(count_params(model) / 1e6, 2),
        "flops": count_flops(model, size), "units": len(model.unit_names()),
        "modified_units": report.modified_units, "stripped_units": report.stripped_units,
        "feature_maps": feature_maps(model, size), "receptive_field": receptive_field(model, report.modified_units),
    }


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="inspect")
def _hydra_main(cfg: DictConfig) -> None:
    with reported():
        info = describe(cfg)
    modified = set(info["modified_units"])
    print(f"{info['arch']} on {info['dataset']} ({info['image_size']} px, {info['num_classes']} classes), "
          f"{info['method']} k={info['k']}: {info['params']:,} params ({info['params_m']}M), "
          f"{info['flops'] / 1e9:.3f} GFLOPs/image, receptive field "
          f"{'the whole image' if info['receptive_field'] is None else str(info['receptive_field']) + ' px'}")
    for fm in info["feature_maps"]:
        mark = "*" if fm["unit"] in modified else " "
        print(f"  {mark} unit {fm['unit']:>2} {fm['name']:<14} in {fm['input']} out {fm['output']}")
    print(json.dumps(info), flush=True)


def main() -> None:
    hydra_entry(_hydra_main, config_name="inspect", validate=validate_inspect)


if __name__ == "__main__":
    main()
