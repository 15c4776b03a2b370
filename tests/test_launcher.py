"""hydra/launcher=local: a sliding window of max_parallel slots, each with GPUs of its own."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from spatialprobe import CONF_DIR
from spatialprobe.errors import ConfigError
from spatialprobe.launch.gpus import gpu_slots

# A Hydra app whose jobs record what they see. Job `hold` keeps its slot until job `until` has
# started (or 90 s pass): in a launcher that waits for the slowest job of a chunk, it never would.
# Job `preempt` signals itself on its first attempt, as submitit does before a time limit; job
# `kill` SIGKILLs itself.
APP = """
import json, os, signal, time
from pathlib import Path
import hydra

@hydra.main(version_base="1.3", config_path=".", config_name="app")
def main(cfg):
    out = Path(cfg.out)
    out.mkdir(exist_ok=True)
    attempts = out / f"{cfg.job}.attempts"
    attempts.write_text(str(int(attempts.read_text()) + 1 if attempts.exists() else 1))
    if cfg.job == cfg.kill:
        os.kill(os.getpid(), signal.SIGKILL)  # dies without a result
    if cfg.job == cfg.preempt and attempts.read_text() == "1":
        os.kill(os.getpid(), signal.SIGUSR2)  # as before a time limit: submitit checkpoints, requeues the job
        time.sleep(60)
    (out / f"{cfg.job}.start").write_text(json.dumps({"gpus": os.environ.get("CUDA_VISIBLE_DEVICES"),
                                                       "t": time.time()}))
    saw = None
    if cfg.job == cfg.hold:
        deadline = time.time() + 90
        while not (out / f"{cfg.until}.start").exists() and time.time() < deadline:
            time.sleep(0.05)
        saw = (out / f"{cfg.until}.start").exists()
    (out / f"{cfg.job}.end").write_text(json.dumps({"t": time.time(), "saw": saw}))

if __name__ == "__main__":
    main()
"""


def sweep(tmp_path, env, jobs: int, visible: str, extra: list[str]) -> tuple[subprocess.CompletedProcess, dict]:
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "app.yaml").write_text(textwrap.dedent(f"""
        defaults:
          - override hydra/launcher: local
          - _self_
        hydra:
          searchpath: ["file://{CONF_DIR}"]
          sweep: {{dir: "{tmp_path}/sweep", subdir: "${{hydra.job.num}}"}}
        job: 0
        hold: 0
        until: 2
        preempt: -1
        kill: -1
        out: {tmp_path}/jobs
        """))
    p = subprocess.run([sys.executable, str(tmp_path / "app.py"), "-m", f"job=range(0,{jobs})", *extra],
                       env=dict(env, CUDA_VISIBLE_DEVICES=visible), cwd=tmp_path, capture_output=True, text=True,
                       timeout=600)
    seen = {}
    for j in range(jobs):
        if (tmp_path / "jobs" / f"{j}.end").is_file():
            start = json.loads((tmp_path / "jobs" / f"{j}.start").read_text())
            end = json.loads((tmp_path / "jobs" / f"{j}.end").read_text())
            seen[j] = {"gpus": start["gpus"], "start": start["t"], "end": end["t"], "saw": end["saw"],
                       "attempts": int((tmp_path / "jobs" / f"{j}.attempts").read_text())}
    return p, seen


def test_sliding_window_with_a_gpu_of_its_own_per_slot(tmp_path, env):
    """4 jobs, 2 slots, 1 GPU each, fake ids 7,3,5: job 0 runs until job 2 starts, so job 2 must start
    in the slot job 1 frees while job 0 still runs; every job sees only its slot's GPU, also job 3
    after submitit requeued it."""
    p, seen = sweep(tmp_path, env, 4, "7,3,5", ["hydra.launcher.max_parallel=2", "hydra.launcher.gpus_per_node=1",
                                                "preempt=3"])
    assert p.returncode == 0, p.stderr[-3000:]
    assert sorted(seen) == [0, 1, 2, 3]
    assert seen[0]["saw"] is True and seen[2]["start"] < seen[0]["end"]  # no waiting for the slowest
    assert seen[0]["gpus"] == "7" and seen[1]["gpus"] == "3" and seen[2]["gpus"] == "3"  # the slot job 1 freed
    assert {s["gpus"] for s in seen.values()} <= {"7", "3"}  # "5" belongs to no slot
    for a in seen:
        for b in seen:
            overlap = a < b and seen[a]["start"] < seen[b]["end"] and seen[b]["start"] < seen[a]["end"]
            assert not (overlap and seen[a]["gpus"] == seen[b]["gpus"]), (a, b, seen)
    assert [s["attempts"] for s in seen.values()] == [1, 1, 1, 2]  # requeued once, then complete
    assert "warning" not in p.stderr


def test_gpus_are_dealt_to_slots_in_order():
    assert gpu_slots(["7", "3", "5", "9"], 2, 2) == [["7", "3"], ["5", "9"]]
    assert gpu_slots(["0", "1", "2", "3"], 3, 1) == [["0"], ["1"], ["2"]]
    assert gpu_slots(["0", "1", "2"], 2, 2) == [["0", "1"]]  # fewer GPUs than slots x g: fewer slots
    assert gpu_slots([], 3, 0) == [[], [], []]  # gpus_per_node=0: the jobs see no GPU
    with pytest.raises(ConfigError, match=r"hydra.launcher.gpus_per_node=2 is invalid: only 1 GPU\(s\) visible"):
        gpu_slots(["4"], 2, 2)


def test_a_sweep_asking_more_gpus_per_job_than_visible_is_refused_before_it_starts(monkeypatch):
    from hydra import compose, initialize_config_dir

    from spatialprobe.launch.sweep import check_launcher

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2")
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=local", "hydra.launcher.gpus_per_node=2"],
                      return_hydra_config=True)
        ok = compose("train", overrides=["hydra/launcher=local", "hydra.launcher.gpus_per_node=1"],
                     return_hydra_config=True)
    with pytest.raises(ConfigError, match=r"^hydra.launcher.gpus_per_node=2 is invalid: only 1 GPU\(s\) visible "
                                          r"\(CUDA_VISIBLE_DEVICES: 2\) \(valid: 0..1\)$"):
        check_launcher(cfg)
    check_launcher(ok)


@pytest.mark.slow
def test_fewer_gpus_than_the_window_needs_runs_fewer_jobs_at_a_time(tmp_path, env):
    """3 visible GPUs for 2 slots x 2: one warning line, then one job at a time on GPUs 7,3; a job
    that dies without a result is named in one line and the others still run."""
    p, seen = sweep(tmp_path, env, 3, "7,3,5", ["hydra.launcher.max_parallel=2", "hydra.launcher.gpus_per_node=2",
                                                "hold=-1", "kill=1"])
    assert p.returncode == 0, p.stderr[-3000:]
    warning = [ln for ln in p.stderr.splitlines() if "warning" in ln]
    assert warning == ["spatialprobe: warning: hydra/launcher=local: max_parallel=2 jobs x gpus_per_node=2 need 4 "
                       "GPUs, 3 GPU(s) visible (CUDA_VISIBLE_DEVICES: 7,3,5): running 1 job(s) at a time"]
    lost = [ln for ln in p.stderr.splitlines() if "without a result" in ln]
    assert len(lost) == 1 and lost[0].startswith("spatialprobe: error: sweep job #1 (job=1 hold=-1 kill=1) ended without a result")
    assert "has not produced any output" in lost[0]
    assert sorted(seen) == [0, 2] and [seen[j]["gpus"] for j in (0, 2)] == ["7,3", "7,3"]
    assert seen[2]["start"] >= seen[0]["end"]
