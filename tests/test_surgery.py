"""The surgery on every architecture: which units change, how, and what must stay the same."""

from __future__ import annotations

import copy

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from spatialprobe import surgery
from spatialprobe.config.schema import check_method
from spatialprobe.errors import ConfigError
from spatialprobe.methods.base import StochasticOp
from spatialprobe.methods.gap_fc import GlobalAvgPool
from spatialprobe.models import build_model, unit_count
from spatialprobe.run.measure import count_params, receptive_field

ARCH_LIST = ["vgg16_bn", "resnet18", "resnet50", "resnet152", "mobilenet_v2", "squeezenet1_0"]
TINY_WIDTH = {"mobilenet_v2": 0.1}
_CACHE: dict = {}


def base(arch, classes=10, size=32, width=None):
    key = (arch, classes, size, width)
    if key not in _CACHE:
        torch.manual_seed(0)
        w = width if width is not None else TINY_WIDTH.get(arch, 0.0625)
        _CACHE[key] = build_model(OmegaConf.create({"arch": arch, "width": w, "stem": "auto", "fc_width": 32}),
                                  classes, size)
    return copy.deepcopy(_CACHE[key])


def modified(arch, method, k, size=32, classes=10, width=None, **kw):
    m = base(arch, classes, size, width)
    report = surgery.apply(m, OmegaConf.create({"name": method, **kw}), k, size)
    return m, report


# ----------------------------------------------------------------------------- every arch, method, K
@pytest.mark.parametrize("arch", ARCH_LIST)
@pytest.mark.parametrize("method", ["spatial_shuffle", "channel_shuffle", "gap_fc", "conv1x1"])
def test_every_k_builds_runs_forward_and_backward(arch, method):
    n = unit_count(arch)
    x = torch.randn(2, 3, 32, 32)
    for k in range(n + 1):
        m, report = modified(arch, method, k)
        assert report.modified_units == list(range(n - k, n))
        out = m(x)
        assert out.shape == (2, 10), (k, out.shape)  # the network's output shape is kept
        out.square().mean().backward()
        missing = [name for name, p in m.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
        assert not missing, f"k={k}: no gradient for {missing[:3]}"


@pytest.mark.parametrize("arch", ARCH_LIST)
def test_patch_shuffle_and_224px_variants_run(arch):
    from spatialprobe.methods.patch_shuffle import PatchShuffle

    n = unit_count(arch)
    names = base(arch).unit_names()
    for k in (1, n):
        m, report = modified(arch, "patch_shuffle", k, patch_size=2)
        assert report.modified_units == list(range(n - k, n))
        # patch shuffles of size 2 sit in exactly the modified units, and in no other
        where = {unit_of(name, names) for name, mod in m.body.named_modules() if isinstance(mod, PatchShuffle)}
        assert where == set(report.modified_units)
        assert all(mod.patch_size == 2 for mod in m.modules() if isinstance(mod, PatchShuffle))
        out = m(torch.randn(2, 3, 32, 32))
        assert out.shape == (2, 10) and torch.isfinite(out).all()
        out.sum().backward()
        assert all(p.grad is not None for p in m.parameters())
    for method in ("spatial_shuffle", "conv1x1", "gap_fc"):
        m, _ = modified(arch, method, 3, size=224)
        assert m(torch.randn(2, 3, 224, 224)).shape == (2, 10)


# ----------------------------------------------------------------------------- what changes, what stays
def unit_of(name: str, unit_names: list[str]) -> int | None:
    for i, u in enumerate(unit_names):
        if name == u or name.startswith(u + "."):
            return i
    return None


@pytest.mark.parametrize("arch", ARCH_LIST)
@pytest.mark.parametrize("method", ["conv1x1", "spatial_shuffle", "channel_shuffle"])
def test_exactly_the_selected_units_change(arch, method):
    n = unit_count(arch)
    ref = base(arch)
    names = ref.unit_names()
    for k, unit in ((2, None), (0, n // 2)):
        m, report = modified(arch, method, k, unit=unit)
        changed = set(report.modified_units)
        assert changed == ({n // 2} if unit is not None else {n - 2, n - 1})
        new = dict(m.body.named_modules())
        for name, module in ref.body.named_modules():
            i = unit_of(name, names)
            if i is None or i in changed:
                continue
            assert type(new[name]) is type(module), name
            for pn, p in module.named_parameters(recurse=False):
                assert torch.equal(p, getattr(new[name], pn)), f"{name}.{pn} changed"
        for i in range(n):
            same = str(m.body.get_submodule(names[i])) == str(ref.body.get_submodule(names[i]))
            assert same == (i not in changed), f"unit {i} ({names[i]})"


def test_gap_fc_pools_once_and_turns_everything_after_into_fc():
    m, _ = modified("vgg16_bn", "gap_fc", 4)
    names = m.unit_names()
    first = m.body.get_submodule(names[9])
    assert isinstance(first.gap, GlobalAvgPool)
    after = [mod for name, mod in m.body.named_modules() if unit_of(name, names) is not None and unit_of(name, names) >= 9]
    assert not any(isinstance(x, nn.Conv2d | nn.BatchNorm2d | nn.MaxPool2d) for x in after)
    assert sum(isinstance(x, GlobalAvgPool) for x in m.modules()) == 1
    # units 9..12 are features.30, 34, 37, 40: the pools at features.33 and .43 are gone, the 3 before stay
    assert [i for i, x in enumerate(m.body.features) if isinstance(x, nn.MaxPool2d)] == [6, 13, 23]
    r, _ = modified("resnet50", "gap_fc", 2)
    assert isinstance(r.body.layer4[1].gap, GlobalAvgPool) and not any(
        isinstance(x, nn.Conv2d) for x in r.body.layer4[1:].modules())
    assert any(isinstance(x, nn.Conv2d) for x in r.body.layer4[0].modules())


def test_gap_fc_is_deterministic_and_shuffles_are_not():
    x = torch.randn(4, 3, 32, 32)
    g, _ = modified("resnet18", "gap_fc", 3)
    g.eval()
    assert torch.equal(g(x), g(x))
    s, _ = modified("resnet18", "spatial_shuffle", 3)
    s.eval()
    assert not torch.allclose(s(x), s(x))


def test_resnet_shuffle_also_shuffles_the_skip_branch():
    m, _ = modified("resnet18", "spatial_shuffle", 2)
    for block in m.body.layer4:
        assert sum(isinstance(x, StochasticOp) for x in block.modules()) == 3  # conv1, conv2, skip
        assert isinstance(block.downsample, StochasticOp) or isinstance(block.downsample[0], StochasticOp)
    b, _ = modified("resnet50", "spatial_shuffle", 1)
    assert sum(isinstance(x, StochasticOp) for x in b.body.layer4[2].modules()) == 2  # the 3x3 conv, skip
    # functionally: with the main path silenced the block's output is the shuffled skip input
    block = m.body.layer4[1].eval()
    for conv in (block.conv1.conv, block.conv2.conv):
        nn.init.zeros_(conv.weight)
    nn.init.zeros_(block.bn2.bias)
    x = torch.rand(2, block.conv1.conv.in_channels, 4, 4)
    out = block(x)
    assert not torch.allclose(out, torch.relu(x))
    assert torch.allclose(out.flatten(2).sort(2).values, torch.relu(x).flatten(2).sort(2).values)


def test_mobilenet_and_squeezenet_specifics():
    m, _ = modified("mobilenet_v2", "conv1x1", 17)
    for i in range(1, 18):
        assert not any(isinstance(x, nn.Conv2d) and x.groups > 1 for x in m.body.features[i].modules())
    s, _ = modified("squeezenet1_0", "conv1x1", 8)
    assert all(x.kernel_size == (1, 1) for x in s.body.modules() if isinstance(x, nn.Conv2d) and x is not
               s.body.features[0])
    sh, _ = modified("squeezenet1_0", "spatial_shuffle", 1)
    fire = sh.body.get_submodule(sh.unit_names()[-1])
    assert isinstance(fire.squeeze_activation.shuffle, StochasticOp)  # both expand convs see the shuffled map


def test_conv1x1_downsampling_options():
    x = torch.randn(2, 3, 32, 32)
    for kind, pool in (("avgpool", nn.AvgPool2d), ("maxpool", nn.MaxPool2d)):
        m, _ = modified("resnet18", "conv1x1", 2, downsample=kind)
        block = m.body.layer4[0]
        assert isinstance(block.conv1[0], pool) and block.conv1[1].stride == (1, 1)
        assert isinstance(block.downsample[0], pool) and block.downsample[1].stride == (1, 1)
        assert m(x).shape == (2, 10)
    m, _ = modified("resnet18", "conv1x1", 2, downsample="stride")
    assert m.body.layer4[0].conv1.stride == (2, 2) and m.body.layer4[0].conv1.kernel_size == (1, 1)
    assert m.body.layer4[0].downsample[0].stride == (2, 2)
    # the map sizes match the strided 3x3 conv's, odd sizes included (ceil mode)
    for size in (224, 200):
        ref = base("resnet18", size=224)
        mm, _ = modified("resnet18", "conv1x1", 8, size=224)
        xx = torch.randn(1, 3, size, size)
        assert ref.forward_features(xx).shape == mm.forward_features(xx).shape


# ----------------------------------------------------------------------------- parameters and seeds
def spatial_excess(module: nn.Module) -> int:
    """Parameters a kxk conv has beyond its 1x1 version (MobileNetV2's depthwise block: all of it)."""
    return sum((c.kernel_size[0] * c.kernel_size[1] - 1) * c.in_channels // c.groups * c.out_channels
               for c in module.modules() if isinstance(c, nn.Conv2d) and max(c.kernel_size) > 1)


@pytest.mark.parametrize("arch", ["vgg16_bn", "resnet18", "resnet50", "squeezenet1_0"])
def test_conv1x1_removes_exactly_the_spatial_weights(arch):
    ref = base(arch)
    names = ref.unit_names()
    for k in range(unit_count(arch) + 1):
        m, _ = modified(arch, "conv1x1", k)
        saved = sum(spatial_excess(ref.body.get_submodule(names[i])) for i in range(len(names) - k, len(names)))
        assert count_params(m) == count_params(ref) - saved
        if arch != "squeezenet1_0":  # fire modules are FC-equivalent only after pooling too: same count
            g, _ = modified(arch, "gap_fc", k)
            assert count_params(g) == count_params(m)


@pytest.mark.parametrize(
    "arch,classes,size,method,k,expected_m",
    [
        ("vgg16_bn", 100, 32, "none", 0, 34.02),
        ("vgg16_bn", 100, 32, "conv1x1", 5, 23.53),
        ("resnet50", 100, 32, "none", 0, 23.71),
        ("resnet152", 1000, 224, "conv1x1", 19, 45.51),
        ("resnet152", 1000, 224, "none", 0, 60.19),
        ("resnet50", 1000, 224, "none", 0, 25.56),
        ("mobilenet_v2", 1000, 224, "none", 0, 3.50),
        ("squeezenet1_0", 1000, 224, "none", 0, 1.25),
    ],
)
def test_paper_parameter_counts(arch, classes, size, method, k, expected_m):
    torch.manual_seed(0)
    m = build_model(OmegaConf.create({"arch": arch, "width": 1.0, "stem": "auto", "fc_width": 4096}), classes, size)
    surgery.apply(m, OmegaConf.create({"name": method}), k, size)
    assert round(count_params(m) / 1e6, 2) == expected_m


def test_same_seed_same_initial_weights_for_every_k():
    def init(k):
        torch.manual_seed(11)
        m = build_model(OmegaConf.create({"arch": "resnet18", "width": 0.125, "stem": "auto"}), 10, 32)
        report = surgery.apply(m, OmegaConf.create({"name": "conv1x1"}), k, 32)
        return m, report

    ref, _ = init(0)
    ref_params = dict(ref.named_parameters())
    for k in range(1, 9):
        m, report = init(k)
        untouched = {n: p for n, p in m.named_parameters()
                     if unit_of(n.removeprefix("body."), ref.unit_names()) not in report.modified_units}
        assert untouched and all(torch.equal(p, ref_params[n]) for n, p in untouched.items()), k


def test_strip_removes_units_and_refits_the_head():
    m, report = modified("resnet50", "conv1x1", 4, strip=2)
    assert report.stripped_units == [14, 15] and report.modified_units == [12, 13, 14, 15]
    assert isinstance(m.body.layer4[1], nn.Identity) and isinstance(m.body.layer4[2], nn.Identity)
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    m, _ = modified("resnet50", "conv1x1", 4, strip=4)  # layer3[5] and layer4 gone: the fc reads layer3[4]
    assert m.body.fc.in_features == m.body.layer3[4].conv3.out_channels != 2048 // 16
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    g, _ = modified("vgg16_bn", "gap_fc", 3, strip=3)
    assert g(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_receptive_field_in_the_papers_convention():
    """S1 Fig. 3 (right): VGG-16 at 32 px with conv1x1 on the last K = 10 .. 0 convs has the receptive
    fields 10 16 24 32 44 60 76 100 132 164 212: the field of the map entering the first modified conv."""
    rfs = {k: receptive_field(*_rf_args(modified("vgg16_bn", "conv1x1", k))) for k in range(14)}
    assert [rfs[k] for k in range(10, -1, -1)] == [10, 16, 24, 32, 44, 60, 76, 100, 132, 164, 212]
    assert rfs[13] == 1 and rfs[12] == 3  # K=13: nothing spatial before the first 1x1 conv
    assert receptive_field(base("vgg16_bn")) == 212
    for method in ("gap_fc", "spatial_shuffle"):  # the same map enters the first modified unit
        assert receptive_field(*_rf_args(modified("vgg16_bn", method, 3))) == 100
    assert receptive_field(*_rf_args(modified("vgg16_bn", "spatial_shuffle", 0, unit=7))) == 44  # conv 8
    assert receptive_field(base("resnet50", size=224)) == 427


def _rf_args(model_and_report):
    model, report = model_and_report
    return model, report.modified_units


# ----------------------------------------------------------------------------- bad input
def cfg(arch="resnet18", method="spatial_shuffle", k=0, **kw):
    return OmegaConf.create({"model": {"arch": arch}, "method": {"name": method, **kw}, "k": k})


@pytest.mark.parametrize(
    "c,key,text",
    [
        (cfg(k=9), "k", "0..8"),
        (cfg(k=-1), "k", ">= 0"),
        (cfg("vgg16_bn", k=14), "k", "0..13"),
        (cfg(unit=8), "method.unit", "<= 7"),
        (cfg(unit=2, k=3), "k", "leave k at 0"),
        (cfg(method="patch_shuffle", k=2, patch_size=0), "method.patch_size", ">= 1"),
        (cfg(method="conv1x1", k=2, downsample="bilinear"), "method.downsample", "avgpool, maxpool, stride"),
        (cfg(method="gap_fc", unit=3), "method.unit", "last K"),
        (cfg(method="conv1x1", k=2, strip=3), "method.strip", "0..2"),
        (cfg(method="warp"), "method.name", "spatial_shuffle"),
        (cfg(method="none", k=1), "k", "modifies no unit"),
        (cfg(k=1, train="yes"), "method.train", "boolean"),
    ],
)
def test_bad_method_config_names_key_and_range(c, key, text):
    with pytest.raises(ConfigError) as err:
        check_method(c)
    assert err.value.key == key and text in str(err.value)
