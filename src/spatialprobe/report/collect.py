"""Gather the result records of sweeps into one table (CSV), one row per run.

    python -m spatialprobe.collect runs/sweeps/vgg16_cifar100_kcurve [more dirs...] [-o results.csv]
    python -m spatialprobe.collect --wandb ENTITY/PROJECT [--group SWEEP] -o results.csv

Every ``result.json`` under the given directories becomes a row (``record=train``): the record's
scalar fields (status, reason, model, dataset, method, k, seed, params, flops, receptive_field,
val/test accuracies, ...), the resolved config as dotted ``config.*`` columns, and ``run_dir``,
``sweep`` (the sweep directory's name). Every ``eval-*.json`` written by ``spatialprobe.evaluate``
becomes a row too (``record=eval``) with the config of the run it evaluated, ``train_method`` (what
the network was trained with), ``test_method`` (what was active at test time) and
``test_top1`` / ``test_top1_std`` (mean and std over the evaluation passes).

With ``--wandb`` the same columns are read from the runs of a W&B project (needs a network and
``wandb login``); records are the source of truth, W&B a convenience for runs kept only there.
The "figures" run of ``spatialprobe.report.figures --wandb`` becomes one ``record=figures`` row (its figure
and table names), which ``plot`` leaves aside.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from spatialprobe.config.schema import PARAMETER_FREE
from spatialprobe.errors import UserError
from spatialprobe.run.records import RECORD_NAME, read_json

# Leading columns, in this order; every other column follows alphabetically.
FIRST = ["record", "status", "reason", "sweep", "model", "arch", "dataset", "method", "k", "seed", "unit",
         "train_method", "test_method", "params", "flops", "units", "receptive_field", "test_top1", "test_top1_std",
         "test_top1_best", "val_top1", "val_top1_best", "test_top5_final", "epochs", "wall_time_s", "run_dir"]
# Record fields that are bulky or only useful inside one run; left out of the table.
SKIP = {"config", "feature_maps", "checkpoints", "top1", "loss", "modified_unit_names", "examples"}
STOCHASTIC_METHODS = set(PARAMETER_FREE)
EXAMPLE = "python -m spatialprobe.collect runs/sweeps/<experiment>"


def flatten(obj: dict, prefix: str = "") -> dict:
    """Nested dicts -> dotted keys; lists -> JSON strings (one cell each)."""
    out = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        elif isinstance(value, list | tuple):
            out[name] = json.dumps(value)
        else:
            out[name] = value
    return out


def _scalars(record: dict) -> dict:
    return {k: (json.dumps(v) if isinstance(v, list | dict) else v) for k, v in record.items() if k not in SKIP}


def train_row(record: dict, run_dir: Path, sweep: str) -> dict:
    row = {"record": "train", **_scalars(record), "run_dir": str(run_dir), "sweep": sweep}
    config = record.get("config") or {}
    row["unit"] = (config.get("method") or {}).get("unit")
    row.update(flatten(config, "config."))
    return row


def evaluated_run_dir(eval_path: Path) -> Path:
    """The run an ``eval-*.json`` belongs to: it sits beside the checkpoint, in <run>/checkpoints/."""
    return eval_path.parent.parent if eval_path.parent.name == "checkpoints" else eval_path.parent


def eval_row(ev: dict, path: Path, train: dict | None, sweep: str) -> dict:
    """One evaluation record, with the config of the run it evaluated (looked up by run directory)."""
    trained = ev.get("trained", {})
    applied = ev.get("test_time_method")
    trained_method = trained.get("method")
    if trained.get("k") == 0 and (train or {}).get("unit") is None:
        trained_method = "none"  # K=0 of a method's sweep is the baseline: nothing was modified in training
    if applied:
        test_method = applied["method"]
    elif not ev.get("keep_method", True) and trained_method in STOCHASTIC_METHODS:
        test_method = "none"
    else:
        test_method = trained_method
    run_dir = evaluated_run_dir(path)
    base = {k: v for k, v in (train or {}).items() if k.startswith("config.") or k in (
        "params", "flops", "units", "receptive_field", "arch", "config_hash")}
    return {
        **base, "record": "eval", "status": "complete", "reason": None, "sweep": sweep,
        "model": trained.get("model"), "dataset": trained.get("dataset"), "method": trained_method,
        "k": trained.get("k"), "seed": trained.get("seed"), "unit": (train or {}).get("unit"),
        "train_method": trained_method, "test_method": test_method,
        "test_k": applied["k"] if applied else trained.get("k"), "keep_method": ev.get("keep_method"),
        "passes": ev.get("passes"), "stochastic": ev.get("stochastic"), "images": ev.get("images"),
        "eval_seed": ev.get("eval_seed"), "test_top1": ev.get("top1_mean"), "test_top1_std": ev.get("top1_std"),
        "test_top5_final": ev.get("top5_mean"), "run_dir": str(run_dir), "eval_path": str(path),
    }


def epoch_metrics(run_dir: str | Path):
    """The per-epoch metrics a run logged (``logs/attempt-*/metrics.csv``): one row per epoch (0-based),
    a column per epoch-level metric (``train_top1``, ``val_top1``, losses, learning rate, ...). A resumed
    run's later attempts win where attempts overlap. None when the run logged no epoch yet.

    Read with the csv module, not pandas (a sweep's results site reads one file per run): per epoch, the last
    value logged for each metric (what ``groupby("epoch").last()`` gives); step-level rows without an epoch and
    the per-step loss are left out."""
    import csv

    import pandas as pd

    files = sorted(Path(run_dir).glob("logs/attempt-*/metrics.csv"),
                   key=lambda f: int(f.parent.name.split("-")[-1]) if f.parent.name.split("-")[-1].isdigit() else 0)
    epochs: dict[int, dict[str, float]] = {}
    columns: dict[str, None] = {}  # in the order of their first appearance
    for f in files:
        try:
            with open(f, newline="") as fh:
                rows = list(csv.reader(fh))
        except (OSError, UnicodeDecodeError, csv.Error):
            continue  # a file being written, or torn: its epochs are left out
        if not rows or "epoch" not in rows[0] or any(len(r) > len(rows[0]) for r in rows[1:]):
            continue
        header = rows[0]
        at = header.index("epoch")
        for name in header:
            if name not in ("epoch", "step", "train_loss_step"):
                columns.setdefault(name)
        for row in rows[1:]:
            try:
                epoch = int(float(row[at])) if at < len(row) and row[at] != "" else None
            except ValueError:
                epoch = None
            if epoch is None:
                continue
            for name, value in zip(header, row, strict=False):
                if value == "" or name in ("epoch", "step", "train_loss_step"):
                    continue
                try:
                    epochs.setdefault(epoch, {})[name] = float(value)
                except ValueError:
                    continue
    epochs = {e: values for e, values in epochs.items() if values}
    if not epochs:
        return None
    logged = [c for c in columns if any(c in values for values in epochs.values())]
    return pd.DataFrame([{"epoch": e, **{c: epochs[e].get(c, float("nan")) for c in logged}} for e in sorted(epochs)],
                        columns=["epoch", *logged])


def collect_dirs(dirs: Iterable[str | Path], records: dict | None = None):
    """DataFrame of every record under ``dirs`` (raises UserError when there is none). ``records``, when given,
    receives every training record whole (config and checkpoints included), by its row's ``run_dir``: for
    readers that need more than the table (the results site)."""
    import pandas as pd

    rows: list[dict] = []
    train_by_dir: dict[str, dict] = {}
    evals: list[tuple[Path, dict, str]] = []
    dirs = [Path(d) for d in dirs]
    for d in dirs:
        if not d.is_dir():
            raise UserError(f"{d}: no such directory (give the sweep directories, e.g. runs/sweeps/<experiment>)")
        for path in sorted(d.rglob(RECORD_NAME)):
            record = read_json(path)
            if not isinstance(record, dict) or "status" not in record:
                continue  # a torn or foreign file
            sweep = _sweep_name(d, path.parent)
            row = train_row(record, path.parent, sweep)
            rows.append(row)
            train_by_dir[str(path.parent.resolve())] = row
            if records is not None:
                records[row["run_dir"]] = record
        for path in sorted(d.rglob("eval-*.json")):
            ev = read_json(path)
            if isinstance(ev, dict) and "top1_mean" in ev:
                evals.append((path, ev, _sweep_name(d, evaluated_run_dir(path))))
    for path, ev, sweep in evals:
        rows.append(eval_row(ev, path, train_by_dir.get(str(evaluated_run_dir(path).resolve())), sweep))
    if not rows:
        raise UserError(f"no result records ({RECORD_NAME} or eval-*.json) under {', '.join(map(str, dirs))}; "
                        "give the directory of a sweep (runs/sweeps/<experiment>) or of a run")
    return _ordered(pd.DataFrame(rows))


def _sweep_name(root: Path, run_dir: Path) -> str:
    """The sweep a run belongs to: the first directory below ``root`` on its path (or root's name)."""
    rel = run_dir.resolve().relative_to(root.resolve())
    return root.resolve().name if len(rel.parts) <= 1 else rel.parts[0]


def _ordered(df):
    first = [c for c in FIRST if c in df.columns]
    return df[first + sorted(c for c in df.columns if c not in first)]


WANDB_STATES = {"finished": "complete", "running": "running", "crashed": "failed", "failed": "failed",
                "killed": "failed", "preempted": "running"}


def collect_wandb(path: str, group: str | None = None, api=None):
    """The same table from the runs of a W&B project ``ENTITY/PROJECT`` (summary = the record's results)."""
    import pandas as pd

    if api is None:
        try:
            import wandb

            api = wandb.Api(timeout=60)
        except Exception as err:  # no network, no login
            raise UserError(f"cannot reach W&B for {path} ({type(err).__name__}: {err}); "
                            "collect the run directories instead, or `wandb login` first") from None
    try:
        runs = list(api.runs(path, filters={"group": group} if group else None))
    except Exception as err:
        raise UserError(f"cannot read the runs of W&B project {path} ({type(err).__name__}: {err})") from None
    rows = []
    for run in runs:
        summary = {k: v for k, v in dict(run.summary).items() if not str(k).startswith("_")}
        config = {k: v for k, v in dict(run.config).items() if not str(k).startswith("_")}
        if getattr(run, "job_type", None) == "figures":  # spatialprobe.report.figures --wandb: figures, not a network
            rows.append({"record": "figures", "status": WANDB_STATES.get(run.state, run.state), "reason": None,
                         "sweep": run.group, "run_dir": run.url, "wandb_id": run.id,
                         **{k: json.dumps(config.get(k)) for k in ("figures", "tables", "sweeps")}})
            continue
        tags = dict(t.split(":", 1) for t in run.tags if ":" in t)
        row = {"record": "train", "status": WANDB_STATES.get(run.state, run.state), "reason": None,
               "sweep": run.group, "run_dir": run.url, "wandb_id": run.id,
               "model": tags.get("model"), "dataset": tags.get("dataset"), "method": tags.get("method"),
               "k": int(tags["k"]) if "k" in tags else None, "seed": config.get("seed"),
               "unit": (config.get("method") or {}).get("unit") if isinstance(config.get("method"), dict) else None}
        row.update({k: v for k, v in summary.items() if isinstance(v, int | float | str | bool) or v is None})
        row.update(flatten(config, "config."))
        rows.append(row)
    if not rows:
        raise UserError(f"no runs in W&B project {path}" + (f" with group {group}" if group else ""))
    return _ordered(pd.DataFrame(rows))
