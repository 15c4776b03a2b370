"""Pins what spatialprobe relies on from Hydra's private API (spatialprobe.launch.hydra_private) and the basic
sweeper's expansion that spatialprobe.launch.sweep re-creates from public Override methods."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from spatialprobe import CONF_DIR
from spatialprobe.launch.hydra_private import apply_overrides, override_dirname
from spatialprobe.launch.sweep import expand

parse = OverridesParser.create().parse_overrides
GROUPS = ["model=resnet18", "method=conv1x1"]
VALUES = ["k=3", "seed=7", "recipe.lr=0.5", "+extra.note=hi", "++trainer.max_epochs=4", "~eval.consistency_passes",
          "method.unit=[1,2]", "dataset.mean=[0.1,0.2,0.3]", "dataset.root=/elsewhere", "dry_run=true"]


def test_value_overrides_on_a_composed_config_equal_hydras_composition():
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        base = compose("train", overrides=GROUPS)
        ref = compose("train", overrides=GROUPS + VALUES)
    cfg = OmegaConf.create(OmegaConf.to_container(base))
    OmegaConf.set_struct(cfg, True)
    apply_overrides(cfg, parse(VALUES))
    assert OmegaConf.to_container(cfg) == OmegaConf.to_container(ref)
    assert cfg.extra.note == "hi" and "consistency_passes" not in cfg.eval and list(cfg.method.unit) == [1, 2]
    for bad in ("no_such_key=1", "+seed=1", "~no_such_key"):  # Hydra's own errors, unchanged
        with pytest.raises(ConfigCompositionException):
            apply_overrides(cfg, parse([bad]))


def test_override_dirname_equals_hydras():
    task = ["seed=1", "method=conv1x1", "k=3", "dataset.verify=false", "logger=csv", "model.width=0.5"]
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        ref = compose("train", overrides=task, return_hydra_config=True)
    got = override_dirname(parse(task), ref.hydra.job.config.override_dirname)
    assert got == ref.hydra.job.override_dirname == "k=3,method=conv1x1,model.width=0.5,seed=1"


def test_sweep_expansion_is_the_basic_sweepers():
    lines = ["k=0,1,2", "method=conv1x1,gap_fc", "seed=range(0,2)", "model.width=choice(0.25,0.5)", "recipe.lr=0.1",
             "k=4,5", "+extra=1"]
    jobs = expand(parse(lines))
    assert len(jobs) == 2 * 2 * 2 * 2 and jobs[0] == ["k=4", "method=conv1x1", "seed=0", "model.width=0.25",
                                                         "recipe.lr=0.1", "+extra=1"]
    assert jobs[-1][:4] == ["k=5", "method=gap_fc", "seed=1", "model.width=0.5"]
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper  # the sweeper a multirun uses

    assert jobs == BasicSweeper.split_arguments(parse(lines), None)[0]
