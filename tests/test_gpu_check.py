"""make gpu-check: one line and exit 0 without CUDA; its code run on the CPU with tiny sizes."""

from __future__ import annotations

import sys

import pytest
import torch

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import gpu_check  # noqa: E402


def test_without_cuda_one_line_and_exit_0(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "results-gpu.md"
    assert gpu_check.main(["--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == gpu_check.NO_CUDA and not out.exists()


def test_loader_row_on_the_cpu(tmp_path, capsys):
    out = tmp_path / "results-gpu.md"
    assert gpu_check.main(["--device", "cpu", "--tiny", "--only", "loader", "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("# make gpu-check") and "| loader | device-resident loader" in text and "not a measurement" in text


@pytest.mark.slow
def test_every_row_runs_on_the_cpu_in_tiny_mode(tmp_path):  # about 3 minutes on 2 busy cores
    out = tmp_path / "results-gpu.md"
    assert gpu_check.main(["--device", "cpu", "--tiny", "--out", str(out)]) == 0
    rows = [line for line in out.read_text().splitlines() if line.startswith("| ") and "---" not in line][1:]
    sections = [r.split("|")[1].strip() for r in rows]
    assert sections.count("throughput") == 2 and sections.count("loader") == 1 and sections.count("shuffle") == 7
    cli = [r for r in rows if r.startswith("| cli")]
    assert len(cli) == 2 and all("complete in" in r and r.rstrip(" |").endswith("yes") for r in cli), cli
    assert "failed" not in out.read_text()
