"""Adaptive K search: the largest K whose accuracy is within a tolerance of the baseline, by bisection.

    python -m spatialprobe.search_k experiment=vgg16_cifar100_kcurve method=conv1x1 search.tolerance=1.0

Instead of training every K of 0..K_max (K_max + 1 models), it trains the baseline (K=0) and then
bisects: at most ceil(log2(K_max + 1)) + 1 models. It assumes that accuracy does not increase with
K (true of the papers' curves up to noise); with a noisy curve it returns a K at which the
accuracy is within the tolerance, not necessarily the largest such K.

Every model it trains is an ordinary run with an ordinary record, in the run directory the
experiment's multirun would use for that K (``<sweep dir>/k=K,method=...``): a later multirun of
the experiment skips them, and a repeated search re-trains nothing. The search itself is written
to ``<sweep dir>/search_k-<method>-tol<tolerance>.json``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import hydra
from omegaconf import DictConfig, OmegaConf

from spatialprobe import CONF_DIR
from spatialprobe.config.cli import hydra_entry
from spatialprobe.config.schema import check_search
from spatialprobe.errors import UserError, reported


def bisect_k(accuracy: Callable[[int], float], k_max: int, tolerance: float) -> tuple[int, dict[int, float]]:
    """Largest K in 0..k_max with accuracy(K) >= accuracy(0) - tolerance, for non-increasing accuracy.

    Calls ``accuracy`` at most ceil(log2(k_max + 1)) + 1 times; returns (K, {K: accuracy} of the calls).
    """
    acc = {0: float(accuracy(0))}
    threshold = acc[0] - tolerance
    good, bad = 0, k_max + 1  # accuracy(good) is within the tolerance; bad is the smallest K known not to be
    while bad - good > 1:
        mid = (good + bad) // 2
        acc[mid] = float(accuracy(mid))
        if acc[mid] >= threshold:
            good = mid
        else:
            bad = mid
    return good, acc


def max_trainings(k_max: int) -> int:
    return math.ceil(math.log2(k_max + 1)) + 1


def _single_job(master: DictConfig) -> list[str]:
    """The experiment's job overrides with K left free: exactly one configuration, or a clear error."""
    from spatialprobe.launch.sweep import sweep_overrides

    jobs = sweep_overrides(master, extra=["k=0"])
    if len(jobs) > 1:
        values: dict[str, set[str]] = {}
        for job in jobs:
            for o in job:
                key, value = o.split("=", 1)
                values.setdefault(key, set()).add(value)
        varying = sorted(k for k, v in values.items() if len(v) > 1)
        raise UserError(f"search_k searches K for one configuration, but the experiment also sweeps "
                        f"{', '.join(varying)} ({len(jobs)} combinations); fix them on the command line, e.g. "
                        f"{varying[0]}={sorted(values[varying[0]])[0]}")
    return jobs[0]


def search(cfg: DictConfig, run_fn: Callable | None = None) -> dict:
    """Bisect K for the configuration ``cfg`` (a composed search_k config) and return the summary."""
    from hydra.core.hydra_config import HydraConfig

    from spatialprobe.launch.sweep import compose_jobs, validate_jobs
    from spatialprobe.run.records import write_json_atomic

    if run_fn is None:
        from spatialprobe.launch.runner import run as run_fn
    units, k_max = check_search(cfg)
    metric = str(cfg.search.metric)

    master = cfg_with_hydra(cfg, HydraConfig.get())
    job = _single_job(master)

    def overrides_for(k: int) -> list[str]:
        return [o for o in job if o.split("=", 1)[0] != "k"] + [f"k={k}"]

    # every K the search may train is validated before the first one trains
    ends = compose_jobs(master, [overrides_for(0), overrides_for(k_max)])
    validate_jobs(ends)
    sweep_dir = ends[0].run_dir.parent
    runs: list[dict] = []

    def accuracy(k: int) -> float:
        (j,) = compose_jobs(master, [overrides_for(k)])
        job_cfg = OmegaConf.masked_copy(j.config, [key for key in j.config if key not in ("hydra", "search")])
        if "group" in job_cfg.logger and job_cfg.logger.group is None:
            job_cfg.logger.group = sweep_dir.name
        print(f"search_k: K={k} -> {j.run_dir}", flush=True)
        record = run_fn(job_cfg, j.run_dir)
        value = record.get(metric)
        if value is None:
            raise UserError(f"{j.run_dir}: the record has no {metric}; choose search.metric among the record's "
                            "accuracies (test_top1, test_top1_best, val_top1)")
        runs.append({"k": k, metric: value, "run_dir": str(j.run_dir), "status": record.get("status")})
        return float(value)

    best, acc = bisect_k(accuracy, int(k_max), float(cfg.search.tolerance))
    result = {
        "model": cfg.model.name, "dataset": cfg.dataset.name, "method": cfg.method.name, "metric": metric,
        "tolerance": float(cfg.search.tolerance), "k_max": int(k_max), "units": units, "k": best,
        "accuracy": acc[best], "baseline": acc[0], "trained": len(runs), "max_trainings": max_trainings(int(k_max)),
        "runs": runs,
    }
    out = sweep_dir / f"search_k-{cfg.method.name}-tol{cfg.search.tolerance:g}.json"
    write_json_atomic(out, result)
    result["path"] = str(out)
    return result


def cfg_with_hydra(cfg: DictConfig, hc) -> DictConfig:
    """The master config as Hydra's loader expects it (app keys + the hydra node)."""
    full = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    full.hydra = OmegaConf.create(OmegaConf.to_container(hc, resolve=False))
    task = [o for o in full.hydra.overrides.task if not o.split("=", 1)[0].lstrip("+~").startswith("search.")]
    full.hydra.overrides.task = task
    return full


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="search_k")
def _hydra_main(cfg: DictConfig) -> None:
    with reported():
        res = search(cfg)
    for r in res["runs"]:
        print(f"  K={r['k']:>3}: {res['metric']} {r[res['metric']]:.2f}  {r['run_dir']}")
    print(f"search_k: largest K within {res['tolerance']:g} points of the baseline ({res['baseline']:.2f}): "
          f"K={res['k']} of {res['k_max']} ({res['metric']} {res['accuracy']:.2f}); {res['trained']} runs "
          f"(at most {res['max_trainings']}, instead of {res['k_max'] + 1}) -> {res['path']}", flush=True)


def main() -> None:
    hydra_entry(_hydra_main, config_name="search_k", validate=check_search)


if __name__ == "__main__":
    main()
