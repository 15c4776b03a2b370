"""The suite's own guard: `make test` runs in pytest-xdist workers, so a test that crashes its process
(a segfault in a native kernel, as oneDNN did on AVX2 CPUs) is reported as one failure and the others'
results and the closing summary line still appear; and every test has a time limit (pytest-timeout), so a
test that hangs costs its worker, not the suite."""

from __future__ import annotations

import re
import subprocess
import sys
import time

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


def test_every_test_has_a_time_limit(request):
    """pyproject.toml's default is in effect (pytest-timeout loaded, 600 s, the thread method, which also stops a
    test hung inside a native kernel), and the SLURM tests, which wait for a cluster's queue, have their own."""
    import test_slurm

    assert request.config.pluginmanager.hasplugin("timeout")
    assert float(request.config.getini("timeout")) == 600 and request.config.getini("timeout_method") == "thread"
    assert any(m.name == "timeout" and m.args == (1800,) for m in test_slurm.pytestmark)


def test_a_hanging_test_is_stopped_and_the_suite_goes_on(tmp_path):
    """With this repository's pytest configuration (and its limit lowered to 3 s), a test that would sleep ten
    minutes is stopped within seconds, counted as one failure, and the next test still runs."""
    (tmp_path / "test_hang.py").write_text("import time\ndef test_hang():\n    time.sleep(600)\n"
                                           "def test_after():\n    pass\n")
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "2", "-p", "no:cacheprovider",
                        "-c", str(REPO / "pyproject.toml"), "--rootdir", str(tmp_path), "-o", "timeout=3",
                        str(tmp_path / "test_hang.py")], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert p.returncode == 1, p.stdout[-2000:]
    assert "crashed while running 'test_hang.py::test_hang'" in p.stdout
    assert re.search(r"^1 failed, 1 passed", p.stdout.strip().splitlines()[-1]), p.stdout[-1000:]
    assert time.monotonic() - t0 < 200  # stopped by the limit, not after its ten minutes
