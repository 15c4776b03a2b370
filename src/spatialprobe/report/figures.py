"""The papers' figures and tables from a collected table (``spatialprobe.report.collect``).

    python -m spatialprobe.plot runs/sweeps/vgg16_cifar100_kcurve/results.csv [-o DIR] [--tolerance 1.0] [--curves]

Writes into DIR (default: figures/ beside the table), PNG and PDF for every figure:

* ``kcurve_<model>_<dataset>``: accuracy vs K (bottom axis; top axis: K as % of the units), one
  line per method (and per variant: downsample, patch size, augmentation, image size ... whatever
  varies in the sweep; a line without a K=0 run of its own starts from the baseline), the baseline
  (K=0) as a horizontal line; with several seeds the mean and a +-1 std band;
* ``unit_<model>_<dataset>``: the same against the index of the single modified unit
  (``method.unit`` sweeps);
* ``compressed.{csv,md}``: per model, dataset and method the most compressed network (fewest
  parameters, then largest K) whose accuracy is within ``--tolerance`` points of the baseline;
* ``best.{csv,md}``: per model, dataset and method the most accurate network, with its size;
* ``kcurve_table.{csv,md}``: every point of the curves: mean, std, seeds, difference to the
  baseline, params, FLOPs, receptive field;
* ``train_test_matrix.{csv,md}``: with evaluation rows (``spatialprobe.evaluate``), accuracy by K and
  training scheme x test scheme;
* ``mismatch_<model>_<dataset>``: with evaluation rows at two K or more, accuracy vs K per training ->
  test scheme (S1 Fig. 7);
* ``rf_<model>_<dataset>``: with conv1x1 K-sweeps, the accuracy difference to the baseline against the
  receptive field, one line per input size (S1 Fig. 3 right);
* ``depth_<model>_<dataset>``: with a depth ablation (``method.strip`` swept), accuracy vs the modified
  units kept (S1 Fig. 3 left);
* ``curves_<model>_<dataset>``: train and validation top-1 per epoch of every run, read from the runs'
  logged ``metrics.csv`` (S0 Fig. 1); for at most 8 runs per model and data set unless ``--curves``;
* ``cost_<model>_<dataset>``: accuracy against parameters and against FLOPs, every method, variant
  and K a point, the Pareto front (the most accurate network for its cost) drawn and ringed;
  ``pareto.{csv,md}``: the points of every front.

With ``--wandb`` everything written also goes into one W&B run (job_type ``figures``) in the
group of the table's runs: every figure as an image, the lines it draws as a native chart, every
table as a wandb.Table (see ``loggers.log_figures``). A plot function returns what it wrote as
:class:`Outputs` (paths, and the :class:`Chart` data of its figures, via :func:`save_figure` and
:func:`write_table`); ``make_all`` adds them up, and W&B logs whatever is there.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from spatialprobe.config.schema import is_result_neutral
from spatialprobe.errors import UserError
from spatialprobe.report import Chart, Outputs, pyplot, save_figure

REQUIRED = ["model", "dataset", "method", "k", "status", "params"]
# config columns that never define a curve of their own: the axes and what is averaged over (K, the
# single unit, the method, the seeds), eval.test_best (test_top1 is the final model's either way), and
# every key that does not change a run's result (spatialprobe.config.schema.RESULT_NEUTRAL_KEYS)
AXES = {"config.k", "config.seed", "config.method.name", "config.method.unit", "config.eval.seed",
        "config.eval.test_best"}


def _not_a_variant(column: str) -> bool:
    return column in AXES or (column.startswith("config.") and is_result_neutral(column[len("config."):]))


def load_table(path: str | Path, metric: str = "test_top1"):
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such table (make one with python -m spatialprobe.collect SWEEP_DIR)")
    try:
        df = pd.read_csv(path)
    except Exception as err:
        raise UserError(f"{path}: not a readable CSV table ({type(err).__name__}: {err})") from None
    missing = [c for c in [*REQUIRED, metric] if c not in df.columns]
    if missing:
        raise UserError(f"{path}: table lacks the required column(s) {', '.join(missing)} "
                        f"(a table written by python -m spatialprobe.collect has them)")
    return df


def _is_null(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def train_points(df, metric: str = "test_top1"):
    """Complete training runs with a value of ``metric``; adds ``unit`` (single unit or NaN), ``line``, ``group``."""
    if "record" in df.columns:
        df = df[df["record"].fillna("train") == "train"]
    df = df[(df["status"] == "complete") & df[metric].notna()].copy()
    if "unit" not in df.columns:
        df["unit"] = df["config.method.unit"] if "config.method.unit" in df.columns else float("nan")
    df["k"] = df["k"].astype(int)
    variants = [c for c in df.columns if c.startswith("config.") and not _not_a_variant(c)
                and df.groupby(["model", "dataset"])[c].transform(lambda s: s.astype(str).nunique()).max() > 1]
    method_variants = [c for c in variants if c.startswith("config.method.")]
    setting_variants = [c for c in variants if c not in method_variants]

    def label(row, cols):
        return ", ".join(f"{c.split('.')[-1]}={row[c]}" for c in cols if not _is_null(row[c]))

    rows = [r for _, r in df.iterrows()]
    df["setting"] = [label(r, setting_variants) for r in rows]
    df["line"] = [" ".join(x for x in (r["method"], label(r, method_variants), label(r, setting_variants)) if x)
                  for r in rows]
    return df


def aggregate(points, metric: str = "test_top1"):
    """Mean, std and number of seeds per (model, dataset, setting, line, k, unit)."""

    keys = ["model", "dataset", "setting", "line", "method", "k", "unit"]
    extra = {c: "first" for c in ("params", "flops", "units", "receptive_field") if c in points.columns}
    # the spread over the test passes of each run (a shuffle active at test time), averaged over its seeds
    passes = {"pass_std": (f"{metric}_std", "mean")} if f"{metric}_std" in points.columns else {}
    if "test_passes" in points.columns:
        passes["passes"] = ("test_passes", "max")
    g = points.assign(unit=points["unit"].fillna(-1)).groupby(keys, dropna=False)  # NaN keys would be dropped
    agg = g.agg(acc=(metric, "mean"), acc_std=(metric, "std"), seeds=(metric, "size"), **passes, **{
        k: (k, v) for k, v in extra.items()}).reset_index()
    agg["unit"] = agg["unit"].where(agg["unit"] >= 0)
    agg["acc_std"] = agg["acc_std"].fillna(0.0)
    agg["pass_std"] = agg["pass_std"].fillna(0.0) if "pass_std" in agg.columns else 0.0
    agg["passes"] = agg["passes"].fillna(1).astype(int) if "passes" in agg.columns else 1
    # the baseline: every complete K=0 run (any method modifies nothing at K=0), per setting
    base = (points[(points["k"] == 0) & points["unit"].isna()]
            .groupby(["model", "dataset", "setting"])[metric].agg(baseline="mean", baseline_std="std").reset_index())
    agg = agg.merge(base, on=["model", "dataset", "setting"], how="left")
    agg["delta"] = agg["acc"] - agg["baseline"]
    if "units" in agg.columns:
        agg["k_percent"] = (100.0 * agg["k"] / agg["units"]).round(1)
    return agg


def _labelled(ax, xlabel: str, ylabel: str, title: str, legend: dict | None = None) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(**{"fontsize": 8, "loc": "best", **(legend or {})})
    ax.figure.tight_layout()


def _finished(ax, stem: Path, xlabel: str, ylabel: str, title: str, drawn: list) -> Outputs:
    """Label the axes, save the figure as ``stem`` (PNG, PDF) with its lines as a chart of the same name."""
    _labelled(ax, xlabel, ylabel, title)
    return save_figure(ax.figure, stem, {stem.name: _chart(f"{ylabel}: {title}", xlabel, drawn)})


def _chart(title: str, xname: str, drawn: list) -> Chart:
    import pandas as pd

    return Chart(title, xname, pd.DataFrame(drawn, columns=["series", "x", "y"]))


def plot_curves(agg, outdir: Path, metric: str = "test_top1") -> Outputs:
    import pandas as pd
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    written = Outputs()
    for (model, dataset), grp in agg.groupby(["model", "dataset"], sort=True):
        for kind, rows, xcol, xlabel in (
            ("kcurve", grp[grp["unit"].isna()], "k", "K (last K units modified)"),
            ("unit", grp[grp["unit"].notna()], "unit", "index of the single modified unit"),
        ):
            curves = rows
            if curves.empty or (kind == "kcurve" and curves["k"].max() == 0):
                continue
            fig, ax = plt.subplots(figsize=(6.4, 4.4))
            colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
            drawn = []  # the chart's points: (series, x, y)
            for i, (line, pts) in enumerate(curves.groupby("line", sort=True)):
                pts = pts.sort_values(xcol)
                if kind == "kcurve" and pts["k"].max() == 0:
                    continue  # a baseline-only line (method=none): drawn as the baseline below
                c = colors[i % len(colors)]
                xs, ys = list(pts[xcol]), list(pts["acc"])
                base = pts["baseline"].dropna()
                if kind == "kcurve" and xs[0] > 0 and len(base):  # every K-curve starts at K=0, the baseline
                    xs, ys = [0, *xs], [float(base.iloc[0]), *ys]
                ax.plot(xs, ys, marker="o", ms=4, color=c, label=line)
                drawn += list(zip([line] * len(xs), xs, ys, strict=True))
                if (pts["seeds"] > 1).any():
                    ax.fill_between(pts[xcol], pts["acc"] - pts["acc_std"], pts["acc"] + pts["acc_std"], color=c,
                                    alpha=0.2, lw=0)
                if (pts["pass_std"] > 0).any():  # +-1 std over the test passes of a shuffled network
                    ax.errorbar(pts[xcol], pts["acc"], yerr=pts["pass_std"], fmt="none", ecolor=c, elinewidth=1,
                                capsize=3)
            bases = grp.dropna(subset=["baseline"]).drop_duplicates("setting")
            for j, (_, b) in enumerate(bases.iterrows()):
                lab = "baseline" + (f" ({b['setting']})" if b["setting"] else "")
                ax.axhline(b["baseline"], color="black", ls=("--", ":", "-.")[j % 3], lw=1.2, label=lab)
                lo = 0 if kind == "kcurve" else curves[xcol].min()
                drawn += [(lab, x, b["baseline"]) for x in (lo, curves[xcol].max())]
                if b["baseline_std"] and not math.isnan(b["baseline_std"]):
                    ax.axhspan(b["baseline"] - b["baseline_std"], b["baseline"] + b["baseline_std"], color="black",
                               alpha=0.08, lw=0)
            ax.set_xlabel(xlabel)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # K and unit indices are whole numbers
            ax.set_ylabel(f"{metric} (%)")
            ax.set_title(f"{model} on {dataset}")
            ax.grid(alpha=0.3)
            units = grp["units"].dropna() if "units" in grp.columns else []
            if kind == "kcurve" and len(units):
                n = float(units.iloc[0])
                top = ax.secondary_xaxis("top", functions=(lambda x, n=n: 100.0 * x / n, lambda p, n=n: p * n / 100.0))
                top.set_xlabel("% of the units modified")
            ax.legend(fontsize=8, loc="best")
            fig.tight_layout()
            name = f"{kind}_{model}_{dataset}"
            chart = Chart(f"{metric} (%) of {model} on {dataset}", xlabel,
                          pd.DataFrame(drawn, columns=["series", "x", "y"]))
            written += save_figure(fig, outdir / name, {name: chart})
    return written


def pareto_front(points, cost: str):
    """The points no other point beats (as accurate or more for no more ``cost``, better in one)."""
    pts = points.dropna(subset=[cost, "acc"]).sort_values([cost, "acc"], ascending=[True, False])
    best = -math.inf
    keep = []
    for idx, acc in zip(pts.index, pts["acc"], strict=True):
        if acc > best:
            keep.append(idx)
            best = acc
    return pts.loc[keep]


COSTS = {"params": "parameters", "flops": "FLOPs (one image)"}


def plot_costs(agg, outdir: Path, metric: str = "test_top1") -> tuple[Outputs, Any]:
    """Accuracy against parameters and against FLOPs, every method, variant and K of a model and
    data set as a point, the Pareto front (best accuracy for the cost) drawn and ringed; returns the
    figures and the table of the front points."""
    import pandas as pd

    plt = pyplot()
    written, fronts = Outputs(), []
    costs = [c for c in COSTS if c in agg.columns and agg[c].notna().any()]
    curves = agg[agg["unit"].isna()] if costs else agg.iloc[:0]
    for (model, dataset), grp in curves.groupby(["model", "dataset"], sort=True):
        if grp["k"].max() == 0:
            continue  # baselines only: no trade-off to show (as for the K-curves)
        fig, axes = plt.subplots(1, len(costs), figsize=(6.0 * len(costs), 4.4), squeeze=False)
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        name = f"cost_{model}_{dataset}"
        charts = {}
        for ax, cost in zip(axes[0], costs, strict=True):
            drawn = []
            for i, (line, pts) in enumerate(grp.groupby("line", sort=True)):
                pts = pts.dropna(subset=[cost]).sort_values(cost)
                ax.scatter(pts[cost], pts["acc"], s=18, color=colors[i % len(colors)], label=line, zorder=2)
                drawn += [(line, x, y) for x, y in zip(pts[cost], pts["acc"], strict=True)]
            front = pareto_front(grp, cost)
            ax.step(front[cost], front["acc"], where="post", color="black", lw=1.0, label="Pareto front", zorder=1)
            ax.scatter(front[cost], front["acc"], s=70, facecolors="none", edgecolors="black", zorder=3)
            for _, p in front.iterrows():
                ax.annotate(f"K={int(p['k'])}", (p[cost], p["acc"]), textcoords="offset points", xytext=(4, 4),
                            fontsize=7)
            drawn += [("Pareto front", x, y) for x, y in zip(front[cost], front["acc"], strict=True)]
            fronts.append(front.assign(cost=cost))
            if grp[cost].max() > 20 * grp[cost].min() > 0:
                ax.set_xscale("log")
            ax.set_xlabel(COSTS[cost])
            ax.set_ylabel(f"{metric} (%)")
            ax.set_title(f"{model} on {dataset}: accuracy vs {COSTS[cost].split()[0]}")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="best")
            charts[f"{name}_{cost}"] = Chart(f"{metric} (%) vs {COSTS[cost]}: {model} on {dataset}", COSTS[cost],
                                             pd.DataFrame(drawn, columns=["series", "x", "y"]))
        fig.tight_layout()
        written += save_figure(fig, outdir / name, charts)
    cols = [c for c in ["model", "dataset", "cost", "line", "method", "k", "params", "flops", "acc", "acc_std",
                        "seeds", "baseline", "delta"] if c in agg.columns or c == "cost"]
    front_table = pd.concat(fronts)[cols] if fronts else pd.DataFrame(columns=cols)
    return written, front_table


def summary_tables(agg, tolerance: float = 1.0):
    """(most compressed within ``tolerance`` of the baseline, best) per model, dataset, setting and line."""
    cols = [c for c in ["model", "dataset", "line", "method", "k", "k_percent", "unit", "params", "flops",
                        "receptive_field", "acc", "acc_std", "seeds", "baseline", "delta"] if c in agg.columns]
    compressed, best = [], []
    for _, grp in agg.dropna(subset=["baseline"]).groupby(["model", "dataset", "setting", "line"], sort=True):
        ok = grp[grp["acc"] >= grp["baseline"] - tolerance]
        if not ok.empty:
            compressed.append(ok.sort_values(["params", "k"], ascending=[True, False]).iloc[0][cols])
        best.append(grp.sort_values(["acc", "params"], ascending=[False, True]).iloc[0][cols])
    import pandas as pd

    return pd.DataFrame(compressed, columns=cols), pd.DataFrame(best, columns=cols)


def eval_points(df):
    """Evaluation rows (``spatialprobe.evaluate``) with ``K``: the units the shuffle acts on, at training
    or at test time (the trained network's k, or the test-time method's k; 0 for the plain baseline)."""
    if "record" not in df.columns or "test_method" not in df.columns:
        return None
    ev = df[df["record"] == "eval"].copy()
    if ev.empty:
        return None
    ev["K"] = (ev["test_k"] if "test_k" in ev.columns else ev["k"]).fillna(ev["k"]).astype(int)
    return ev


def train_test_matrix(df):
    """Accuracy (mean ± std over evaluation passes) by K and training scheme (rows) x test scheme (columns)."""
    ev = eval_points(df)
    if ev is None:
        return None
    cell = ev.assign(value=ev.apply(lambda r: f"{r['test_top1']:.2f} ± {r['test_top1_std']:.2f}", axis=1))
    return cell.pivot_table(index=["model", "dataset", "K", "train_method"], columns="test_method", values="value",
                            aggfunc="first").reset_index()


def plot_mismatch(df, outdir: Path) -> Outputs:
    """S1 Fig. 7: accuracy vs K for every training -> test scheme of a stochastic method (shuffle -> shuffle,
    shuffle -> none, none -> shuffle; none -> none as the baseline line), from evaluation rows; drawn where
    some scheme has two K or more."""
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    ev = eval_points(df)
    written = Outputs()
    if ev is None:
        return written
    for (model, dataset), grp in ev.groupby(["model", "dataset"], sort=True):
        shuffled = grp[grp["K"] > 0]
        schemes = shuffled.groupby(["train_method", "test_method"])["K"].nunique()
        if schemes.empty or schemes.max() < 2:
            continue
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        drawn = []
        for (train, test), pts in shuffled.groupby(["train_method", "test_method"], sort=True):
            pts = pts.sort_values("K").drop_duplicates("K")
            ax.errorbar(pts["K"], pts["test_top1"], yerr=pts["test_top1_std"].fillna(0), marker="o", ms=4,
                        capsize=2, label=f"{train} -> {test}")
            drawn += [(f"{train} -> {test}", x, y) for x, y in zip(pts["K"], pts["test_top1"], strict=True)]
        base = grp[(grp["K"] == 0) & (grp["train_method"] == "none") & (grp["test_method"] == "none")]
        if not base.empty:
            ax.axhline(base["test_top1"].iloc[0], color="black", ls="--", lw=1.2, label="none -> none")
            drawn += [("none -> none", x, base["test_top1"].iloc[0]) for x in (shuffled["K"].min(), shuffled["K"].max())]
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        xlabel = "K (units shuffled, counted from the last)"
        _labelled(ax, xlabel, "test top-1 (%), mean over evaluation passes",
                  f"{model} on {dataset}: training -> test scheme")
        name = f"mismatch_{model}_{dataset}"
        written += save_figure(fig, outdir / name, {name: _chart(f"train -> test scheme: {model} on {dataset}",
                                                                 xlabel, drawn)})
    return written


def plot_depth(points, outdir: Path, metric: str = "test_top1") -> Outputs:
    """S1 Fig. 3 (left): accuracy vs the number of modified units kept (K - ``method.strip``) where the
    table has a depth ablation (several ``method.strip`` values at one K), with the baseline."""
    plt = pyplot()
    written = Outputs()
    if "config.method.strip" not in points.columns:
        return written
    for (model, dataset), grp in points.groupby(["model", "dataset"], sort=True):
        abl = grp[(grp["k"] > 0) & grp["config.method.strip"].notna()]
        if abl.empty or abl["config.method.strip"].nunique() < 2:
            continue
        abl = abl.assign(kept=abl["k"] - abl["config.method.strip"].astype(int))
        stats = abl.groupby(["method", "k", "kept"])[metric].agg(["mean", "std"]).reset_index()
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        drawn = []
        for (method, k), pts in stats.groupby(["method", "k"], sort=True):
            label = f"{method}, last {k} units modified, the last K - n of them removed"
            ax.errorbar(pts["kept"], pts["mean"], yerr=pts["std"].fillna(0), marker="o", ms=4, capsize=2, label=label)
            drawn += [(label, x, y) for x, y in zip(pts["kept"], pts["mean"], strict=True)]
        base = grp[grp["k"] == 0][metric]
        if not base.empty:
            ax.axhline(base.mean(), color="black", ls="--", lw=1.2, label="baseline")
            drawn += [("baseline", x, base.mean()) for x in (stats["kept"].min(), stats["kept"].max())]
        written += _finished(ax, outdir / f"depth_{model}_{dataset}", "modified units kept (K - method.strip)",
                             f"{metric} (%)", f"{model} on {dataset}: depth ablation", drawn)
    return written


def plot_receptive_field(agg, outdir: Path, metric: str = "test_top1") -> Outputs:
    """S1 Fig. 3 (right): the accuracy difference to the baseline against the receptive field of the spatial
    part of the network (the last K convs made 1x1 shrink it), one line per setting (input size), for every
    conv1x1 K-sweep whose records hold the receptive field."""
    plt = pyplot()
    written = Outputs()
    if "receptive_field" not in agg.columns:
        return written
    rows = agg[(agg["method"] == "conv1x1") & agg["unit"].isna() & agg["receptive_field"].notna() & agg["delta"].notna()]
    for (model, dataset), grp in rows.groupby(["model", "dataset"], sort=True):
        if grp["receptive_field"].nunique() < 2:
            continue
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        drawn = []
        for setting, pts in grp.groupby("setting", sort=True):
            pts = pts.sort_values("receptive_field")
            label = setting or "conv1x1"
            ax.plot(pts["receptive_field"], pts["delta"], marker="o", ms=4, label=label)
            drawn += [(label, x, y) for x, y in zip(pts["receptive_field"], pts["delta"], strict=True)]
        ax.axhline(0.0, color="black", ls="--", lw=1.0)
        ax.set_xscale("log")
        written += _finished(ax, outdir / f"rf_{model}_{dataset}", "receptive field of the spatial layers (px, log scale)",
                             f"{metric} - baseline (points)", f"{model} on {dataset}: accuracy vs receptive field", drawn)
    return written


# a training-curve figure with more runs than this is unreadable; --curves draws it anyway
MAX_CURVES = 8


def plot_training_curves(points, outdir: Path, force: bool = False) -> Outputs:
    """S0 Fig. 1: train and validation top-1 per epoch of every run of a (model, dataset), read from the runs'
    own logged metrics (``logs/attempt-*/metrics.csv`` via ``collect.epoch_metrics``); nothing is re-run.
    With ``dataset.val_size=0`` (the default) the validation split is the test set."""
    from matplotlib.ticker import MaxNLocator

    from spatialprobe.report.collect import epoch_metrics

    plt = pyplot()
    written = Outputs()
    if "run_dir" not in points.columns:
        return written
    for (model, dataset), grp in points.groupby(["model", "dataset"], sort=True):
        if len(grp) > MAX_CURVES and not force:
            continue
        runs = []
        for _, row in grp.sort_values(["line", "k"]).iterrows():
            epochs = epoch_metrics(row["run_dir"]) if Path(str(row["run_dir"])).is_dir() else None
            if epochs is not None and {"train_top1", "val_top1"} & set(epochs.columns):
                runs.append((f"{row['line']} K={row['k']}", epochs))
        if not runs:
            continue
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        drawn = []
        for i, (label, epochs) in enumerate(runs):
            for col, ls, what in (("train_top1", "--", "train"), ("val_top1", "-", "val")):
                if col in epochs.columns:
                    pts = epochs.dropna(subset=[col])
                    ax.plot(pts["epoch"] + 1, pts[col], ls=ls, color=colors[i % len(colors)], label=f"{label} ({what})")
                    drawn += [(f"{label} ({what})", x, y) for x, y in zip(pts["epoch"] + 1, pts[col], strict=True)]
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        _labelled(ax, "epoch", "top-1 (%)", f"{model} on {dataset}: training curves",
                  {"fontsize": 7, "loc": "lower right"})
        name = f"curves_{model}_{dataset}"
        written += save_figure(fig, outdir / name, {name: _chart(f"top-1 (%) per epoch: {model} on {dataset}",
                                                                 "epoch", drawn)})
    return written


def write_table(df, stem: Path) -> Outputs:
    df.to_csv(f"{stem}.csv", index=False)
    # pandas' markdown (tabulate): 2 decimals, large counts (parameters, FLOPs) as integers, no index
    shown = df.astype(object).where(df.notna(), None).map(
        lambda v: int(v) if isinstance(v, float) and v.is_integer() and abs(v) >= 1000 else v)
    Path(f"{stem}.md").write_text(shown.to_markdown(index=False, floatfmt=".2f", missingval="") + "\n")
    return Outputs([Path(f"{stem}.csv"), Path(f"{stem}.md")])


def make_all(table: str | Path, outdir: str | Path | None = None, tolerance: float = 1.0,
             metric: str = "test_top1", curves: bool = False) -> Outputs:
    df = load_table(table, metric)
    outdir = Path(outdir) if outdir else Path(table).parent / "figures"
    outdir.mkdir(parents=True, exist_ok=True)
    written = Outputs()
    points = train_points(df, metric)
    if not points.empty:
        agg = aggregate(points, metric)
        written += plot_curves(agg, outdir, metric)
        compressed, best = summary_tables(agg, tolerance)
        written += write_table(compressed, outdir / "compressed")
        written += write_table(best, outdir / "best")
        written += write_table(agg.drop(columns=["setting"]), outdir / "kcurve_table")
        costs, front = plot_costs(agg, outdir, metric)
        written += costs
        written += write_table(front, outdir / "pareto")
        written += plot_depth(points, outdir, metric)
        written += plot_receptive_field(agg, outdir, metric)
        written += plot_training_curves(points, outdir, force=curves)
    matrix = train_test_matrix(df)
    if matrix is not None:
        written += write_table(matrix, outdir / "train_test_matrix")
        written += plot_mismatch(df, outdir)
    if not written:
        raise UserError(f"{table}: no complete run with a {metric} value to plot")
    return written
