"""The results site: a folder of runs as static HTML, every number beside the paper's (``python -m spatialprobe.report``).

    python -m spatialprobe.report runs/sweeps [more dirs ...] -o runs/site

Reads the runs' records (``result.json``, ``eval-*.json``, through :func:`~spatialprobe.report.collect.collect_dirs`),
their logged ``logs/attempt-*/metrics.csv`` and the figures ``plot`` drew (``<sweep>/figures/*.png``), and the
papers' numbers (:mod:`spatialprobe.report.papers`); nothing else, nothing is trained or evaluated. Writes:

* ``index.html``: every experiment found (``config.experiment_name``, else the sweep directory) with its status
  word computed from the records (configured / CPU-scale / reproduced, see :func:`status`), its runs, and the
  papers' numbers beside ours and the difference; the papers' items whose experiments have no run here;
* ``e/<experiment>/index.html``: the K-curves (SVG; hovering a point shows its runs, K, parameters, FLOPs, the
  mean and spread over seeds and over evaluation passes; a legend button switches a method off and on; a click
  opens the run), the paper's numbers against ours, sortable tables of the curves' points and of the runs, the
  train/test matrix, the Pareto front (accuracy against parameters and FLOPs), the figures of the sweep;
* ``e/<experiment>/r/<run>.html``: a run's record, its metric curves per epoch, evaluations, checkpoints, W&B
  run, and its config with the keys that differ from the experiment's baseline (its K=0 run) marked;
* ``assets/site.css``, ``assets/site.js``: the site's own style and script, no third-party code.

Every link is relative and nothing is fetched from a network: the folder opens from disk (``file://``) and can
be copied to any web host. Everything that comes from a record is HTML-escaped (:func:`~spatialprobe.report.svg.esc`),
and the JSON a page embeds for its tooltips is escaped for a ``<script>`` element (:func:`json_script`); each page
also forbids inline scripts through its Content-Security-Policy.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from spatialprobe.errors import UserError
from spatialprobe.report import papers
from spatialprobe.report.collect import collect_dirs, epoch_metrics, flatten
from spatialprobe.report.svg import Trace, chart, esc
from spatialprobe.run.records import config_diff

ASSETS = Path(__file__).resolve().parent / "assets"
MARKER = ".spatialprobe-site"  # a folder holding it was written by this module: a rebuild may replace it
METRICS = ("test_top1", "map50", "test_miou")  # the headline metric of a run, in this order of preference
STATUS_WORDS = ("configured", "CPU-scale", "paper-scale", "reproduced")  # the ledger's three, and trained but not matched
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "base-uri 'none'; form-action 'none'")


# ----------------------------------------------------------------------------------------------- small helpers

def json_script(obj) -> str:
    """JSON for a ``<script type="application/json">`` element: ``<``, ``>``, ``&`` and the two JavaScript line
    separators escaped, so no value can end the element (``</script>``) or open a comment."""
    text = json.dumps(obj, ensure_ascii=False, allow_nan=False, default=str)
    for char, code in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                       ("\u2029", "\\u2029")):
        text = text.replace(char, code)
    return text


def slug(name: str, taken: set[str] | None = None) -> str:
    """A file name for ``name``: letters, digits, ``._-``; a short hash where characters were replaced or the
    name is taken (so two names never share a page)."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", str(name)).strip("-.")[:80] or "x"
    out = base if base == str(name) else f"{base}-{hashlib.sha1(str(name).encode()).hexdigest()[:6]}"
    while taken is not None and out in taken:
        out = f"{base}-{hashlib.sha1((out + str(name)).encode()).hexdigest()[:6]}"
    if taken is not None:
        taken.add(out)
    return out


def plain(v):
    """A numpy scalar as the Python number it holds (pandas hands those out); anything else unchanged."""
    return v.item() if hasattr(v, "item") and hasattr(v, "dtype") else v


def missing(v) -> bool:
    v = plain(v)
    return v is None or (isinstance(v, float) and math.isnan(v))


def num(v, digits: int = 2) -> str:
    """A number for a table: counts with thousands separators, others with ``digits`` decimals."""
    v = plain(v)
    if missing(v):
        return ""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return str(v)
    if float(v).is_integer():
        return f"{int(v):,}"
    return f"{v:.{digits}f}"


def value_text(v) -> str:
    """A record's value as the record holds it (no rounding): 69.05 stays 69.05, a count 1024282, true / false."""
    v = plain(v)
    if missing(v):
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, dict | list):
        return json.dumps(v, default=str)
    return str(v)


def sort_key(v) -> str:
    v = plain(v)
    if missing(v) or isinstance(v, dict | list):
        return ""
    return str(float(v)) if isinstance(v, int | float) and not isinstance(v, bool) else str(v)


def cell(v, text: str | None = None, cls: str = "") -> str:
    shown = value_text(v) if text is None else text
    c = f' class="{esc(cls)}"' if cls else ""
    return f'<td data-v="{esc(sort_key(v))}"{c}>{esc(shown)}</td>'


def table(header: list[str], rows: list[str], cls: str = "sortable", caption: str = "") -> str:
    if not rows:
        return ""
    head = "".join(f'<th scope="col">{esc(h)}</th>' for h in header)
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    return (f'<div class="scroll"><table class="{esc(cls)}">{cap}<thead><tr>{head}</tr></thead><tbody>'
            + "".join(rows) + "</tbody></table></div>")


def same(value, want) -> bool:
    """Whether a record's config value is what a paper's cell asks for (``{not: X}``: anything but X; None
    matches a missing key)."""
    if isinstance(want, dict) and "not" in want:
        return not same(value, want["not"])
    if missing(value) or missing(want):
        return missing(value) and missing(want)
    if isinstance(want, bool) or isinstance(value, bool):
        return str(value).lower() == str(want).lower()
    try:
        return float(value) == float(want)
    except (TypeError, ValueError):
        return str(value) == str(want)


# ------------------------------------------------------------------------------------------------ the runs

@dataclass
class Run:
    row: dict                  # the collected table's row
    record: dict               # result.json, whole
    slug: str = ""
    evals: list[dict] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.record.get("name") or (self.record.get("config") or {}).get("name")
                   or Path(self.row["run_dir"]).name)

    @property
    def dir(self) -> Path:
        return Path(self.row["run_dir"])


@dataclass
class Comparison:
    entry: papers.Entry
    experiment: str
    ours: float | None = None
    spread: float | None = None
    n: int = 0
    over: str = ""             # "seeds", "passes"
    runs: list[Run] = field(default_factory=list)
    scaled: bool = False       # compared with a smaller version (on its own data set if it has none of the paper's)
    slug: str = ""             # the experiment's page

    @property
    def diff(self) -> float | None:
        return None if self.ours is None or self.entry.kind == "info" else self.ours - self.entry.value


@dataclass
class Experiment:
    name: str
    slug: str
    runs: list[Run]
    df: object                 # its rows of the collected table (training and evaluation records)
    metric: str
    status: str = "configured"
    why: str = ""
    comparisons: list[Comparison] = field(default_factory=list)
    baseline: Run | None = None
    tips: list = field(default_factory=list)  # its page's tooltips


def load(dirs: list[str | Path]):
    """The collected table of every record under ``dirs`` (flattened dict fields such as ``errors.correct``
    added) and the training runs, one :class:`Run` each (a run under two of the directories counts once)."""
    import pandas as pd

    records: dict[str, dict] = {}
    df = collect_dirs(dirs, records=records)
    df = df.drop_duplicates(subset=[c for c in ("record", "run_dir", "eval_path") if c in df.columns])
    extra = {}
    for run_dir, rec in records.items():
        extra[run_dir] = {k: v for key, value in rec.items() if isinstance(value, dict)
                          and key not in ("config", "checkpoints", "progress")
                          for k, v in flatten(value, f"{key}.").items() if not isinstance(v, str)}
    flat = pd.DataFrame([extra.get(r, {}) if rec == "train" else {} for r, rec in zip(df["run_dir"], df["record"],
                                                                                      strict=True)], index=df.index)
    df = pd.concat([df, flat[[c for c in flat.columns if c not in df.columns]]], axis=1)
    name = df["config.experiment_name"] if "config.experiment_name" in df.columns else None
    df["experiment"] = [str(n) if not missing(n) else str(s) for n, s in
                        zip(name if name is not None else [None] * len(df), df["sweep"], strict=True)]
    runs = [Run(row=row, record=records[row["run_dir"]]) for row in df[df["record"] == "train"].to_dict("records")]
    return df, runs


def headline_metric(df) -> str:
    for m in METRICS:
        if m in df.columns and df[m].notna().any():
            return m
    return "test_top1"


def scale_reasons(config: dict) -> list[str]:
    """Why a run is smaller than a paper's (empty: it is at a paper's scale): a subset of the data, narrower
    networks, the CPU recipe, fewer batches or epochs than its recipe."""
    def get(key):
        node = config
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        return node

    out = []
    for key in ("dataset.subset", "dataset.eval_subset", "trainer.fast_dev_run"):
        if get(key):
            out.append(f"{key}={get(key)}")
    width = get("model.width")
    if width is not None and float(width) != 1.0:
        out.append(f"model.width={width}")
    if get("recipe.name") == "cpu":
        out.append("recipe=cpu")
    for key in ("trainer.limit_train_batches", "trainer.limit_val_batches"):
        v = get(key)
        if v is not None and not isinstance(v, bool) and (isinstance(v, int) and v != 1 or float(v) < 1.0):
            out.append(f"{key}={v}")
    epochs, planned = get("trainer.max_epochs"), get("recipe.epochs")
    if epochs and planned and int(epochs) < int(planned):
        out.append(f"trainer.max_epochs={epochs} < recipe.epochs={planned}")
    return out


def status(exp: Experiment, tolerance: float) -> tuple[str, str]:
    """The ledger's status word from what the records hold: **configured** (no complete run here),
    **CPU-scale** (complete runs, smaller than the paper's: :func:`scale_reasons`), **reproduced** (paper-scale
    runs whose every number compared with the paper's is within ``tolerance`` points), else **paper-scale**
    (trained at the paper's scale; the difference, or that there is no paper number to compare, said)."""
    complete = [r for r in exp.runs if r.record.get("status") == "complete"]
    if not complete:
        counts = ", ".join(f"{sum(r.record.get('status') == s for r in exp.runs)} {s}"
                           for s in ("failed", "running") if any(r.record.get("status") == s for r in exp.runs))
        return "configured", f"no complete run ({counts or 'no run'})"
    reasons = sorted({why for r in complete for why in scale_reasons(r.record.get("config") or {})})
    if reasons:
        return "CPU-scale", "smaller than the papers': " + ", ".join(reasons)
    compared = [c for c in exp.comparisons if c.diff is not None and not c.scaled]
    if not compared:
        return "paper-scale", "trained at the paper's scale; no paper number to compare with"
    worst = max(abs(c.diff) for c in compared)
    if worst <= tolerance:
        return "reproduced", f"{len(compared)} paper number(s) matched within {tolerance:g} point(s)"
    return "paper-scale", f"differs from the paper by up to {worst:.2f} (tolerance {tolerance:g})"


# ------------------------------------------------------------------------------------ papers against ours

def _select(df, sel: dict, scaled: bool):
    """The complete rows of ``df`` that a paper's cell names (:attr:`papers.Entry.select`), and where from:
    evaluation rows for a train -> test scheme when there are some, else training rows. ``scaled``: ``df`` is a
    smaller version of the paper's experiment, on another data set (its model must still be the paper's)."""
    rows = df[df["status"] == "complete"]
    for key in ("model",) if scaled else ("model", "dataset"):
        if key in sel:
            rows = rows[rows[key] == sel[key]]
    unit = rows["unit"] if "unit" in rows.columns else None
    if "unit" in sel:
        rows = rows[unit == sel["unit"]] if unit is not None else rows.iloc[:0]
    elif unit is not None:
        rows = rows[unit.isna()]
    for key, want in (sel.get("config") or {}).items():
        col = f"config.{key}"
        values = rows[col] if col in rows.columns else [None] * len(rows)
        rows = rows[[same(v, want) for v in values]]
    k = sel.get("k")
    train, test = sel.get("train"), sel.get("test")
    if train is not None or test is not None:
        ev = rows[rows["record"] == "eval"] if "test_method" in rows.columns else rows.iloc[:0]
        if len(ev):
            kk = (ev["test_k"] if "test_k" in ev.columns else ev["k"]).fillna(ev["k"])
            ev = ev[(ev["train_method"] == train) & (ev["test_method"] == test) & (kk == (k or 0))]
            if len(ev):
                return ev, "passes"
        if k == 0 and train == test == "none":
            tr = rows[(rows["record"] == "train") & (rows["k"] == 0)]
        elif train == test:
            tr = rows[(rows["record"] == "train") & (rows["method"] == train) & (rows["k"] == k)]
        else:
            return rows.iloc[:0], ""
        return tr, "seeds"
    tr = rows[rows["record"] == "train"]
    if k == 0:
        return tr[tr["k"] == 0], "seeds"
    if "method" in sel:
        tr = tr[tr["method"] == sel["method"]]
    if k is not None:
        tr = tr[tr["k"] == k]
    if sel.get("best") and len(tr):
        means = tr.groupby("k")[_metric_col(tr)].mean() if _metric_col(tr) else None
        if means is not None and means.notna().any():
            tr = tr[tr["k"] == means.idxmax()]
    return tr, "seeds"


def _metric_col(rows) -> str | None:
    for m in METRICS:
        if m in rows.columns and rows[m].notna().any():
            return m
    return None


def compare(entry: papers.Entry, exp: Experiment, scaled: bool, runs_by_dir: dict) -> Comparison:
    """Ours for one paper's number. A smaller version (``scaled``) is compared on the paper's data set where it
    has runs of it (P's CIFAR-10 column), else on its own (S1's CIFAR-100 numbers against CIFAR-10 runs), and never
    on parameter counts (its networks are narrower)."""
    c = Comparison(entry=entry, experiment=exp.name, scaled=scaled, slug=exp.slug)
    if scaled:
        own = set(exp.df["dataset"].dropna())
        paper = {e.select.get("dataset") for e in papers.items(entry.paper)[(entry.paper, entry.item)]}
        if entry.metric == "params" or (own & paper and entry.select.get("dataset") not in own):
            return c
        scaled = not own & paper
    rows, over = _select(exp.df, entry.select, scaled)
    metric = entry.metric
    if metric not in rows.columns or rows.empty:
        return c
    values = rows[metric].dropna().astype(float)
    if values.empty:
        return c
    scale = 1e-6 if metric == "params" else 1.0
    c.ours = float(values.mean()) * scale
    c.n = int(len(values))
    c.runs = [runs_by_dir[d] for d in dict.fromkeys(rows["run_dir"]) if d in runs_by_dir]
    if over == "passes" and len(values) == 1 and "test_top1_std" in rows.columns:
        passes = int(rows["passes"].iloc[0] or 1)
        if passes > 1:
            c.spread, c.over = float(rows["test_top1_std"].iloc[0] or 0.0), f"{passes} passes"
    elif len(values) > 1:
        c.spread, c.over = float(values.std()) * scale, f"{len(values)} {'runs' if over == 'passes' else 'seeds'}"
    if entry.kind == "delta":
        base_sel = {k: v for k, v in entry.select.items() if k in ("model", "dataset")}
        base_sel["config"] = {k: v for k, v in (entry.select.get("config") or {}).items() if not k.startswith("method.")}
        base_sel["k"] = 0
        base, _ = _select(exp.df, base_sel, scaled)
        base_values = base[metric].dropna().astype(float) if metric in base.columns else []
        if len(base_values) == 0:
            c.ours = None
            return c
        c.ours -= float(base_values.mean()) * scale
    return c


# ------------------------------------------------------------------------------------------------ the build

@dataclass
class Site:
    out: Path
    experiments: list[Experiment]
    pages: list[Path]
    records: int


def build_site(dirs: list[str | Path], out: str | Path, tolerance: float = 1.0, title: str = "spatialprobe results",
               now: str | None = None) -> Site:
    """Write the site of every record under ``dirs`` into ``out`` (see the module's docstring)."""
    out = Path(out)
    df, runs = load(dirs)  # the records first: a mistake in the directories writes nothing
    _prepare(out)
    runs_by_dir = {r.row["run_dir"]: r for r in runs}
    if "eval_path" in df.columns:
        for row in df[df["record"] == "eval"].to_dict("records"):
            if row["run_dir"] in runs_by_dir:
                runs_by_dir[row["run_dir"]].evals.append(row)
    experiments = []
    exp_slugs: set[str] = set()
    for name, exp_df in df.groupby("experiment", sort=True):
        exp_runs = sorted((runs_by_dir[d] for d in dict.fromkeys(exp_df.loc[exp_df["record"] == "train", "run_dir"])),
                          key=lambda r: (str(r.row.get("method")), _int(r.row.get("k")), _int(r.row.get("seed")),
                                         r.name))
        exp = Experiment(name=str(name), slug=slug(str(name), exp_slugs), runs=exp_runs, df=exp_df,
                         metric=headline_metric(exp_df))
        taken: set[str] = set()
        for r in exp_runs:
            r.slug = slug(r.dir.name if r.dir.name not in ("", ".") else r.name, taken)
        exp.baseline = _baseline(exp_runs)
        for entry in papers.entries():
            if exp.name in entry.experiments or exp.name in entry.cpu_scale:
                exp.comparisons.append(compare(entry, exp, exp.name not in entry.experiments, runs_by_dir))
        exp.status, exp.why = status(exp, tolerance)
        experiments.append(exp)
    now = now or time.strftime("%Y-%m-%d %H:%M")
    footer = (f"built {esc(now)} by spatialprobe's <code>python -m spatialprobe.report</code> from "
              f"{len(runs)} run record(s) and {int((df['record'] == 'eval').sum())} evaluation record(s)")
    pages = [_write(out / "index.html", title, "", _index(experiments, dirs, tolerance), footer, [])]
    for exp in experiments:
        pages.append(_write(out / "e" / exp.slug / "index.html", exp.name, "../../", _experiment_page(exp, out),
                            footer, [(title, "../../index.html")], tips=exp.tips))
        for run in exp.runs:
            body, tips = _run_page(run, exp)
            pages.append(_write(out / "e" / exp.slug / "r" / f"{run.slug}.html", run.name, "../../../", body, footer,
                                [(title, "../../../index.html"), (exp.name, "../index.html")], tips=tips))
    (out / "assets").mkdir(parents=True, exist_ok=True)
    for asset in ("site.css", "site.js"):
        shutil.copyfile(ASSETS / asset, out / "assets" / asset)
    (out / MARKER).write_text("written by python -m spatialprobe.report; a rebuild replaces this folder's pages\n")
    return Site(out=out, experiments=experiments, pages=pages, records=len(runs))


def _int(v) -> int:
    return -1 if missing(v) else int(v)


def _prepare(out: Path) -> None:
    """``out`` empty, absent, or a site written before (whose pages are replaced); never a folder of other files."""
    if out.exists() and not out.is_dir():
        raise UserError(f"-o {out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        if not (out / MARKER).is_file():
            raise UserError(f"-o {out}: a folder with other files in it (not a site built by this command); "
                            "give a new or empty folder")
        for old in ("e", "assets"):
            shutil.rmtree(out / old, ignore_errors=True)
        (out / "index.html").unlink(missing_ok=True)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"-o {out}: cannot create it ({err.strerror or err})") from None


def _baseline(runs: list[Run]) -> Run | None:
    """The experiment's baseline run, against which a run page marks its config: a complete K=0 run of no
    single unit (the lowest seed), else any K=0 run."""
    base = [r for r in runs if _int(r.row.get("k")) == 0 and missing(r.row.get("unit"))]
    base.sort(key=lambda r: (r.record.get("status") != "complete", _int(r.row.get("seed"))))
    return base[0] if base else None


def _write(path: Path, title: str, root: str, body: str, footer: str, crumbs: list[tuple[str, str]],
           tips: list | None = None) -> Path:
    nav = " / ".join(f'<a href="{esc(href)}">{esc(text)}</a>' for text, href in crumbs)
    nav = f'<nav class="crumbs">{nav} / <span>{esc(title)}</span></nav>' if crumbs else ""
    page = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{esc(CSP)}">
<title>{esc(title)}</title>
<link rel="stylesheet" href="{root}assets/site.css">
</head>
<body>
<header>{nav}<h1>{esc(title)}</h1></header>
<main>
{body}
</main>
<footer>{footer}</footer>
<div id="tooltip" class="tooltip" role="tooltip" hidden></div>
<script type="application/json" id="tips">{json_script(tips or [])}</script>
<script src="{root}assets/site.js"></script>
</body>
</html>
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path


def _badge(word: str, why: str = "") -> str:
    cls = {"configured": "configured", "CPU-scale": "cpu", "reproduced": "reproduced"}.get(word, "paper")
    return f'<span class="badge {cls}" title="{esc(why)}">{esc(word)}</span>'


def _comparison_rows(comparisons: list[Comparison], link_root: str | None, with_experiment: bool) -> list[str]:
    rows = []
    for c in comparisons:
        e = c.entry
        ours = "" if c.ours is None else e.text(c.ours) + (f" ± {c.spread:.{e.digits}f}" if c.spread else "")
        over = f" ({c.over})" if c.over else ""
        diff = c.diff
        diff_text = "" if diff is None else f"{diff:+.{e.digits}f}"
        exp = ""
        if with_experiment:
            href = f"{link_root}e/{esc(c.slug)}/index.html"
            exp = f'<td data-v="{esc(c.experiment)}"><a href="{href}">{esc(c.experiment)}</a></td>'
        note = " (smaller)" if with_experiment and c.scaled and c.ours is not None else ""
        rows.append(f"<tr>{cell(e.paper)}{cell(e.item)}{cell(e.row)}{cell(e.column)}{exp}"
                    f"{cell(e.value, e.text())}{cell(c.ours, ours + over + note)}"
                    f'{cell(diff, diff_text, "diff" if diff is not None else "")}</tr>')
    return rows


# ------------------------------------------------------------------------------------------------ index

def _index(experiments: list[Experiment], dirs, tolerance: float) -> str:
    found = {e.name for e in experiments}
    parts = [f'<p class="lead">Every experiment found under {", ".join(f"<code>{esc(d)}</code>" for d in dirs)}, '
             "its status computed from the records, and the papers' numbers beside ours "
             f"(<em>reproduced</em>: at the paper's scale and within {tolerance:g} point(s) of every paper number "
             "compared; <em>CPU-scale</em>: a smaller version; <em>configured</em>: no complete run).</p>"]
    rows = []
    for exp in experiments:
        counts = {s: sum(r.record.get("status") == s for r in exp.runs) for s in ("complete", "failed", "running")}
        items = sorted({f"{c.entry.paper} {c.entry.item}" for c in exp.comparisons})
        compared = [c for c in exp.comparisons if c.diff is not None]
        models = sorted({str(r.row.get("model")) for r in exp.runs if not missing(r.row.get("model"))})
        datasets = sorted({str(r.row.get("dataset")) for r in exp.runs if not missing(r.row.get("dataset"))})
        methods = sorted({str(r.row.get("method")) for r in exp.runs if not missing(r.row.get("method"))})
        status_order = STATUS_WORDS.index(exp.status)  # the table sorts by how far an experiment got
        runs = f"{len(exp.runs)}" + "".join(f", {n} {s}" for s, n in counts.items() if n and s != "complete")
        rows.append(
            f'<tr><td data-v="{esc(exp.name)}"><a href="e/{esc(exp.slug)}/index.html">{esc(exp.name)}</a></td>'
            f'<td data-v="{status_order}">{_badge(exp.status, exp.why)}<div class="why">{esc(exp.why)}</div></td>'
            f"{cell(len(exp.runs), runs)}{cell(', '.join(models))}{cell(', '.join(datasets))}"
            f"{cell(', '.join(methods))}{cell('; '.join(items))}{cell(len(compared))}</tr>")
    parts.append('<h2 id="experiments">Experiments</h2>')
    parts.append(table(["experiment", "status", "runs", "models", "data sets", "methods", "paper items",
                        "numbers compared"], rows))
    comparisons = [c for exp in experiments for c in exp.comparisons if c.ours is not None]
    parts.append("<h2 id=\"papers\">The papers' numbers beside ours</h2>")
    if comparisons:
        parts.append("<p>Ours: the mean over the runs (seeds) or evaluation passes the paper's number describes, "
                     "± their spread; a difference is ours minus the paper's. <em>(smaller)</em>: a CPU-scale "
                     "version, compared on its own data set where it has none of the paper's.</p>")
        parts.append(table(["paper", "item", "row", "column", "experiment", "paper's", "ours", "difference"],
                           _comparison_rows(comparisons, "", True)))
    else:
        parts.append("<p>No run here matches a number of the papers.</p>")
    todo: dict[tuple[str, str], list[papers.Entry]] = {}
    for (paper, item), group in papers.items().items():
        names = group[0].experiments
        if names and not (set(names) | set(group[0].cpu_scale)) & found:
            todo[(paper, item)] = group
    if todo:
        parts.append("<h2 id=\"configured\">The papers' items with no run here</h2>")
        parts.append("<p>Status <em>configured</em>: the experiments exist (<code>conf/experiment/</code>) and the "
                     "<code>sweeps/</code> scripts run them; no record of them was found here.</p>")
        rows = [f"<tr>{cell(paper)}{cell(item)}{cell(group[0].caption)}{cell(', '.join(group[0].experiments))}"
                f"{cell(len(group))}<td data-v=\"0\">{_badge('configured')}</td></tr>"
                for (paper, item), group in todo.items()]
        parts.append(table(["paper", "item", "what", "experiments", "numbers", "status"], rows))
    refs = "".join(f'<li><b>{esc(p)}</b>: {esc(m.get("authors"))}, "{esc(m.get("title"))}", {esc(m.get("reference"))}'
                   f' (<a href="{esc(m.get("url"))}">{esc(m.get("url"))}</a>)</li>' for p, m in papers.papers().items())
    parts.append(f'<h2 id="references">The papers</h2><ul class="refs">{refs}</ul>')
    return "\n".join(parts)


# ------------------------------------------------------------------------------------------------ experiment page

def _experiment_page(exp: Experiment, out: Path) -> str:
    from spatialprobe.report.figures import aggregate, pareto_front, train_points, train_test_matrix

    tips = exp.tips
    href = {r.row["run_dir"]: f"r/{r.slug}.html" for r in exp.runs}
    counts = ", ".join(f"{n} {s}" for s in ("complete", "failed", "running")
                       if (n := sum(r.record.get("status") == s for r in exp.runs)))
    parts = [f'<p class="lead">{_badge(exp.status, exp.why)} {esc(exp.why)}. {len(exp.runs)} run(s): '
             f"{esc(counts or 'none')}. Metric: <code>{esc(exp.metric)}</code>.</p>"]
    toc = []
    df = exp.df
    points = train_points(df, exp.metric) if exp.metric in df.columns and df[exp.metric].notna().any() else None
    agg = aggregate(points, exp.metric) if points is not None and len(points) else None

    colours = {}
    if agg is not None:  # a series keeps its colour in every chart of the page; a baseline-only line is black
        drawn = agg[agg["k"] > 0]["line"].unique() if len(agg) else []
        colours = {line: i for i, line in enumerate(sorted(map(str, drawn)))}
        charts = []
        for (model, dataset), grp in agg.groupby(["model", "dataset"], sort=True):
            for kind, rows, xcol, xlabel in (("kcurve", grp[grp["unit"].isna()], "k", "K (last K units modified)"),
                                             ("unit", grp[grp["unit"].notna()], "unit", "index of the single modified unit")):
                if rows.empty or (kind == "kcurve" and rows["k"].max() == 0):
                    continue
                charts.append(_kcurve(exp, kind, model, dataset, rows, grp, points, xcol, xlabel, tips, href, colours))
        if charts:
            toc.append(("kcurves", "K-curves"))
            parts.append('<h2 id="kcurves">K-curves</h2><p class="hint">Hover a point for its runs, parameters, FLOPs '
                         "and spread; click it to open its run; the buttons below a chart switch a series off and on."
                         "</p>" + "\n".join(charts))
    if exp.comparisons:  # after the curves, before the tables of the points
        toc.append(("paper", "The paper and ours"))
        parts.append('<h2 id="paper">The paper and ours</h2>')
        parts.append(table(["paper", "item", "row", "column", "paper's", "ours", "difference"],
                           _comparison_rows(exp.comparisons, None, False)))

    if agg is not None:
        cols = [c for c in ("model", "dataset", "line", "method", "k", "k_percent", "unit", "params", "flops",
                            "receptive_field", "acc", "acc_std", "seeds", "baseline", "delta") if c in agg.columns]
        rows = ["<tr>" + "".join(cell(v, num(v) if isinstance(plain(v), int | float) else None) for v in r) + "</tr>"
                for r in agg[cols].itertuples(index=False)]
        names = {"k_percent": "K %", "acc": f"{exp.metric} mean", "acc_std": "std over seeds", "delta": "difference to baseline",
                 "receptive_field": "receptive field"}
        toc.append(("points", "The curves' points"))
        parts.append('<h2 id="points">The curves\' points</h2>' + table([names.get(c, c) for c in cols], rows))

    matrix = train_test_matrix(df) if "test_method" in df.columns else None
    if matrix is not None and len(matrix):
        toc.append(("matrix", "Train/test matrix"))
        tests = [c for c in matrix.columns if c not in ("model", "dataset", "K", "train_method")]
        rows = ["<tr>" + "".join(cell(r[c]) for c in ("model", "dataset", "K", "train_method"))
                + "".join(cell(r[c]) for c in tests) + "</tr>" for r in matrix.to_dict("records")]
        parts.append('<h2 id="matrix">Train/test matrix</h2><p>Accuracy (mean ± std over the evaluation passes) by K '
                     "and the scheme at training (rows) and at test time (columns), from the evaluation records.</p>"
                     + table(["model", "data set", "K", "trained with", *[f"tested with {t}" for t in tests]], rows))

    if agg is not None:
        front_html = _pareto(exp, agg, tips, pareto_front, colours)
        if front_html:
            toc.append(("pareto", "Pareto front"))
            parts.append(front_html)

    toc.append(("runs", "Runs"))
    rows = []
    for r in exp.runs:
        rec = r.record
        rows.append(f'<tr><td data-v="{esc(r.name)}"><a href="{esc(href[r.row["run_dir"]])}">{esc(r.name)}</a></td>'
                    f'{cell(rec.get("status"))}{cell(rec.get("method"))}{cell(rec.get("k"))}{cell(r.row.get("unit"))}'
                    f'{cell(rec.get("seed"))}{cell(rec.get(exp.metric))}{cell(rec.get(exp.metric + "_best"))}'
                    f'{cell(rec.get("params"), num(rec.get("params")))}{cell(rec.get("flops"), num(rec.get("flops")))}'
                    f'{cell(rec.get("epochs"))}{cell(rec.get("wall_time_s"), num(rec.get("wall_time_s"), 0))}'
                    f'{cell(rec.get("reason"))}</tr>')
    parts.append('<h2 id="runs">Runs</h2><p>Values as the records hold them.</p>'
                 + table(["run", "status", "method", "K", "unit", "seed", exp.metric, exp.metric + "_best", "params",
                          "FLOPs", "epochs", "wall time (s)", "reason"], rows, caption=""))

    figures = _figures(exp, out)
    if figures:
        toc.append(("figures", "Figures"))
        parts.append('<h2 id="figures">Figures</h2><p>As <code>python -m spatialprobe.plot</code> drew them.</p>'
                     '<div class="gallery">' + figures + "</div>")
    nav = "".join(f'<a href="#{a}">{esc(t)}</a>' for a, t in toc)
    parts.insert(1, f'<nav class="toc">{nav}</nav>')
    return "\n".join(parts)


def _runs_at(points, model, dataset, line, xcol, x) -> list[dict]:
    """The training runs behind one point of a curve (looked up in an index built once per table)."""
    index = points.attrs.get("_runs_at")
    if index is None:
        index = {}
        for r in points.to_dict("records"):
            unit = None if missing(r.get("unit")) else r["unit"]
            index.setdefault((r["model"], r["dataset"], r["line"], r["k"] if unit is None else None, unit), []).append(r)
        points.attrs["_runs_at"] = index
    key = (model, dataset, line, x, None) if xcol == "k" else (model, dataset, line, None, x)
    return index.get(key, [])


def _passes(exp: Experiment, run_dirs: list[str], method) -> str:
    """Mean ± std over the evaluation passes of these runs, tested with their own method (evaluate's records)."""
    if "test_method" not in exp.df.columns:
        return ""
    ev = exp.df[(exp.df["record"] == "eval") & exp.df["run_dir"].isin(run_dirs) & (exp.df["test_method"] == method)]
    if "test_k" in ev.columns:
        ev = ev[ev["test_k"] == ev["k"]]
    out = [f"{r['test_top1']:.2f} ± {r.get('test_top1_std') or 0:.2f} over {int(r.get('passes') or 1)} passes"
           for r in ev.to_dict("records") if not missing(r.get("test_top1"))]
    return "; ".join(out)


def _kcurve(exp, kind, model, dataset, rows, grp, points, xcol, xlabel, tips, href, colours) -> str:
    traces = []
    lines = [(line, pts.sort_values(xcol)) for line, pts in rows.groupby("line", sort=True)]
    for line, pts in lines:
        if kind == "kcurve" and pts["k"].max() == 0:
            continue  # a baseline-only line: drawn as the baseline
        t = Trace(name=str(line), colour=colours.get(str(line), 9), attrs={"method": pts["method"].iloc[0], "line": line})
        for p in pts.to_dict("records"):
            runs = _runs_at(points, model, dataset, line, xcol, p[xcol])
            tips.append(_tip(exp, p, runs, kind))
            first = href.get(runs[0]["run_dir"]) if runs else None
            t.points.append((float(p[xcol]), float(p["acc"]), float(p["acc_std"] or 0.0) if p["seeds"] > 1 else None,
                             len(tips) - 1, first))
        traces.append(t)
    bases = grp.dropna(subset=["baseline"]).drop_duplicates("setting")
    for _, b in bases.iterrows():
        label = "baseline (K=0)" + (f", {b['setting']}" if b["setting"] else "")
        base_pts = points[(points["model"] == model) & (points["dataset"] == dataset) & (points["k"] == 0)
                          & points["unit"].isna() & (points["setting"] == b["setting"])]
        runs = base_pts.to_dict("records")
        base_row = {"line": label, "k": 0, "acc": b["baseline"], "acc_std": b["baseline_std"], "seeds": len(runs),
                    "params": runs[0].get("params") if runs else None, "flops": runs[0].get("flops") if runs else None}
        tips.append(_tip(exp, base_row, runs, "kcurve"))
        std = b["baseline_std"] if not missing(b["baseline_std"]) else None
        traces.append(Trace(name=label, kind="hline", colour=9,
                            points=[(0.0 if kind == "kcurve" else None, float(b["baseline"]), std, len(tips) - 1,
                                     href.get(runs[0]["run_dir"]) if runs else None)]))
    if kind == "kcurve":
        paper_pts = []
        for c in exp.comparisons:
            e = c.entry
            if (not c.scaled and e.kind == "value" and e.metric == exp.metric and e.select.get("model") == model
                    and e.select.get("dataset") == dataset and e.select.get("k") is not None
                    and "unit" not in e.select and e.select.get("test", e.select.get("train")) in (None, e.select.get("method"))):
                tips.append([["paper", f"{e.paper} {e.item}"], ["row / column", f"{e.row} / {e.column}"],
                             ["K", str(e.select["k"])], ["paper's number", e.text()]]
                            + ([["ours", e.text(c.ours)]] if c.ours is not None else []))
                paper_pts.append((float(e.select["k"]), e.value, None, len(tips) - 1, None))
        if paper_pts:
            traces.append(Trace(name="the paper's numbers", kind="paper", colour=8, points=paper_pts))
    units = grp["units"].dropna() if "units" in grp.columns else []
    top = ("% of the units modified", float(units.iloc[0])) if kind == "kcurve" and len(units) else None
    title = f"{model} on {dataset}" + (": single units" if kind == "unit" else "")
    return chart(f"{kind}-{slug(model)}-{slug(dataset)}", traces, xlabel=xlabel, ylabel=f"{exp.metric} (%)",
                 title=title, xint=True, top_axis=top, css=kind)


def _tip(exp: Experiment, p: dict, runs: list[dict], kind: str) -> list:
    """A point's tooltip: rows of (label, text)."""
    out = [["series", str(p.get("line"))]]
    if kind == "unit" and not missing(p.get("unit")):
        out.append(["unit", str(int(p["unit"]))])
    else:
        k = int(p.get("k") or 0)
        pct = f" ({p['k_percent']:.0f}% of the units)" if not missing(p.get("k_percent")) else ""
        out.append(["K", f"{k}{pct}"])
    out.append(["params", num(p.get("params"))])
    out.append(["FLOPs", num(p.get("flops"))])
    n = int(p.get("seeds") or len(runs) or 0)
    spread = f" ± {p['acc_std']:.2f}" if n > 1 and not missing(p.get("acc_std")) else ""
    out.append([f"{exp.metric}, mean over {n} seed(s)", f"{p['acc']:.2f}{spread}"])
    passes = _passes(exp, [r["run_dir"] for r in runs], p.get("method"))
    if passes:
        out.append(["evaluation passes", passes])
    names = [str(r.get("config.name") or Path(str(r.get("run_dir"))).name) for r in runs]
    out.append(["runs", ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")])
    return out


def _pareto(exp, agg, tips, pareto_front, colours) -> str:
    from spatialprobe.report.figures import COSTS

    curves = agg[agg["unit"].isna()]
    costs = [c for c in COSTS if c in curves.columns and curves[c].notna().any()]
    html_parts, table_rows = [], []
    for (model, dataset), grp in curves.groupby(["model", "dataset"], sort=True):
        if grp["k"].max() == 0:
            continue
        for cost in costs:
            traces = []
            for line, pts in grp.groupby("line", sort=True):
                t = Trace(name=str(line), kind="scatter", colour=colours.get(str(line), 9), attrs={"line": line})
                for p in pts.dropna(subset=[cost]).to_dict("records"):
                    tips.append([["series", str(line)], ["K", str(int(p["k"]))], [COSTS[cost], num(p[cost])],
                                 [f"{exp.metric}, mean over {int(p['seeds'])} seed(s)", f"{p['acc']:.2f}"]])
                    t.points.append((float(p[cost]), float(p["acc"]), None, len(tips) - 1, None))
                traces.append(t)
            front = pareto_front(grp, cost)
            f = Trace(name="Pareto front", kind="step", colour=9)
            for p in front.to_dict("records"):
                tips.append([["Pareto front", str(p["line"])], ["K", str(int(p["k"]))], [COSTS[cost], num(p[cost])],
                             [exp.metric, f"{p['acc']:.2f}"]])
                f.points.append((float(p[cost]), float(p["acc"]), None, len(tips) - 1, None))
                table_rows.append(f"<tr>{cell(model)}{cell(dataset)}{cell(COSTS[cost])}{cell(p['line'])}{cell(p['k'])}"
                                  f"{cell(p[cost], num(p[cost]))}{cell(p['acc'], num(p['acc']))}</tr>")
            traces.append(f)
            xlog = grp[cost].max() > 20 * grp[cost].min() > 0
            html_parts.append(chart(f"pareto-{cost}-{slug(model)}-{slug(dataset)}", traces, xlabel=COSTS[cost],
                                    ylabel=f"{exp.metric} (%)", title=f"{model} on {dataset}: accuracy vs {cost}",
                                    xlog=xlog, css="pareto", width=560, height=340))
    if not html_parts:
        return ""
    return ('<h2 id="pareto">Pareto front</h2><p>Every method, variant and K a point; the front (ringed) holds the '
            "most accurate network for its cost.</p><div class=\"pair\">" + "\n".join(html_parts) + "</div>"
            + table(["model", "data set", "cost", "series", "K", "cost value", exp.metric], table_rows))


def _figures(exp: Experiment, out: Path) -> str:
    """The sweep's figures (``<sweep>/figures/*.png``), copied into the site beside the page."""
    found = []
    for folder in dict.fromkeys(r.dir.parent / "figures" for r in exp.runs):
        if folder.is_dir():
            found += sorted(folder.glob("*.png"))
    if not found:
        return ""
    dest = out / "e" / exp.slug / "fig"
    dest.mkdir(parents=True, exist_ok=True)
    taken: set[str] = set()
    parts = []
    for png in found:
        name = slug(png.stem, taken) + ".png"
        shutil.copyfile(png, dest / name)
        parts.append(f'<figure><a href="fig/{esc(name)}"><img src="fig/{esc(name)}" alt="{esc(png.stem)}" '
                     f'loading="lazy"></a><figcaption>{esc(png.name)}</figcaption></figure>')
    return "".join(parts)


# ------------------------------------------------------------------------------------------------ run page

SUMMARY = ("status", "reason", "model", "arch", "dataset", "method", "k", "seed", "task", "params", "flops", "units",
           "receptive_field", "test_top1", "test_top1_best", "test_top5_final", "val_top1", "val_top1_best", "map50",
           "test_miou", "epochs", "steps", "attempts", "wall_time_s", "train_time_s", "started", "finished", "host",
           "git_commit", "git_dirty", "spatialprobe_version", "config_hash")


def _run_page(run: Run, exp: Experiment) -> tuple[str, list]:
    rec = run.record
    tips: list = []
    parts = [f'<p class="lead">{_badge_run(rec.get("status"))} run of <a href="../index.html">{esc(exp.name)}</a> in '
             f"<code>{esc(run.dir)}</code></p>"]
    rows = []
    for key in SUMMARY:
        if key in rec and not missing(rec.get(key)):
            rows.append(f"<tr><th scope=\"row\">{esc(key)}</th>{cell(rec[key])}</tr>")
    for key in sorted(k for k in rec if k.startswith("test_cons") and not k.endswith("_best")):
        rows.append(f"<tr><th scope=\"row\">{esc(key)}</th>{cell(rec[key])}</tr>")
    parts.append('<h2 id="record">Record</h2><div class="scroll"><table class="record">' + "".join(rows) + "</table></div>")

    curves = _metric_curves(run, tips)
    parts.append('<h2 id="curves">Metric curves</h2>' + (curves or "<p>No <code>logs/attempt-*/metrics.csv</code> "
                                                                     "with epoch metrics in this run.</p>"))
    if run.evals:
        rows = [f"<tr>{cell(e.get('train_method'))}{cell(e.get('test_method'))}{cell(e.get('test_k'))}"
                f"{cell(e.get('passes'))}{cell(e.get('test_top1'))}{cell(e.get('test_top1_std'))}"
                f"{cell(e.get('eval_path'))}</tr>" for e in run.evals]
        parts.append('<h2 id="evaluations">Evaluations</h2>'
                     + table(["trained with", "tested with", "test K", "passes", "top-1 mean", "std over passes",
                              "record"], rows))
    parts.append('<h2 id="checkpoints">Checkpoints</h2>' + _checkpoints(run))
    parts.append('<h2 id="wandb">W&amp;B</h2>' + _wandb(rec))
    parts.append('<h2 id="config">Config</h2>' + _config(run, exp))
    return "\n".join(parts), tips


def _badge_run(s) -> str:
    return f'<span class="badge run-{esc(s)}">{esc(s)}</span>'


def _metric_curves(run: Run, tips: list) -> str:
    epochs = epoch_metrics(run.dir) if run.dir.is_dir() else None
    if epochs is None:
        return ""
    # per-epoch metrics only: the test metrics of the end are in the record (Lightning logs them one epoch on)
    logged = [c for c in epochs.columns if c != "epoch" and not c.startswith("test_")]
    groups = [("accuracy", "%", [c for c in logged if re.search(r"(top1|acc|miou|map50)", c)]),
              ("loss", "loss", [c for c in logged if "loss" in c]),
              ("learning rate", "learning rate", [c for c in logged if c.startswith("lr")])]
    used = {c for _, _, cols in groups for c in cols}
    groups.append(("other", "value", [c for c in logged if c not in used]))
    html_parts = []
    epoch_numbers = [int(e) for e in epochs["epoch"].tolist()]
    for title, ylabel, cols in groups:
        traces = []
        for i, col in enumerate(cols):
            t = Trace(name=col, colour=i, attrs={"metric": col})
            for e, v in zip(epoch_numbers, epochs[col].tolist(), strict=True):
                if v is None or v != v:  # NaN: not logged in that epoch
                    continue
                tips.append([["metric", col], ["epoch", str(e + 1)], ["value", f"{float(v):.4g}"]])
                t.points.append((float(e) + 1, float(v), None, len(tips) - 1, None))
            if t.points:
                traces.append(t)
        if traces:
            html_parts.append(chart(f"curve-{slug(title)}", traces, xlabel="epoch", ylabel=ylabel, title=title, xint=True,
                                    css="curves", width=560, height=320))
    return '<div class="pair">' + "\n".join(html_parts) + "</div>" if html_parts else ""


def _checkpoints(run: Run) -> str:
    listed = {k: v for k, v in (run.record.get("checkpoints") or {}).items() if v}
    on_disk = sorted((run.dir / "checkpoints").glob("*.ckpt")) if (run.dir / "checkpoints").is_dir() else []
    rows = []
    for name, path in listed.items():
        p = Path(path)
        size = f"{p.stat().st_size / 2**20:.1f} MiB" if p.is_file() else "not found here"
        rows.append(f"<tr>{cell(name)}{cell(str(path))}{cell(size)}</tr>")
    for p in on_disk:
        if str(p) not in listed.values() and str(p.resolve()) not in {str(Path(v).resolve()) for v in listed.values()}:
            rows.append(f"<tr>{cell('on disk')}{cell(str(p))}{cell(f'{p.stat().st_size / 2**20:.1f} MiB')}</tr>")
    if not rows:
        return "<p>None recorded.</p>"
    return ("<p>Paths as the record names them (a checkpoint stays with its run; "
            "<code>python -m spatialprobe.evaluate ckpt=PATH</code> tests it).</p>"
            + table(["checkpoint", "path", "size"], rows, cls="plain"))


def wandb_url(rec: dict) -> str | None:
    """The W&B page of an online run: from the record's ``wandb_url``, else its id with the logger's entity and
    project (W&B's URL scheme); None for offline runs or without an entity."""
    if rec.get("wandb_url"):
        return str(rec["wandb_url"])
    logger = (rec.get("config") or {}).get("logger") or {}
    if rec.get("wandb_id") and rec.get("wandb_mode") == "online" and logger.get("entity") and logger.get("project"):
        return f"https://wandb.ai/{logger['entity']}/{logger['project']}/runs/{rec['wandb_id']}"
    return None


def _wandb(rec: dict) -> str:
    if not rec.get("wandb_id"):
        return "<p>Not logged to W&amp;B (<code>logger=wandb</code> logs a run there).</p>"
    url = wandb_url(rec)
    parts = [f"<p>Run <code>{esc(rec['wandb_id'])}</code> ({esc(rec.get('wandb_mode'))})"]
    if url and re.match(r"^https://", url):
        parts.append(f': <a href="{esc(url)}" rel="noopener">{esc(url)}</a>')
    elif rec.get("wandb_dir"):
        parts.append(f"; its data stays in <code>{esc(rec['wandb_dir'])}</code>; upload it with "
                     f"<code>wandb sync {esc(rec['wandb_dir'])}</code>")
    parts.append(".</p>")
    if rec.get("wandb_fallback"):
        parts.append(f"<p class=\"warn\">{esc(rec['wandb_fallback'])}</p>")
    return "".join(parts)


def _config(run: Run, exp: Experiment) -> str:
    config = run.record.get("config") or {}
    leaves = flatten(config)
    base = exp.baseline
    if base is None:
        differ, note = set(), "The experiment has no K=0 run to compare with."
    elif base is run:
        differ, note = set(), "This is the experiment's baseline run (K=0)."
    else:
        differ = set(config_diff(base.record.get("config") or {}, config))
        note = (f'Keys whose value differs from the experiment\'s baseline run <a href="{esc(base.slug)}.html">'
                f"{esc(base.name)}</a> are marked ({len(differ)}; keys that do not change a result are left aside).")
    base_leaves = flatten(base.record.get("config") or {}) if base is not None else {}
    rows = []
    for key in sorted(leaves):
        marked = key in differ or any(key.startswith(d + ".") for d in differ)
        old = base_leaves.get(key, "(absent)")
        was = f"baseline: {'null' if old is None else value_text(old)}" if marked else ""
        value = leaves[key]
        rows.append(f'<tr class="{"differs" if marked else ""}"><th scope="row">{esc(key)}</th>'
                    f"{cell(value, 'null' if value is None else None)}{cell(was)}</tr>")
    toggle = ('<p><label><input type="checkbox" class="only-differs"> only the marked keys</label></p>'
              if differ else "")
    return (f"<p>{note}</p>{toggle}<div class=\"scroll\"><table class=\"config\"><thead><tr><th>key</th><th>value</th>"
            f"<th></th></tr></thead><tbody>{''.join(rows)}</tbody></table></div>")
