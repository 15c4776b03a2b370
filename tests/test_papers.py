"""The papers' numbers live once, in src/spatialprobe/report/papers/{s0,s1,p}.yaml: every number the reproduction
ledger (docs/REPRODUCTION.md) quotes from a paper is held here against those files, in both directions, and
sweeps/table2.py --paper prints them from there."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import defaultdict

import pytest

from conftest import REPO
from spatialprobe.report import papers

LEDGER = REPO / "docs" / "REPRODUCTION.md"
DECIMAL = re.compile(r"(?<![\w.])[-−]?\d+\.\d+")
PARAGRAPH = "Paper (VGG-16, CIFAR-100, 200 passes)"


def numbers(text: str) -> list[float]:
    return [float(n.replace("−", "-")) for n in DECIMAL.findall(text)]


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def ledger_places() -> dict[str, str]:
    """Where the ledger quotes a paper, by the key the papers' files name in ``ledger``: the "paper's numbers"
    cell of every row of the ledger's tables (key: the row's label up to its first comma), every row of a table
    headed by a paper (the detection table: key ``S0 <row label>``), the ``P (full scale)`` column, and the
    paragraph that quotes the train/test matrices under the CPU-scale one."""
    places: dict[str, str] = defaultdict(str)
    lines = LEDGER.read_text().splitlines()
    header: list[str] = []
    for i, line in enumerate(lines):
        if not line.startswith("|"):
            header = []
            continue
        if i + 1 < len(lines) and re.match(r"^\|(\s*:?-+:?\s*\|)+\s*$", lines[i + 1]):
            header = cells(line)
            continue
        if re.match(r"^\|(\s*:?-+:?\s*\|)+\s*$", line) or not header:
            continue
        row = cells(line)
        if header[:2] == ["item", "paper's numbers"]:
            places[row[0].split(",")[0]] += " " + row[1]
        elif header[0] in papers.PAPERS:
            places[f"{header[0]} {row[0].split(',')[0]}"] += " " + " ".join(row[1:])
        for j, name in enumerate(header):
            if name.startswith("P (full scale)"):
                places["P (full scale)"] += " " + row[j]
    text = " ".join(lines)
    paragraph = re.search(re.escape(PARAGRAPH) + r"(.*?)\(S0 Table 1\)", text)
    assert paragraph, f"the ledger no longer has the paragraph {PARAGRAPH!r}"
    places[PARAGRAPH] = paragraph.group(1)
    return dict(places)


def test_every_number_the_ledger_quotes_is_in_the_papers_files_and_back():
    places = ledger_places()
    by_place: dict[str, list[papers.Entry]] = defaultdict(list)
    for entry in papers.entries():
        assert entry.ledger, f"{entry.key}: no ledger place named"
        for place in entry.ledger:
            assert place in places, f"{entry.key}: the ledger has no place {place!r} (rows: {sorted(places)})"
            by_place[place].append(entry)
    wrong = []
    for place, text in places.items():
        quoted = numbers(text)
        held = {e.value for e in by_place.get(place, [])} | {e.std for e in by_place.get(place, []) if e.std}
        wrong += [f"{place}: the ledger quotes {n}, which no entry of the papers' files for it holds"
                  for n in quoted if not any(abs(n - v) < 1e-9 for v in held)]
    for entry in papers.entries():  # each number is quoted where its file says
        text = " ".join(places[p] for p in entry.ledger)
        shown = numbers(text) + [float(n) for n in re.findall(r"(?<![\w.-])\d+(?![\w.])", text)]
        for value in [entry.value] + ([entry.std] if entry.std else []):
            if not any(abs(value - n) < 1e-9 for n in shown):
                wrong.append(f"{entry.key} = {value}: not quoted in the ledger at {entry.ledger}")
    assert not wrong, "\n".join(wrong)


def test_the_ledgers_prose_quotes_only_the_papers_numbers():
    """Numbers the ledger's prose attributes to a paper ("the paper's 73.57 vs 73.67", "P's 71.4") are the files'
    numbers, or the difference of two numbers of one item (as the paper's printed decimals round it)."""
    text = LEDGER.read_text()
    quotes = re.findall(r"(?:the paper's|papers:|P's(?: baseline)?)\s+(?:loses\s+)?(-?\d+\.\d+)"
                        r"(?:\s*(?:/|vs)\s*(-?\d+\.\d+))?", text)
    assert len(quotes) >= 6, quotes
    values = {e.value for e in papers.entries()}
    derived = {round(abs(a.value - b.value), d) for group in papers.items().values() for a in group for b in group
               for d in (1, 2)}
    for quote in quotes:
        for n in filter(None, quote):
            assert float(n) in values or float(n) in derived, f"the ledger's prose quotes {n} as a paper's number"


def test_the_files_name_real_experiments_and_papers():
    experiments = {p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml")}
    for entry in papers.entries():
        missing = set(entry.experiments + entry.cpu_scale) - experiments
        assert not missing, f"{entry.key}: no conf/experiment/{sorted(missing)}.yaml"
    meta = papers.papers()
    assert meta["S0"]["url"].endswith("2002.01827") and meta["P"]["url"].endswith("2108.07884")
    assert len(papers.entries()) > 150
    p_table2 = [e for e in papers.entries("P") if e.item == "Table 2"]
    assert len(p_table2) == 21 and {e.select["dataset"] for e in p_table2} == {"cifar100", "cifar10", "imagenet"}
    s1 = {(e.item, e.row, e.column): e for e in papers.entries("S1")}
    cell = s1[("Table 2 (left)", "shuffle", "shuffle")]
    assert cell.value == 73.67 and cell.std == 1.03 and cell.text() == "73.67 ± 1.03"
    assert cell.select == {"model": "vgg16", "dataset": "cifar100", "k": 3, "train": "spatial_shuffle",
                           "test": "spatial_shuffle"}
    params = s1[("Table 4", "ResNet-152 1x1Conv K=19", "parameters (M)")]
    assert params.metric == "params" and params.text() == "45.51M" and params.select["k"] == 19


def test_a_malformed_file_is_refused(tmp_path, monkeypatch):
    (tmp_path / "s0.yaml").write_text("paper: S0\nitems:\n  Fig. 1:\n    rows:\n      a: {b: {value: x}}\n")
    monkeypatch.setattr(papers, "HERE", tmp_path)
    papers.load.cache_clear()
    papers._entries.cache_clear()
    try:
        with pytest.raises(ValueError, match="Fig. 1 / a / b"):
            papers.entries("S0")
    finally:
        papers.load.cache_clear()
        papers._entries.cache_clear()


def test_table2_prints_p_numbers_from_the_papers_file(tmp_path):
    from test_collect_plot import fake_record

    for task, blur, acc in (("classify", False, 60.0), ("augshift", False, 61.0), ("classify", "full", 62.0)):
        rec = fake_record(tmp_path / "s" / f"{task}-{blur}", "none", 0, acc)
        rec.update(dataset="cifar10", model="resnet18", task=task, test_cons8=80.0)
        rec["config"]["model"]["blurpool"] = blur
        rec["config"]["dataset"]["name"] = "cifar10"
        from spatialprobe.run.records import write_json_atomic

        write_json_atomic(tmp_path / "s" / f"{task}-{blur}" / "result.json", rec)
    out = subprocess.run([sys.executable, str(REPO / "sweeps" / "table2.py"), str(tmp_path / "s"), "--paper"],
                         capture_output=True, text=True, check=True, env={"PYTHONPATH": str(REPO / "src")}).stdout
    rows = {cells(line)[0]: cells(line)[1:] for line in out.splitlines() if line.startswith("| ")}
    assert rows["ResNet-18"][:2] == ["60.0", "80.0"] and rows["BlurPool (full)"][0] == "62.0"
    paper = {(e.row, e.column): e.text() for e in papers.entries("P") if e.item == "Table 2"}
    assert rows["P: ResNet-18"] == [paper[("ResNet-18", "CIFAR-10 Top-1")], paper[("ResNet-18", "CIFAR-10 Cons.8")]]
    assert rows["P: +AugShift"] == ["92.1", "94.8"] and rows["P: BlurPool"] == ["92.5", "92.5"]
