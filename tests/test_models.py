"""Model builders: torchvision structure, parameter counts, the feature/pool/head seam, seeding."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from spatialprobe.models import build_model
from spatialprobe.run.measure import count_flops, count_params


def model(arch, classes=100, size=32, **kw):
    return build_model(OmegaConf.create({"arch": arch, "width": 1.0, "stem": "auto", "fc_width": 4096} | kw),
                       classes, size)


@pytest.mark.parametrize(
    "arch,classes,size,expected",
    [
        ("vgg16_bn", 100, 32, 34_015_396),    # paper: 34.02M
        ("resnet50", 100, 32, 23_705_252),    # paper: 23.71M with the 3x3 stem
        ("resnet50", 1000, 224, 25_557_032),  # torchvision's resnet50
        ("resnet152", 1000, 224, 60_192_808), # torchvision's resnet152
        ("resnet18", 1000, 224, 11_689_512),  # torchvision's resnet18
    ],
)
def test_parameter_counts(arch, classes, size, expected):
    assert count_params(model(arch, classes, size)) == expected


def test_paper_rounding():
    assert round(count_params(model("vgg16_bn")) / 1e6, 2) == 34.02
    assert round(count_params(model("resnet50")) / 1e6, 2) == 23.71


@pytest.mark.parametrize("arch,units", [("vgg16_bn", 13), ("resnet18", 8), ("resnet50", 16), ("resnet152", 50)])
def test_units_are_listed_in_order(arch, units):
    m = model(arch, 10, 32, width=0.125)
    names = m.unit_names()
    assert len(names) == units
    modules = [n for n, _ in m.body.named_modules()]
    assert [modules.index(n) for n in names] == sorted(modules.index(n) for n in names)


@pytest.mark.parametrize("arch", ["vgg16_bn", "resnet18", "resnet50"])
def test_seam_reproduces_forward_and_last_map_size(arch):
    m = model(arch, 10, 32, width=0.125).eval()
    x = torch.randn(3, 3, 32, 32)
    f = m.forward_features(x)
    z = m.pool(f)
    assert torch.allclose(m.forward_head(z), m(x), atol=1e-5)
    assert z.shape == (3, f.shape[1])
    # 32 px: VGG keeps its five max-pools (1x1); ResNets use the 3x3 stride-1 stem (4x4)
    assert f.shape[-1] == (1 if arch.startswith("vgg") else 4)


def test_imagenet_stem_and_width():
    m = model("resnet18", 10, 224, width=0.25)
    assert m.body.conv1.kernel_size == (7, 7) and not isinstance(m.body.maxpool, torch.nn.Identity)
    assert m.body.layer4[1].conv2.out_channels == 128 and m.body.fc.in_features == 128
    assert m.forward_features(torch.randn(1, 3, 224, 224)).shape == (1, 128, 7, 7)
    c = model("resnet18", 10, 32, width=0.25)
    assert c.body.conv1.kernel_size == (3, 3) and isinstance(c.body.maxpool, torch.nn.Identity)
    v = model("vgg16_bn", 10, 32, width=0.25, fc_width=256)
    assert [m.out_features for m in v.body.classifier if isinstance(m, torch.nn.Linear)] == [256, 256, 10]
    assert v.body.classifier[0].in_features == 128


def test_same_seed_same_weights_other_seed_other_weights():
    def weights(seed):
        torch.manual_seed(seed)
        return torch.cat([p.flatten() for p in model("resnet18", 10, 32, width=0.125).parameters()])

    assert torch.equal(weights(3), weights(3))
    assert not torch.equal(weights(3), weights(4))


def test_no_tensor_left_on_meta_and_bn_stats_fresh():
    for arch in ("vgg16_bn", "resnet50"):
        m = model(arch, 10, 32, width=0.125)
        assert all(t.device.type == "cpu" for t in list(m.parameters()) + list(m.buffers()))
        for bn in (b for b in m.modules() if isinstance(b, torch.nn.BatchNorm2d)):
            assert torch.all(bn.running_mean == 0) and torch.all(bn.running_var == 1)


# ---- FLOPs, counted independently from the architectures' published layer tables --------------------
# A FLOP here is one multiply or one add: a multiply-add counts 2 (torch.utils.flop_counter's
# convention). Convolutions and linear layers are counted; BatchNorm, ReLU, pooling and the residual
# additions are not (they are < 1 % of the total).

def conv(k: int, cin: int, cout: int, h: int, w: int | None = None) -> int:
    """A k x k convolution producing an h x w map: k*k*cin multiply-adds per output value."""
    return 2 * k * k * cin * cout * h * (w or h)


def linear(cin: int, cout: int) -> int:
    return 2 * cin * cout


def vgg16_flops(size: int, classes: int, fc: int = 4096) -> int:
    """VGG-16 (configuration D): 13 3x3 convs in five stages, a 2x2 max-pool after each."""
    total, cin, h = 0, 3, size
    for stage in ([64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]):
        for cout in stage:
            total += conv(3, cin, cout, h)
            cin = cout
        h //= 2
    return total + linear(512, fc) + linear(fc, fc) + linear(fc, classes)  # global pool, then the classifier


def resnet_flops(blocks: list[int], bottleneck: bool, size: int, classes: int, imagenet_stem: bool) -> int:
    """ResNet (v1.5: the stride sits in the 3x3 conv) from its stage table."""
    if imagenet_stem:
        h = size // 2
        total = conv(7, 3, 64, h)  # 7x7 stride 2
        h //= 2                    # 3x3 stride-2 max-pool
    else:
        h, total = size, conv(3, 3, 64, size)
    cin = 64
    for i, (n, planes) in enumerate(zip(blocks, (64, 128, 256, 512), strict=True)):
        cout = planes * (4 if bottleneck else 1)
        for b in range(n):
            stride = 2 if (i > 0 and b == 0) else 1
            h_in, h = h, h // stride
            if bottleneck:
                total += conv(1, cin, planes, h_in) + conv(3, planes, planes, h) + conv(1, planes, cout, h)
            else:
                total += conv(3, cin, planes, h) + conv(3, planes, planes, h)
            if stride != 1 or cin != cout:
                total += conv(1, cin, cout, h)  # the projection shortcut
            cin = cout
    return total + linear(cin, classes)


@pytest.mark.parametrize("arch,classes,size,expected", [
    ("vgg16_bn", 100, 32, vgg16_flops(32, 100)),
    ("resnet50", 1000, 224, resnet_flops([3, 4, 6, 3], True, 224, 1000, imagenet_stem=True)),
    ("resnet18", 10, 32, resnet_flops([2, 2, 2, 2], False, 32, 10, imagenet_stem=False)),
])
def test_flops_equal_the_layer_arithmetic(arch, classes, size, expected):
    m = model(arch, classes, size)
    assert count_flops(m, size) == expected
    assert m.training  # counting leaves the mode alone


def test_flop_arithmetic_matches_the_published_numbers():
    # torchvision lists ResNet-50 at 4.09 G and VGG-16 at 15.47 G multiply-adds per 224 px image
    assert round(resnet_flops([3, 4, 6, 3], True, 224, 1000, True) / 2e9, 2) == 4.09
    assert round((vgg16_flops(224, 1000) - linear(512, 4096) + linear(512 * 7 * 7, 4096)) / 2e9, 2) == 15.47


def test_conv1x1_saves_exactly_the_spatial_multiply_adds():
    from spatialprobe import surgery

    m = model("vgg16_bn", 100, 32)
    surgery.apply(m, OmegaConf.create({"name": "conv1x1"}), 5, 32)
    # the last five convs (two 512-channel convs at 4x4, three at 2x2) keep 1 of their 9 taps
    saved = sum(conv(3, 512, 512, h) - conv(1, 512, 512, h) for h in (4, 4, 2, 2, 2))
    assert count_flops(m, 32) == vgg16_flops(32, 100) - saved
