"""Speed options: channels_last, torch.compile, precision against the device, DDP process rules."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import torch
from omegaconf import OmegaConf

from conftest import TINY, cli, compose_train
from spatialprobe.errors import ConfigError
from spatialprobe.models import build_model
from spatialprobe.run import speed
from spatialprobe.train import validate


def tiny_model(width: float = 0.0625):
    torch.manual_seed(0)
    return build_model(OmegaConf.create({"arch": "resnet18", "width": width, "stem": "auto"}), 10, 32).eval()


def test_channels_last_model_gives_the_same_outputs():
    model, x = tiny_model(0.125), torch.randn(4, 3, 32, 32)  # every strided 1x1 conv has >= 8 input channels
    ref = model(x)
    assert speed.apply(model, compose_train("model.channels_last=true")) is True
    assert model.body.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(model(x.contiguous(memory_format=torch.channels_last)), ref, atol=1e-5)


def test_a_network_oneDNN_cannot_train_in_channels_last_stays_nchw_on_the_cpu():
    """ResNet-18 at width 1/16: layer2.0.downsample is a strided 1x1 conv with 4 input channels, whose
    channels_last backward pass hangs or crashes in oneDNN on AVX2 CPUs (docs/upstream): kept NCHW, one line."""
    import logging

    model = tiny_model(0.0625)
    assert speed.onednn_unsafe_convs(model) == ["body.layer2.0.downsample.0"]
    lines: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: lines.append(record.getMessage())
    logger = logging.getLogger("spatialprobe")
    state = logger.disabled, logger.level  # an earlier in-process Hydra run may have reconfigured logging
    logger.disabled, logger.level = False, logging.WARNING
    logger.addHandler(handler)
    try:
        assert speed.apply(model, compose_train("model.channels_last=true")) is False
    finally:
        logger.removeHandler(handler)
        logger.disabled, logger.level = state
    assert not model.body.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert len(lines) == 1 and lines[0].startswith("model.channels_last: off") and "layer2.0.downsample.0" in lines[0]
    # on a GPU (cuDNN, not oneDNN) the request stands
    gpu = compose_train("model.channels_last=true")
    gpu.trainer.accelerator = "gpu"
    assert speed.onednn_unsafe_convs(tiny_model(0.125)) == [] and speed.uses_gpu(gpu)


@pytest.mark.timeout(300)
def test_training_the_network_that_crashed_oneDNN_completes_on_this_cpu(tmp_path):
    """The crash of the issue, end to end but in a process of its own (a crash or hang there fails this test
    instead of killing the suite): ResNet-18 at width 1/16, fp32, the training speed options, 6 steps of
    forward and backward. Without the guard of ``speed.apply`` this hangs or segfaults on AVX2 CPUs."""
    script = tmp_path / "train6.py"
    script.write_text("""
import torch
from omegaconf import OmegaConf
from spatialprobe.models import build_model
from spatialprobe.run import speed
cfg = OmegaConf.create({"model": {"channels_last": True, "compile": False}, "trainer": {"accelerator": "cpu"}})
torch.manual_seed(0)
model = build_model(OmegaConf.create({"arch": "resnet18", "width": 0.0625, "stem": "auto"}), 10, 32).train()
fmt = torch.channels_last if speed.apply(model, cfg) else torch.contiguous_format
opt = torch.optim.SGD(model.parameters(), lr=0.01)
for _ in range(6):
    x = torch.randn(16, 3, 32, 32).contiguous(memory_format=fmt)
    torch.nn.functional.cross_entropy(model(x), torch.randint(0, 10, (16,))).backward()
    opt.step()
print("trained")
""")
    p = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=90)
    assert p.returncode == 0 and p.stdout.strip() == "trained", (p.returncode, p.stderr[-2000:])


def eager_compile(monkeypatch) -> list:
    """torch.compile for real, with TorchDynamo's ``eager`` backend instead of inductor's minute of C++; the
    modes it was asked for are listed in the list returned."""
    real_compile = torch.nn.Module.compile
    modes = []

    def compile_eagerly(self, *args, mode=None, **kwargs):
        modes.append(mode)
        return real_compile(self, backend="eager")

    monkeypatch.setattr(torch.nn.Module, "compile", compile_eagerly)
    return modes


def test_compile_is_in_place_and_keeps_parameter_names(monkeypatch):
    """speed.apply really compiles the module it is given (TorchDynamo traces it on the next call; the eager
    backend, not inductor's minute of C++), with the configured mode, in place: same object, same
    parameter names, same outputs; and compiles nothing without model.compile."""
    import torch._dynamo

    modes = eager_compile(monkeypatch)
    x = torch.randn(2, 3, 32, 32)
    plain = tiny_model()
    speed.apply(plain, compose_train())
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    try:
        with torch.no_grad():
            plain(x)
        assert modes == [] and plain._compiled_call_impl is None  # nothing compiled
        assert not torch._dynamo.utils.counters["stats"]["unique_graphs"]
        outputs = []
        for mode in ("max-autotune", "true"):
            model = tiny_model()
            names, ref = list(model.state_dict()), model(x)
            speed.apply(model, compose_train(f"model.compile={mode}"))
            assert model._compiled_call_impl is not None, mode  # nn.Module.compile: this very object is compiled
            with torch.no_grad():
                outputs.append((model(x), ref))
            assert list(model.state_dict()) == names and not any("_orig_mod" in n for n in model.state_dict())
        # TorchDynamo traced the network (the second one, the same code, may reuse the first one's graph)
        assert modes == ["max-autotune", None] and torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1
        assert all(torch.allclose(got, want, atol=1e-5) for got, want in outputs)
    finally:
        torch._dynamo.reset()


@pytest.mark.skipif(not (shutil.which("g++") or shutil.which("clang++")), reason="model.compile needs a C++ compiler")
def test_compiled_training_run_writes_checkpoints_the_plain_network_loads(fake_cifar10, env, tmp_path, monkeypatch):
    """model.compile=true for real (TorchDynamo traces the network; the ``eager`` backend instead of
    inductor's minute of C++ compilation): the run completes, and its checkpoint loads into the
    uncompiled network, which reproduces the recorded test accuracy."""
    import json

    import torch._dynamo

    modes = eager_compile(monkeypatch)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    run_dir = tmp_path / "run"
    p = cli("spatialprobe.train", ["dataset=cifar10", f"dataset.root={fake_cifar10}", *TINY, "model.compile=true",
                                   f"hydra.run.dir={run_dir}"], env, tmp_path)
    try:
        assert p.returncode == 0, p.stderr[-3000:]
        assert modes == [None] and torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1  # it did compile
    finally:
        torch._dynamo.reset()
    rec = json.loads((run_dir / "result.json").read_text())
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert not any("_orig_mod" in k for k in ckpt["state_dict"]) and "model.body.conv1.weight" in ckpt["state_dict"]
    monkeypatch.undo()
    p = cli("spatialprobe.evaluate", [f"ckpt={run_dir / 'checkpoints' / 'last.ckpt'}"], env, tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    assert json.loads(p.stdout.strip().splitlines()[-1])["top1_mean"] == rec["test_top1_final"]


@pytest.mark.slow
def test_compiled_model_matches_eager():  # inductor on the CPU: about a minute of compilation
    model, x = tiny_model(), torch.randn(2, 3, 32, 32)
    ref = model(x)
    speed.apply(model, compose_train("model.compile=true"))
    assert torch.allclose(model(x), ref, atol=1e-4) and "body.conv1.weight" in model.state_dict()


@pytest.mark.parametrize("override,key", [("model.compile=fast", "model.compile"),
                                          ("model.channels_last=maybe", "model.channels_last"),
                                          ("trainer.precision=8-mixed", "trainer.precision"),
                                          ("recipe=imagenet recipe.lr_scale_batch=0", "recipe.lr_scale_batch")])
def test_bad_speed_values(override, key):
    with pytest.raises(ConfigError) as err:
        validate(compose_train(*override.split()))
    assert err.value.key == key


def test_precision_on_the_cpu(monkeypatch):
    from spatialprobe.config import resolvers

    monkeypatch.setattr(resolvers, "cpu_has_bf16", lambda *a: True)  # a CPU with bf16 (the other kind: below)
    assert speed.check_devices(compose_train("trainer.precision=bf16-mixed")) == []
    (warning,) = speed.check_devices(compose_train("trainer.precision=16-mixed"))
    assert "bf16-mixed instead" in warning


def fake_gpu(monkeypatch, bf16: bool, count: int = 1):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: bf16)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (8, 0) if bf16 else (7, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla V100-SXM2-16GB")


def test_bf16_on_a_gpu_without_it_fails_early(monkeypatch):
    fake_gpu(monkeypatch, bf16=False)
    with pytest.raises(ConfigError) as err:
        speed.check_devices(compose_train("trainer=gpu", "trainer.precision=bf16-mixed"))
    assert err.value.key == "trainer.precision" and "Tesla V100" in str(err.value) and "7.0" in str(err.value)
    assert err.value.choices == ["16-mixed", "32-true"]
    assert speed.check_devices(compose_train("trainer=gpu")) == []  # 16-mixed is fine there
    fake_gpu(monkeypatch, bf16=True)
    assert speed.check_devices(compose_train("trainer=gpu", "trainer.precision=bf16-mixed")) == []


def test_gpu_requests_without_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"trainer.accelerator='gpu' is invalid: no CUDA device"):
        speed.check_devices(compose_train("trainer=gpu"))
    fake_gpu(monkeypatch, bf16=True, count=2)
    with pytest.raises(ConfigError, match=r"trainer.devices=4 is invalid: only 2 CUDA devices"):
        speed.check_devices(compose_train("trainer=ddp", "trainer.devices=4"))


def test_ddp_tasks_per_node_must_equal_devices(monkeypatch):
    fake_gpu(monkeypatch, bf16=True, count=4)
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "1")
    with pytest.raises(ConfigError, match=r"trainer.devices=2 is invalid: DDP runs one process per device, but "
                                          r"the SLURM job's SLURM_NTASKS_PER_NODE is 1"):
        speed.check_devices(compose_train("trainer=ddp"))
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "2")
    speed.check_devices(compose_train("trainer=ddp"))
    speed.check_devices(compose_train("trainer=gpu"))  # one device, no DDP: nothing to check
    monkeypatch.setattr(speed, "_launcher_tasks_per_node", lambda: 4)
    with pytest.raises(ConfigError, match=r"hydra.launcher.tasks_per_node is 4"):
        speed.check_devices(compose_train("trainer=ddp"))


@pytest.mark.parametrize("env,zero", [({}, True), ({"LOCAL_RANK": "1"}, False), ({"SLURM_PROCID": "0"}, True),
                                      ({"SLURM_PROCID": "3"}, False), ({"NODE_RANK": "1", "LOCAL_RANK": "0"}, False)])
def test_only_rank_zero_writes_the_record(monkeypatch, env, zero):
    for key in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert speed.is_global_zero() is zero


def test_bf16_on_a_cpu_without_bf16_instructions_is_one_warning_line(monkeypatch):
    from spatialprobe.config import resolvers

    cfg = compose_train("trainer=cpu", "trainer.precision=bf16-mixed")
    monkeypatch.setattr(resolvers, "cpu_has_bf16", lambda *a: False)
    warnings = speed.check_devices(cfg)
    assert len(warnings) == 1 and warnings[0].startswith("trainer.precision=bf16-mixed: this CPU has no bfloat16")
    assert "20x slower" in warnings[0] and "trainer.precision=32-true" in warnings[0]
    monkeypatch.setattr(resolvers, "cpu_has_bf16", lambda *a: True)
    assert speed.check_devices(cfg) == []
    monkeypatch.setattr(resolvers, "cpu_has_bf16", lambda *a: False)
    assert speed.check_devices(compose_train("trainer=cpu", "trainer.precision=32-true")) == []


def test_the_cpu_experiments_prefer_bf16_only_where_the_cpu_has_it(monkeypatch):
    """No experiment pins bf16: trainer=cpu and the CPU-scale experiments resolve to bf16 on a CPU with bf16
    instructions and to fp32 elsewhere, and the record's resolved config says which one ran."""
    import re

    from conftest import REPO
    from spatialprobe.config import resolvers

    for path in sorted((REPO / "conf").rglob("*.yaml")):
        assert not re.search(r"^\s*precision:\s*bf16", path.read_text(), re.M), path
    for has, expected in ((False, "32-true"), (True, "bf16-mixed")):
        monkeypatch.setattr(resolvers, "cpu_has_bf16", lambda *a, has=has: has)
        for experiment in ("cpu_cifar10_paper_a", "resnet18_cifar10_augshift_cpu", "demo_cifar10_kcurve"):
            assert compose_train(f"experiment={experiment}").trainer.precision == expected


def test_a_slurm_job_uses_its_cpus_not_every_core_of_the_node(monkeypatch):
    """Without cgroups torch starts one thread per core of the node; in a job of c CPUs a run uses c threads
    (SLURM_CPUS_PER_TASK), unless OMP_NUM_THREADS says otherwise; outside SLURM nothing changes."""
    saved = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
        torch.set_num_threads(2)
        assert speed.use_the_jobs_cpus() is None and torch.get_num_threads() == 2
        monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
        assert speed.use_the_jobs_cpus() == 1 and torch.get_num_threads() == 1
        torch.set_num_threads(2)
        monkeypatch.setenv("OMP_NUM_THREADS", "2")  # the user's word wins
        assert speed.use_the_jobs_cpus() is None and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(saved)
