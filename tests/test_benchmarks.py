"""`make bench ARGS=--quick` runs every benchmark module (tiny sizes) and writes one table."""

from __future__ import annotations

import importlib.util
import re
import sys

import pytest

from conftest import REPO


def load_runner():
    spec = importlib.util.spec_from_file_location("bench_run", REPO / "benchmarks" / "run.py")
    runner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runner)  # puts benchmarks/ on sys.path, as `python benchmarks/run.py` does
    return runner


@pytest.mark.slow  # about a minute of real measurements: CI runs it with make test-slow
def test_make_bench_quick_runs_every_benchmark_module(tmp_path, monkeypatch, capsys):
    make = (REPO / "Makefile").read_text()
    assert re.search(r"^bench:.*\n\t\$\(PY\) benchmarks/run.py \$\(ARGS\)$", make, re.M)  # what `make bench` runs
    runner = load_runner()
    names = runner.available()
    assert {"framework", "loader", "shuffle", "gpu"} <= set(names)
    for name in names:  # every module follows the protocol
        assert callable(getattr(importlib.import_module(f"bench_{name}"), "run", None)), name
    common = sys.modules["common"]
    monkeypatch.setattr(common, "SHARED_CIFAR", tmp_path / "absent.tar.gz")  # synthetic images: no decoding here
    out = tmp_path / "results.md"
    assert runner.main(["--quick", "--repeats", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for name in names:
        assert f"# {name} ..." in printed, name
    text = out.read_text()
    assert text.startswith("# make bench ARGS='--quick'") and ", quick" in text
    assert re.search(r", CPU .+, \d+ cores, ", text) and "avx" in text  # the CPU and its relevant flags
    assert re.search(r"^# CPU: .+ cores", printed, re.M)
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| ") and not line.startswith("| benchmark")]
    assert {row[0].removeprefix("| ") for row in rows} == set(names)  # a row from every module
    for row in rows:
        if "skipped" not in row[1] and "not applicable on this CPU" not in row[1]:  # (no CUDA device / no bf16: one row says so)
            assert re.fullmatch(r"\d+\.\d\dx", row[4]), row  # a ratio measured against its baseline
    assert "synthetic" in text


def test_make_bench_only_runs_the_named_benchmarks_into_benchmarks_results_md(tmp_path, monkeypatch, capsys):
    """docs/speed.md: `make bench ARGS="--only loader,framework"` runs a subset; the table also goes to
    benchmarks/results.md, headed by the options it ran with; an unknown name is one line, exit 2."""
    runner = load_runner()
    assert runner.HERE == REPO / "benchmarks"
    names = runner.available()
    monkeypatch.setattr(runner, "available", lambda: names)
    monkeypatch.setattr(runner, "HERE", tmp_path)  # the default path, without writing into the checkout
    assert runner.main(["--only", "streams,gpu", "--quick", "--repeats", "1"]) == 0
    printed = capsys.readouterr().out
    assert "# streams ..." in printed and "# gpu ..." in printed and "# loader ..." not in printed
    text = (tmp_path / "results.md").read_text()
    assert text.startswith("# make bench ARGS='--only streams,gpu --quick'\n\n")
    rows = [line.split(" | ")[0].removeprefix("| ") for line in text.splitlines()
            if line.startswith("| ") and not line.startswith("| benchmark") and not line.startswith("|---")]
    assert rows and set(rows) == {"streams", "gpu"}
    try:
        runner.main(["--only", "streams,warp"])
    except SystemExit as exit_:
        assert exit_.code == 2
    else:
        raise AssertionError("an unknown benchmark was accepted")
    assert "unknown benchmark warp (valid: " in capsys.readouterr().err
