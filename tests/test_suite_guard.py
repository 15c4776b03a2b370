"""The suite's own guard: `make test` runs in pytest-xdist workers, so a test that crashes its process
(a segfault in a native kernel, as oneDNN did on AVX2 CPUs) is reported as one failure and the others'
results and the closing summary line still appear."""

from __future__ import annotations

import re
import subprocess
import sys

from conftest import REPO


def test_make_test_runs_in_workers():
    make = (REPO / "Makefile").read_text()
    for target in ("test", "test-slow", "test-all"):
        recipe = re.search(rf"^{target}:.*\n\t(.*)$", make, re.M).group(1)
        assert "-m pytest" in recipe and "-n $(TEST_WORKERS)" in recipe, recipe


def test_a_crashing_test_costs_one_failure_not_the_summary(tmp_path):
    (tmp_path / "test_native_crash.py").write_text(
        "import os, signal\n"
        "def test_before(): pass\n"
        "def test_segfault(): os.kill(os.getpid(), signal.SIGSEGV)\n"
        "def test_after(): pass\n")
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "2", "-p", "no:cacheprovider",
                        str(tmp_path / "test_native_crash.py")], cwd=tmp_path, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 1, p.stdout[-2000:]
    assert "crashed while running 'test_native_crash.py::test_segfault'" in p.stdout
    assert re.search(r"^1 failed, 2 passed", p.stdout.strip().splitlines()[-1]), p.stdout[-1000:]
