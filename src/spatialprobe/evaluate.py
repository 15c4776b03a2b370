"""Evaluate a trained checkpoint, optionally with a parameter-free method applied at test time.

    python -m spatialprobe.evaluate ckpt=runs/x/checkpoints/last.ckpt eval.passes=200
    python -m spatialprobe.evaluate ckpt=... method=spatial_shuffle k=4 eval.passes=200
    python -m spatialprobe.evaluate ckpt=... eval.keep_method=false      # trained with, tested without

The checkpoint's task module runs the test set (or ``eval.split=val``) through ``Trainer.test``, as at
the end of training, so every metric the task logs is measured (top-1, top-5 and loss for classifiers).
Stochastic evaluations run ``eval.passes`` times, each pass seeded from ``eval.seed`` (default: the
training seed + 1), and are reported per pass and as mean and std. The evaluation record is written
atomically beside the checkpoint as ``eval-<method>-k<K>-<hash>.json``; the last stdout line is
its JSON.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from spatialprobe import CONF_DIR
from spatialprobe.config.checks import require_given
from spatialprobe.config.cli import hydra_entry
from spatialprobe.config.schema import check_evaluate, check_test_time_method
from spatialprobe.errors import UserError, reported

CKPT_EXAMPLE = "runs/<run>/checkpoints/last.ckpt"


def check(cfg: DictConfig) -> Path:
    """Every check that needs no checkpoint contents (no torch): the checkpoint's path, and the options."""
    ckpt_path = Path(str(require_given(cfg, "ckpt", CKPT_EXAMPLE, "the checkpoint to evaluate")))
    check_evaluate(cfg)
    if not ckpt_path.is_file():
        raise UserError(f"ckpt={str(ckpt_path)!r}: no such checkpoint file")
    return ckpt_path


def stochastic_ops(model) -> list:
    from spatialprobe.methods.base import StochasticOp

    return [m for m in model.modules() if isinstance(m, StochasticOp)]


def _datamodule(cfg: DictConfig, tcfg: DictConfig):
    """The checkpoint's data (with ``data.*`` overrides), its test loader on ``eval.split``, batches of
    ``eval.batch_size``, in NCHW memory."""
    import pytorch_lightning as pl

    from spatialprobe.data import build_datamodule

    overrides = {k: v for k, v in cfg.data.items() if v is not None}
    dcfg = OmegaConf.merge(tcfg, {"dataset": overrides, "model": {"channels_last": False},
                                  "paths": {"cache_dir": cfg.paths.cache_dir}})
    dm = build_datamodule(dcfg)
    if hasattr(dm, "eval_batch_size"):
        dm.eval_batch_size = int(cfg.eval.batch_size)
    if cfg.eval.split == "test":
        return dm

    class ValAsTest(pl.LightningDataModule):  # Trainer.test on the validation split
        def setup(self, stage: str | None = None) -> None:
            dm.trainer = self.trainer
            dm.setup(stage)

        def test_dataloader(self):
            return dm.val_dataloader()

        def sizes(self) -> dict:
            return dm.sizes()

    return ValAsTest()


def _precision(tcfg: DictConfig, gpu: bool) -> str:
    """The training run's precision, except bf16 on a CPU without bf16 instructions (emulated, many times slower)."""
    from spatialprobe.config.resolvers import cpu_has_bf16

    precision = str(OmegaConf.select(tcfg, "trainer.precision", default="32-true"))
    return "32-true" if not gpu and precision.startswith("bf16") and not cpu_has_bf16() else precision


def evaluate(cfg: DictConfig) -> dict:
    ckpt_path = check(cfg)  # before torch is imported: a mistake is answered at once

    import pytorch_lightning as pl
    import torch

    from spatialprobe import surgery, tasks
    from spatialprobe.run.records import rounded, write_json_atomic
    from spatialprobe.run.streams import seed_global

    ckpt, tcfg = tasks.load_checkpoint(ckpt_path)
    check_test_time_method(cfg, tcfg)
    t0 = time.time()
    task = tasks.get(tcfg)
    network = tasks.restore(ckpt, tcfg)
    if not cfg.eval.keep_method:
        for op in stochastic_ops(network):
            op.active_test = False
    applied = None
    if cfg.get("method") is not None and cfg.method.name != "none":
        report = surgery.apply(network, OmegaConf.merge(cfg.method, {"train": False, "test": True}), int(cfg.k),
                               int(tcfg.dataset.image_size))
        applied = {"method": cfg.method.name, "k": int(cfg.k), "modified_units": report.modified_units,
                   **{k: v for k, v in OmegaConf.to_container(cfg.method).items() if k not in ("name", "train", "test")}}
    dm = _datamodule(cfg, tcfg)
    gpu = cfg.eval.device == "cuda" or (cfg.eval.device == "auto" and torch.cuda.is_available())
    precision = _precision(tcfg, gpu)
    module = task.module(tcfg, network, OmegaConf.to_container(tcfg, resolve=True), datamodule=dm)
    trainer = pl.Trainer(accelerator="gpu" if gpu else "cpu", devices=1, precision=precision, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    active = [op for op in stochastic_ops(network) if op.active_test]
    passes = int(cfg.eval.passes) if active else 1  # a deterministic network gives the same answer every pass
    seed = int(cfg.eval.seed) if cfg.eval.seed is not None else int(tcfg.seed) + 1
    results = []
    for p in range(passes):
        seed_global(seed, "eval_pass", p)
        results.append({k: float(v) for k, v in trainer.test(module, datamodule=dm, verbose=False)[0].items()})
    record = {
        "ckpt": str(ckpt_path.resolve()), "trained": {"model": tcfg.model.name, "dataset": tcfg.dataset.name,
                                                       "method": tcfg.method.name, "k": int(tcfg.k),
                                                       "seed": int(tcfg.seed), "task": task.name},
        "keep_method": bool(cfg.eval.keep_method), "test_time_method": applied, "split": cfg.eval.split,
        "images": int(dm.sizes()["val" if cfg.eval.split == "val" else "test"]), "eval_seed": seed,
        "passes": passes, "stochastic": bool(active), "precision": precision,
    }
    for key in results[0]:  # every metric of the task's test epoch: per pass, mean and std over the passes
        name, values = key.removeprefix("test_"), [r[key] for r in results]
        record[name] = [round(v, 6 if name.startswith("loss") else 4) for v in values]
        record[f"{name}_mean"] = rounded(statistics.fmean(values), 6 if name.startswith("loss") else 4)
        record[f"{name}_std"] = rounded(statistics.stdev(values) if len(values) > 1 else 0.0)
    record["headline"] = str(OmegaConf.select(tcfg, "task.monitor", default="val_top1")).removeprefix("val_")
    record["time_s"] = round(time.time() - t0, 2)
    ident = json.dumps({k: record[k] for k in ("keep_method", "test_time_method", "split", "images", "eval_seed")},
                       sort_keys=True) + str(cfg.eval.passes)
    name = applied["method"] if applied else ("trained" if cfg.eval.keep_method else "trained-off")
    out = ckpt_path.parent / f"eval-{name}-k{applied['k'] if applied else 0}-{hashlib.sha1(ident.encode()).hexdigest()[:8]}.json"
    record["path"] = str(out)
    write_json_atomic(out, record)
    return record


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="evaluate")
def _hydra_main(cfg: DictConfig) -> None:
    with reported():
        rec = evaluate(cfg)
    what = (rec["test_time_method"]["method"] if rec["test_time_method"] else
            "as trained" if rec["keep_method"] or rec["trained"]["method"] == "none" else "without its method")
    key = rec["headline"]
    print(f"{rec['trained']['model']} ({rec['trained']['method']} k={rec['trained']['k']}) evaluated {what}: "
          f"{key} {rec[key + '_mean']:.2f} +- {rec[key + '_std']:.2f} over {rec['passes']} pass(es) "
          f"on {rec['images']} images -> {rec['path']}")
    print(json.dumps(rec), flush=True)


def main() -> None:
    hydra_entry(_hydra_main, config_name="evaluate", validate=check)


if __name__ == "__main__":
    main()
