"""The results site (python -m spatialprobe.report) without a browser: what the pages hold, the status words,
the papers' numbers against ours, escaping, links, the command line. tests/test_site_browser.py opens the pages
in headless Chromium."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from conftest import cli
from fakeruns import evidence_rows, site_sweeps, synthetic_sweep
from spatialprobe.report import papers
from spatialprobe.report.site import build_site, json_script, scale_reasons, slug, wandb_url
from spatialprobe.run.records import write_json_atomic

XSS = "<script>alert(1)</script>"


class Page(HTMLParser):
    """Links, scripts, element ids, and the text and attributes of a page, as a browser parses them."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.links, self.scripts, self.ids, self.tags, self.data = [], [], set(), [], []
        self._in_script = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if "id" in a:
            self.ids.add(a["id"])
        for key in ("href", "src", "data-href"):
            if a.get(key):
                self.links.append((tag, key, a[key]))
        if tag == "script":
            self._in_script = a
            self.scripts.append([a, ""])

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = None

    def handle_data(self, data):
        if self._in_script is not None:
            self.scripts[-1][1] += data
        else:
            self.data.append(data)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.data).split())


def pages(site: Path) -> list[Path]:
    return sorted(site.rglob("*.html"))


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    sweeps = site_sweeps(root)
    out = root / "site"
    build_site([sweeps], out, now="2026-12-24 12:00")
    return out


def experiment_page(site: Path, name: str) -> str:
    return (site / "e" / name / "index.html").read_text()


def test_the_index_lists_every_experiment_with_its_status_and_the_papers_numbers(site):
    index = Page((site / "index.html").read_text())
    assert "cpu_cifar10_paper_a" in index.text and "demo_cifar10_kcurve" in index.text
    rows = re.findall(r"<tr><td data-v=\"(\w+)\"><a href=\"e/(\w+)/index.html\">.*?</tr>", (site / "index.html").read_text())
    assert [r[0] for r in rows] == ["cpu_cifar10_paper_a", "demo_cifar10_kcurve"]
    html = (site / "index.html").read_text()
    assert html.count('class="badge cpu"') == 2  # both smaller than the papers: CPU-scale
    assert "dataset.subset=10240" in index.text and "model.width=0.25" in index.text and "recipe=cpu" in index.text
    # S1 Table 2 (left) against the evidence's evaluations: shuffle -> shuffle 73.67 vs 64.35 over 20 passes
    assert re.search(r"73\.67 ± 1\.03</td><td [^>]*>64\.35 ± 0\.28 \(20 passes\) \(smaller\)</td>"
                     r"<td [^>]*>-9\.32</td>", html)
    assert re.search(r"1\.06 ± 1\.15</td><td [^>]*>29\.35 ± 2\.39 \(20 passes\)", html)  # clean -> shuffle
    # the paper's items with no run here are listed as configured, with their experiments
    assert "vgg16_imagenet_kcurve" in index.text and "configured" in index.text
    assert "arXiv:2002.01827" in index.text and "built 2026-12-24 12:00" in index.text


def test_a_smaller_version_is_compared_on_its_own_terms(site):
    html = (site / "index.html").read_text()
    # the CPU-scale VGG-16 is never compared with ResNet-50's numbers, nor on parameter counts
    assert "ResNet-50 baseline" not in html and "34.02M</td><td data-v=\"\"></td>" not in html
    assert not re.search(r"34\.02M</td><td data-v=\"[\d.]+\"", html)


def test_the_experiment_page_has_the_kcurve_tables_matrix_pareto_and_figures(site):
    html = experiment_page(site, "demo_cifar10_kcurve")
    page = Page(html)
    traces = [a for tag, a in page.tags if tag == "g" and "trace" in a.get("class", "").split()]
    kcurve = html[html.index('<svg class="plot kcurve"'):]
    kcurve = kcurve[:kcurve.index("</svg>")]
    methods = re.findall(r'<g class="trace c\d" data-trace="[^"]+" data-name="[^"]+" data-method="(\w+)"', kcurve)
    assert sorted(methods) == ["channel_shuffle", "spatial_shuffle"]  # one trace per method, the baseline apart
    assert '<g class="baseline' in kcurve and traces
    tips = json.loads(page.scripts[0][1])
    point = re.search(r'data-method="spatial_shuffle".*?<circle class="pt"[^>]*data-tip="(\d+)"', kcurve, re.S)
    tip = dict(tips[int(point.group(1))])
    assert tip["K"].startswith("3 (23% of the units)") and tip["params"] == "1,024,282" and tip["FLOPs"] == "40,014,848"
    assert re.fullmatch(r"\d+\.\d\d ± \d\.\d\d", tip["test_top1, mean over 3 seed(s)"])
    assert "vgg16-cifar10-spatial_shuffle-k3-s0" in tip["runs"]
    assert 'id="points"' in html and 'id="pareto"' in html and "Pareto front" in html
    assert 'id="runs"' in html and html.count('href="r/') >= 15
    assert '<img src="fig/kcurve_vgg16_cifar10.png"' in html and (site / "e/demo_cifar10_kcurve/fig/kcurve_vgg16_cifar10.png").is_file()
    evidence = experiment_page(site, "cpu_cifar10_paper_a")
    assert 'id="matrix"' in evidence and "64.35 ± 0.28" in evidence  # the train/test matrix from the eval records
    assert sorted(re.findall(r'data-method="(\w+)"', evidence[evidence.index('class="plot kcurve"'):])) == sorted(
        ["channel_shuffle", "conv1x1", "gap_fc", "spatial_shuffle"])


def test_a_table_cell_holds_the_records_value(site):
    for row in evidence_rows():
        if row["record"] != "train":
            continue
        html = experiment_page(site, "cpu_cifar10_paper_a")
        name = row["name"]
        line = re.search(rf'<tr><td data-v="{re.escape(name)}"><a href="r/[^"]+">.*?</tr>', html).group(0)
        cells = re.findall(r"<td[^>]*>(.*?)</td>", line)
        assert cells[6] == str(row["test_top1"]), (name, cells)  # as the record holds it: 69.05, not 69.0500


def test_the_run_page_has_its_record_curves_checkpoints_and_config_marked(site):
    run = next((site / "e" / "demo_cifar10_kcurve" / "r").glob("k-3-method-spatial_shuffle-seed-1-*.html"))
    html = run.read_text()
    page = Page(html)
    assert page.tags[0][0] == "html" and "vgg16-cifar10-spatial_shuffle-k3-s1" in page.text
    assert "train_top1" in html and "val_top1" in html and 'class="plot curves"' in html
    assert "checkpoints/last.ckpt" in html and "checkpoints/best.ckpt" in html
    differs = re.findall(r'<tr class="differs"><th scope="row">([^<]+)</th>', html)
    assert set(differs) == {"k", "method.name", "seed"}, differs  # name and experiment_name change no result
    assert "baseline: 0" in html and "baseline: none" in html
    assert re.search(r'<tr class=""><th scope="row">dataset.subset</th><td data-v="10240.0">10240</td>', html)
    assert "Not logged to W&amp;B" in html
    base = next((site / "e" / "demo_cifar10_kcurve" / "r").glob("k-0-method-none-seed-0-*.html")).read_text()
    assert "This is the experiment's baseline run" in base and 'class="differs"' not in base


def test_every_link_and_image_resolves_inside_the_site_and_nothing_is_fetched_from_a_network(site):
    checked = 0
    for path in pages(site):
        page = Page(path.read_text())
        for tag, key, link in page.links:
            parts = urlsplit(link)
            if parts.scheme in ("http", "https"):
                assert tag == "a" and key == "href", f"{path}: {tag} {key}={link} would be fetched from a network"
                continue
            assert not parts.scheme and not link.startswith("/"), f"{path}: {link} is not relative"
            target = (path.parent / unquote(parts.path)).resolve() if parts.path else path
            assert target.is_file() and site.resolve() in target.parents, f"{path}: {link} -> {target}"
            if parts.fragment:
                assert parts.fragment in Page(target.read_text()).ids, f"{path}: {link}: no #{parts.fragment}"
            checked += 1
        assert [a.get("src") for a, _ in page.scripts if a.get("src")] == [
            "../" * (len(path.relative_to(site).parts) - 1) + "assets/site.js"]
        assert "Content-Security-Policy" in path.read_text()
    assert checked > 200


def fake_run(run_dir: Path, **fields) -> dict:
    rows = [r for r in evidence_rows() if r["record"] == "train"]
    from fakeruns import unflatten

    config = unflatten(rows[0])
    config.update(fields.pop("config", {}))
    rec = {"status": "complete", "reason": None, "model": "vgg16", "dataset": "cifar10", "method": "none", "k": 0,
           "seed": 0, "params": 1000, "flops": 10000, "units": 13, "test_top1": 50.0, **fields, "config": config}
    write_json_atomic(run_dir / "result.json", rec)
    return rec


def test_everything_from_a_record_is_escaped(tmp_path):
    sweep = tmp_path / "sweeps" / "x"
    fake_run(sweep / "k=0", name=XSS, reason='<img src=x onerror="alert(2)">', status="failed", test_top1=None,
             config={"experiment_name": "</script><script>alert(3)</script>", "name": XSS,
                     "note": "\u2028</script>'\"&"})
    fake_run(sweep / XSS.replace("/", "_"), name="ok", k=0, config={"experiment_name": "</script><script>alert(3)</script>"})
    out = tmp_path / "site"
    build_site([tmp_path / "sweeps"], out)
    texts = {p: p.read_text() for p in pages(out)}
    assert len(texts) == 4  # index, one experiment, two runs
    for path, text in texts.items():
        page = Page(text)
        assert len(page.scripts) == 2, path  # the page's JSON and site.js, nothing a record brought
        assert page.scripts[0][0].get("type") == "application/json"
        json.loads(page.scripts[0][1])  # the JSON survives the HTML parser whole
        assert "<script>alert" not in text and "onerror=\"alert" not in text and "<img src=x" not in text
        assert not [a for _, a in page.tags if any(k.startswith("on") for k in a)], path
    run_page = next(t for p, t in texts.items() if "k_0" in p.name or p.name.startswith("k-0"))
    assert XSS in Page(run_page).text  # shown as text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in run_page
    assert 'onerror="alert(2)"' not in run_page and "onerror=&quot;alert(2)&quot;" in run_page


def test_json_for_a_script_element_cannot_end_it():
    text = json_script({"a": "</script><!--", "b": "\u2028&"})
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == {"a": "</script><!--", "b": "\u2028&"}


def test_slugs_are_safe_and_distinct():
    taken: set[str] = set()
    names = ["k=3,method=spatial_shuffle", XSS, "../../etc", "a b", "a_b", "a b"]
    slugs = [slug(n, taken) for n in names]
    assert len(set(slugs)) == len(slugs)
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", s) and not s.startswith(".") for s in slugs)
    assert slug("demo_cifar10_kcurve") == "demo_cifar10_kcurve"


def full_scale(run_dir: Path, model: str, dataset: str, method: str, k: int, acc: float, params: int) -> None:
    config = {"experiment_name": "vgg16_cifar100_kcurve", "k": k, "seed": 0, "model": {"name": model, "width": 1.0},
              "dataset": {"name": dataset, "subset": None}, "method": {"name": method}, "recipe": {"name": "cifar",
                                                                                              "epochs": 200},
              "trainer": {"max_epochs": 200}}
    write_json_atomic(run_dir / "result.json", {
        "status": "complete", "model": model, "dataset": dataset, "method": method, "k": k, "seed": 0,
        "params": params, "flops": params * 10, "units": 13, "test_top1": acc, "config": config})


def test_status_words_come_from_the_records(tmp_path):
    sweep = tmp_path / "sweeps" / "vgg16_cifar100_kcurve"
    full_scale(sweep / "k=0", "vgg16", "cifar100", "none", 0, 74.0, 34_020_000)
    full_scale(sweep / "k=5,gap", "vgg16", "cifar100", "gap_fc", 5, 73.5, 23_530_000)
    full_scale(sweep / "k=2,gap", "vgg16", "cifar100", "gap_fc", 2, 74.3, 29_820_000)
    site = build_site([tmp_path / "sweeps"], tmp_path / "site")
    (exp,) = site.experiments
    assert exp.status == "reproduced", exp.why
    compared = {(c.entry.row, c.entry.column): c for c in exp.comparisons if c.ours is not None}
    assert compared[("VGG-16 GAP+FC K=5", "top-1")].diff == pytest.approx(73.5 - 73.21)
    assert compared[("VGG-16 baseline", "parameters (M)")].ours == pytest.approx(34.02)
    full_scale(sweep / "k=5,gap", "vgg16", "cifar100", "gap_fc", 5, 70.0, 23_530_000)
    (exp,) = build_site([tmp_path / "sweeps"], tmp_path / "site").experiments
    assert exp.status == "paper-scale" and "differs from the paper by up to 3.21" in exp.why
    full_scale(sweep / "k=0", "vgg16", "cifar100", "none", 0, 74.0, 34_020_000)
    rec = json.loads((sweep / "k=0" / "result.json").read_text())
    for d in ("k=0", "k=5,gap", "k=2,gap"):
        write_json_atomic(sweep / d / "result.json", {**rec, "status": "failed", "reason": "boom"})
    (exp,) = build_site([tmp_path / "sweeps"], tmp_path / "site").experiments
    assert exp.status == "configured" and exp.why == "no complete run (3 failed)"


def test_scale_reasons():
    assert scale_reasons({"dataset": {"subset": None}, "model": {"width": 1.0}, "recipe": {"name": "cifar"}}) == []
    assert scale_reasons({"dataset": {"subset": 512}, "model": {"width": 0.25}, "recipe": {"name": "cpu", "epochs": 12},
                          "trainer": {"max_epochs": 1, "limit_train_batches": 0.1}}) == [
        "dataset.subset=512", "model.width=0.25", "recipe=cpu", "trainer.limit_train_batches=0.1",
        "trainer.max_epochs=1 < recipe.epochs=12"]


def test_wandb_runs_are_linked(tmp_path):
    online = {"wandb_id": "abc123", "wandb_mode": "online",
              "config": {"logger": {"entity": "me", "project": "spatialprobe"}}}
    assert wandb_url(online) == "https://wandb.ai/me/spatialprobe/runs/abc123"
    assert wandb_url({**online, "wandb_mode": "offline"}) is None
    sweep = tmp_path / "sweeps" / "w"
    fake_run(sweep / "k=0", wandb_id="abc123", wandb_mode="online", config={"logger": {"name": "wandb", "entity": "me",
                                                                                         "project": "spatialprobe"}})
    fake_run(sweep / "k=1", k=1, method="spatial_shuffle", wandb_id="def456", wandb_mode="offline",
             wandb_dir="/runs/w/k=1/wandb/offline-run-1")
    build_site([tmp_path / "sweeps"], tmp_path / "site")
    online_page, offline_page = (next((tmp_path / "site").rglob(f"k-{k}-*.html")).read_text() for k in (0, 1))
    assert '<a href="https://wandb.ai/me/spatialprobe/runs/abc123" rel="noopener">' in online_page
    assert "wandb sync /runs/w/k=1/wandb/offline-run-1" in offline_page


def test_the_command_line_builds_and_rebuilds_and_says_what_is_wrong_in_one_line(tmp_path):
    sweeps = tmp_path / "sweeps"
    synthetic_sweep(sweeps, "demo_cifar10_kcurve", ks=(3,), metrics=False)
    out = tmp_path / "site"
    p = cli("spatialprobe.report.__main__", [str(sweeps), "-o", str(out)])
    assert p.returncode == 0, p.stderr
    assert "demo_cifar10_kcurve: CPU-scale" in p.stdout and p.stdout.strip().endswith(f"site: {(out / 'index.html').resolve()}")
    stale = out / "e" / "gone" / "index.html"
    stale.parent.mkdir()
    stale.write_text("old")
    assert cli("spatialprobe.report.__main__", [str(sweeps), "-o", str(out)]).returncode == 0
    assert not stale.exists() and (out / "index.html").is_file()  # a rebuild replaces the old site
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    for args, needle in (([], "give the directories of the runs"),
                         ([str(tmp_path / "nope")], "no such directory"),
                         ([str(tmp_path / "mine")], "no result records"),
                         ([str(sweeps), "-o", str(tmp_path / "mine")], "not a site built by this command"),
                         ([str(sweeps), "--tolerance", "-1"], "--tolerance=-1.0 is invalid")):
        p = cli("spatialprobe.report.__main__", args)
        assert p.returncode == 2 and p.stderr.startswith("spatialprobe: error: ") and needle in p.stderr, p.stderr
        assert len(p.stderr.strip().splitlines()) == 1
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


def test_the_papers_numbers_appear_on_the_pages_of_their_experiments(site):
    html = experiment_page(site, "demo_cifar10_kcurve")
    for e in papers.entries():
        if "demo_cifar10_kcurve" in e.cpu_scale:
            assert f">{e.text()}</td>" in html, e.key


def pandas_epoch_metrics(run_dir: Path):
    """The reading of metrics.csv that collect.epoch_metrics replaced (pandas), as the reference it must equal."""
    import pandas as pd

    files = sorted(Path(run_dir).glob("logs/attempt-*/metrics.csv"), key=lambda f: int(f.parent.name.split("-")[-1]))
    df = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
    df = df[df["epoch"].notna()].drop(columns=[c for c in ("step", "train_loss_step") if c in df.columns])
    epochs = df.groupby("epoch", sort=True).last().reset_index().dropna(axis=1, how="all")
    epochs = epochs.dropna(subset=[c for c in epochs.columns if c != "epoch"], how="all")
    epochs["epoch"] = epochs["epoch"].astype(int)
    return epochs.reset_index(drop=True)


def test_epoch_metrics_reads_what_pandas_read(tmp_path):
    import random

    import pandas as pd

    from fakeruns import write_metrics
    from spatialprobe.report.collect import epoch_metrics

    run = tmp_path / "run"
    write_metrics(run, 12, 66.0, random.Random(1))
    second = run / "logs" / "attempt-2" / "metrics.csv"  # a resumed attempt: it wins where the two overlap
    second.parent.mkdir(parents=True)
    second.write_text("epoch,step,val_top1,extra_metric\n10,880,70.5,\n11,960,,3.0\n,961,,\n")
    pd.testing.assert_frame_equal(epoch_metrics(run), pandas_epoch_metrics(run), check_dtype=False)
    assert epoch_metrics(run)["val_top1"].iloc[10] == 70.5
    expected = epoch_metrics(run)
    (run / "logs" / "attempt-3").mkdir()
    (run / "logs" / "attempt-3" / "metrics.csv").write_text("epoch,step\n1,2,3,4\n")  # torn: left out
    pd.testing.assert_frame_equal(epoch_metrics(run), expected)


def paper_run(sweep: Path, experiment: str, model: str, dataset: str, method: str, k: int, acc: float, *,
              seed: int = 0, unit: int | None = None, **config) -> None:
    cfg = {"experiment_name": experiment, "k": k, "seed": seed, "model": {"name": model, "width": 1.0},
           "dataset": {"name": dataset, "subset": None, "augment": True}, "method": {"name": method, "unit": unit},
           "recipe": {"name": "cifar", "epochs": 200}, "trainer": {"max_epochs": 200}}
    for key, value in config.items():
        section, leaf = key.split("__")
        cfg[section][leaf] = value
    name = f"k={k},method={method},seed={seed}" + (f",unit={unit}" if unit is not None else "") + "".join(
        f",{k}={v}" for k, v in config.items())
    write_json_atomic(sweep / name / "result.json", {
        "status": "complete", "model": model, "dataset": dataset, "method": method, "k": k, "seed": seed,
        "params": 34_000_000, "flops": 10**9, "units": 13, "test_top1": acc, "config": cfg})


def test_differences_best_models_paper_points_and_single_unit_curves(tmp_path):
    exp = "vgg16_cifar100_spatial_vs_channel"
    sweep = tmp_path / "sweeps" / exp
    for seed, base in ((0, 74.2), (1, 73.8)):  # the baseline: 74.0 over two seeds
        paper_run(sweep, exp, "vgg16", "cifar100", "none", 0, base, seed=seed)
    for method, k, acc in (("spatial_shuffle", 7, 71.5), ("spatial_shuffle", 10, 57.0), ("channel_shuffle", 10, 5.0),
                           ("channel_shuffle", 1, 71.4)):
        paper_run(sweep, exp, "vgg16", "cifar100", method, k, acc)
    for unit, acc in ((0, 60.0), (12, 73.9)):  # single units (S0 Fig. 6): a chart of their own
        paper_run(sweep, exp, "vgg16", "cifar100", "spatial_shuffle", 0, acc, unit=unit)
    aug = tmp_path / "sweeps" / "resnet50_cifar100_augmentation"
    for augment, accs in ((True, (79.0, 79.5, 78.0)), (False, (67.0, 68.2, 66.0))):
        paper_run(aug, "resnet50_cifar100_augmentation", "resnet50", "cifar100", "none", 0, 78.0 if augment else 65.7,
                  dataset__augment=augment)
        for k, acc in zip((1, 2, 3), accs, strict=True):
            paper_run(aug, "resnet50_cifar100_augmentation", "resnet50", "cifar100", "gap_fc", k, acc,
                      dataset__augment=augment)
    site = build_site([tmp_path / "sweeps"], tmp_path / "site")
    exps = {e.name: e for e in site.experiments}
    ours = {(c.entry.paper, c.entry.item, c.entry.row, c.entry.column): c for e in exps.values() for c in e.comparisons}
    delta = ours[("S0", "Fig. 4", "spatial shuffle", "54% (K=7)")]
    assert delta.ours == pytest.approx(71.5 - 74.0) and delta.diff == pytest.approx(-2.5 + 2.66)
    assert ours[("S1", "Fig. 10", "channel shuffle", "K=1")].ours == pytest.approx(71.4)
    base = ours[("S1", "Fig. 10", "channel shuffle", "baseline")]
    assert base.ours == pytest.approx(74.0) and base.n == 2 and base.over == "2 seeds"
    assert exps[exp].status == "reproduced", exps[exp].why
    best = ours[("S1", "Table 2 (right)", "GAP+FC", "without augmentation")]  # the best K of its own setting
    assert best.ours == pytest.approx(68.2) and [r.row["k"] for r in best.runs] == [2]
    assert ours[("S1", "Table 2 (right)", "GAP+FC", "with augmentation")].ours == pytest.approx(79.5)
    assert ours[("S1", "Table 2 (right)", "baseline", "without augmentation")].ours == pytest.approx(65.7)
    html = (tmp_path / "site" / "e" / exp / "index.html").read_text()
    kcurve = html[html.index('<svg class="plot kcurve"'):]
    kcurve = kcurve[:kcurve.index("</svg>")]
    assert kcurve.count('<path class="pt"') == 4  # the paper's 57.05 and 4.84 at K=10, 71.49 at K=1, 74.10 at K=0
    assert '<svg class="plot unit"' in html and "single units" in html
    unit_chart = html[html.index('<svg class="plot unit"'):]
    assert unit_chart[:unit_chart.index("</svg>")].count('<circle class="pt"') == 2


def test_the_demos_page_of_the_readme_picture(tmp_path):
    from fakeruns import DEMO_2026_12_01, demo_sweep

    demo_sweep(tmp_path / "sweeps")
    (exp,) = build_site([tmp_path / "sweeps"], tmp_path / "site").experiments
    assert exp.status == "CPU-scale" and len(exp.runs) == 5
    assert sorted(r.record["test_top1"] for r in exp.runs) == sorted(DEMO_2026_12_01.values())
    shuffled = next(c for c in exp.comparisons if (c.entry.item, c.entry.row, c.entry.column) == (
        "Table 2 (left)", "shuffle", "shuffle"))
    assert shuffled.ours == 65.0 and shuffled.diff == pytest.approx(65.0 - 73.67)
