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


def test_the_table_goes_to_benchmarks_results_gpu_md_unless_out_says_otherwise(tmp_path, monkeypatch, capsys):
    """docs/speed.md: `make gpu-check` writes the table it prints to benchmarks/results-gpu.md (--out FILE
    elsewhere, --out '' nowhere); --only picks sections and an unknown one is one line, exit 2."""
    make = (REPO / "Makefile").read_text()
    assert "\t$(PY) benchmarks/gpu_check.py $(ARGS)" in make and gpu_check.HERE == REPO / "benchmarks"
    monkeypatch.setattr(gpu_check, "HERE", tmp_path)  # the default path, without writing into the checkout
    assert gpu_check.main(["--device", "cpu", "--tiny", "--only", "loader"]) == 0
    printed = capsys.readouterr().out
    written = (tmp_path / "results-gpu.md").read_text()
    assert written.startswith("# make gpu-check\n\n") and written.removeprefix("# make gpu-check\n\n") in printed
    assert "| loader |" in written and "| throughput |" not in written and "| cli |" not in written
    (tmp_path / "results-gpu.md").unlink()
    assert gpu_check.main(["--device", "cpu", "--tiny", "--only", "loader", "--out", ""]) == 0
    assert not list(tmp_path.iterdir())
    with pytest.raises(SystemExit) as exit_:
        gpu_check.main(["--only", "loader,warp"])
    assert exit_.value.code == 2 and "unknown section warp (valid: throughput, loader, shuffle, cli)" in \
        capsys.readouterr().err


def test_flags_set_the_sizes_the_compile_rows_and_the_peak(monkeypatch):
    """--quick: 20 timed steps instead of 50; --skip-compile (and --tiny): no torch.compile rows;
    --peak-tflops N or $SPATIALPROBE_PEAK_TFLOPS: the peak MFU is computed against (MFU = 3 x forward FLOPs x
    images/s / peak)."""
    import argparse
    from types import SimpleNamespace

    from spatialprobe.config.gpus import peak_tflops

    def setup(**flags):
        args = dict(device="cpu", tiny=False, quick=False, skip_compile=False, peak_tflops=None)
        return gpu_check.Setup(argparse.Namespace(**{**args, **flags}))

    full, quick = setup(), setup(quick=True)
    assert (full.steps, full.batch, full.compile) == (50, 256, True) and quick.steps == 20
    assert setup(skip_compile=True).compile is False and setup(tiny=True).compile is False
    assert setup(peak_tflops=989.0).peak == 989.0
    assert gpu_check.mfu(SimpleNamespace(peak=100.0), 10**9, 10_000) == "MFU 30.0%"  # 3e13 / 1e14
    assert gpu_check.mfu(SimpleNamespace(peak=None), 10**9, 10_000) == "MFU: peak unknown (--peak-tflops)"
    monkeypatch.delenv("SPATIALPROBE_PEAK_TFLOPS", raising=False)
    assert peak_tflops("NVIDIA H100 80GB HBM3") == 989.0 and peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert peak_tflops("Some Future GPU") is None and peak_tflops("Some Future GPU", override=5.0) == 5.0
    monkeypatch.setenv("SPATIALPROBE_PEAK_TFLOPS", "123")
    assert peak_tflops("NVIDIA H100 80GB HBM3") == 123.0


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
