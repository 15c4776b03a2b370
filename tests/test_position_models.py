"""GAPNet, PermuteNet, padding modes and BlurPool (SPEC part B models)."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from conftest import compose_train
from spatialprobe.errors import ConfigError
from spatialprobe.models import build_model
from spatialprobe.models.position import BlurPool, ChannelPermute, binomial_kernel
from spatialprobe.run.measure import count_flops


def model(name, classes=9, size=96, **kw):
    cfg = OmegaConf.create(OmegaConf.to_container(compose_train(f"model={name}").model))  # with its base files
    cfg.width = 0.125
    if "fc_width" in cfg:
        cfg.fc_width = 32
    for k, v in kw.items():
        cfg[k] = v
    torch.manual_seed(0)
    return build_model(cfg, classes, size)


@pytest.mark.parametrize("name", ["gapnet_resnet18", "gapnet_vgg16"])
def test_gapnet_is_a_conv_with_one_channel_per_target_then_global_average_pooling(name):
    m = model(name, classes=25, size=160).eval()
    x = torch.randn(2, 3, 160, 160)
    head_conv = m.body.avgpool[0]
    assert isinstance(head_conv, nn.Conv2d) and head_conv.out_channels == 25 and head_conv.kernel_size == (3, 3)
    last_map = head_conv(m.forward_features(x))      # the last conv's output: one map per target
    assert last_map.shape[1] == 25 and last_map.shape[-1] > 1
    expected = last_map.mean(dim=(2, 3))             # global average pooling and nothing after it
    assert torch.allclose(m(x), expected, atol=1e-5)
    assert torch.allclose(m.pool(m.forward_features(x)), expected, atol=1e-5)  # the pooled latent is the logits
    assert not any(isinstance(mod, nn.Linear) for mod in m.modules())


def test_permutenet_vgg16_is_the_authors_pool_permute_one_linear_layer():
    """The authors' PermuteNet: global pooling, a permutation, one linear layer 512 -> classes (14.7M
    parameters at full width, not VGG's 33.6M with the 4096-4096 classifier)."""
    from spatialprobe.run.measure import count_params

    m = model("permutenet_vgg16", classes=9, width=1.0)
    head = m.body.classifier
    assert isinstance(head, nn.Sequential) and isinstance(head[0], ChannelPermute)
    assert isinstance(head[1], nn.Linear) and (head[1].in_features, head[1].out_features) == (512, 9)
    features = sum(p.numel() for p in m.body.features.parameters())
    assert count_params(m) == features + 512 * 9 + 9 == 14_727_753


@pytest.mark.parametrize("name", ["permutenet_resnet18", "permutenet_vgg16"])
def test_permutenet_permutes_the_pooled_channels_freshly_on_every_forward(name):
    m = model(name).eval()
    x = torch.randn(2, 3, 96, 96)
    z = m.pool(m.forward_features(x))             # the latent before the permutation
    first = m.body.fc[1] if hasattr(m.body, "fc") else m.body.classifier[1]
    seen = []
    inputs = []
    hook = first.register_forward_hook(lambda mod, inp, out: inputs.append(inp[0].detach()))
    torch.manual_seed(1)
    for _ in range(4):
        seen.append(m(x))
    hook.remove()
    columns = sorted(map(tuple, z.t().tolist()))
    for zin in inputs:  # the linear layer reads the pooled channels permuted, the same way for every sample
        assert zin.shape == z.shape and sorted(map(tuple, zin.t().tolist())) == columns
    assert len({tuple(i[0].tolist()) for i in inputs}) == 4  # a new permutation every forward
    assert not torch.allclose(seen[0], seen[1])
    # in training mode too, and gradients flow through the permutation into the encoder
    m.train()
    m(x).sum().backward()
    stem = m.body.conv1 if hasattr(m.body, "conv1") else m.body.features[0]
    assert stem.weight.grad is not None and stem.weight.grad.abs().sum() > 0


def test_channel_permute_is_a_gather():
    z = torch.arange(6.0).view(1, 6).requires_grad_()
    out = ChannelPermute()(z)
    assert sorted(out[0].tolist()) == list(range(6))
    assert any(not torch.equal(ChannelPermute()(z), z) for _ in range(5))  # not the identity
    (out * torch.arange(6.0)).sum().backward()
    assert sorted(z.grad[0].tolist()) == list(range(6))


@pytest.mark.parametrize("name", ["resnet18", "vgg16", "gapnet_resnet18", "permutenet_vgg16"])
@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_padding_mode_reaches_every_conv(name, mode):
    m = model(name, padding=mode)
    convs = [c for c in m.modules() if isinstance(c, nn.Conv2d)]
    assert len(convs) > 10 and all(c.padding_mode == mode for c in convs)
    zeros = model(name)
    assert all(c.padding_mode == "zeros" for c in zeros.modules() if isinstance(c, nn.Conv2d))
    x = torch.randn(1, 3, 96, 96)
    zeros.eval(), m.eval()
    assert not torch.allclose(zeros(x), m(x))  # same weights (same seed), different padding, different output


def test_binomial_kernel_is_the_outer_product_of_pascals_row():
    from math import comb

    assert torch.allclose(binomial_kernel(3), torch.outer(torch.tensor([1.0, 2, 1]), torch.tensor([1.0, 2, 1])) / 16)
    for k in range(2, 8):
        row = torch.tensor([comb(k - 1, i) for i in range(k)], dtype=torch.float32) / 2 ** (k - 1)
        assert torch.allclose(binomial_kernel(k), torch.outer(row, row)) and binomial_kernel(k).sum() == pytest.approx(1)


@pytest.mark.parametrize("kernel", [2, 3, 4, 5])
def test_blurpool_is_a_reflect_padded_binomial_conv_with_stride(kernel):
    x = torch.randn(2, 3, 9, 10)
    row = torch.tensor({2: [1.0, 1], 3: [1.0, 2, 1], 4: [1.0, 3, 3, 1], 5: [1.0, 4, 6, 4, 1]}[kernel])  # Pascal
    weight = (torch.outer(row, row) / row.sum() ** 2).expand(3, 1, kernel, kernel)
    before, after = (kernel - 1) // 2, kernel // 2
    expected = nn.functional.conv2d(nn.ReflectionPad2d((before, after, before, after))(x), weight, stride=2, groups=3)
    out = BlurPool(kernel, stride=2)(x)
    assert out.shape == (2, 3, 5, 5) and torch.allclose(out, expected, atol=1e-6)


def test_blurpool_keeps_flat_images_and_removes_the_highest_frequency():
    flat = torch.full((1, 2, 8, 8), 3.0)
    assert torch.allclose(BlurPool(3, 2)(flat), torch.full((1, 2, 4, 4), 3.0))
    checker = (torch.arange(8).view(1, 8) + torch.arange(8).view(8, 1)).remainder(2).float().view(1, 1, 8, 8) * 2 - 1
    assert BlurPool(3, 1)(checker)[..., 1:-1, 1:-1].abs().max() == 0  # [1,2,1]/4 cancels a +-1 checkerboard
    tiny = BlurPool(4, 2)(torch.randn(1, 1, 2, 2))  # too small to reflect 2 px: replicated instead
    assert tiny.shape == (1, 1, 1, 1)


def blur_layers(m):
    return [mod for mod in m.modules() if isinstance(mod, BlurPool)]


def test_blurpool_pool_blurs_after_every_strided_maxpool_only():
    plain, blurred = model("resnet18", stem="imagenet"), model("resnet18", stem="imagenet", blurpool=True)
    pool = blurred.body.maxpool
    assert isinstance(pool, nn.Sequential) and isinstance(pool[0], nn.MaxPool2d) and pool[0].stride == 1
    assert isinstance(pool[1], BlurPool) and pool[1].stride == 2 and len(blur_layers(blurred)) == 1
    strided = [c for c in blurred.modules() if isinstance(c, nn.Conv2d) and c.stride != (1, 1)]
    assert len(strided) == 7  # stem + 3 stages x (conv + shortcut): convs are left alone
    x = torch.randn(1, 3, 96, 96)
    assert plain.forward_features(x).shape == blurred.forward_features(x).shape
    assert model("resnet18", stem="imagenet", blurpool="pool").body.maxpool[1].stride == 2  # 'pool' = true
    vgg = model("vgg16", blurpool=True)
    assert len(blur_layers(vgg)) == 5 and all(p.stride == 1 for p in vgg.modules() if isinstance(p, nn.MaxPool2d))


def test_blurpool_full_is_zhangs_antialiasing_conv_bn_relu_then_blur_pool():
    """Zhang 2019's anti-aliased ResNet: a strided conv computes at stride 1 and its BN -> ReLU output is
    blur-pooled with the conv's stride (in front of the block's next conv); the strided 1x1 projection on
    the skip becomes blur pool -> 1x1 conv (stride 1); the stem conv keeps its stride."""
    blurred = model("resnet18", stem="cifar", blurpool="full", width=1.0)  # the 32 px stem: no max-pool
    block = blurred.body.layer2[0]
    assert block.conv1.stride == (1, 1) and isinstance(block.conv1, nn.Conv2d)  # conv (stride 1) -> bn1 -> relu
    assert isinstance(block.conv2, nn.Sequential) and isinstance(block.conv2[0], BlurPool)  # -> blur pool (stride 2)
    assert block.conv2[0].stride == 2 and block.conv2[1].stride == (1, 1)                 # -> conv2 as before
    skip = block.downsample
    assert [type(m) for m in skip] == [BlurPool, nn.Conv2d, nn.BatchNorm2d] and skip[0].stride == 2
    assert skip[1].kernel_size == (1, 1) and skip[1].stride == (1, 1)
    strided = [c for c in blurred.modules() if isinstance(c, nn.Conv2d) and c.stride != (1, 1)]
    assert strided == [] and len(blur_layers(blurred)) == 6  # 3 stages x (block + skip)
    x = torch.randn(1, 3, 32, 32)
    plain = model("resnet18", stem="cifar", width=1.0)
    assert blurred.forward_features(x).shape == plain.forward_features(x).shape == (1, 512, 4, 4)
    # FLOPs rise: the strided 3x3 convs now run at their input's resolution, plus the depthwise 4x4 blurs
    extra = 0
    for c_in, c_out, h in ((64, 128, 32), (128, 256, 16), (256, 512, 8)):
        extra += 2 * 9 * c_in * c_out * (h * h - (h // 2) ** 2)      # conv1 at h x h instead of h/2 x h/2
        extra += 2 * 16 * c_out * (h // 2) ** 2 + 2 * 16 * c_in * (h // 2) ** 2  # the two blur pools
    assert count_flops(blurred, 32) == count_flops(plain, 32) + extra
    # a bottleneck: the blur goes in front of conv3, after conv2 (stride 1) -> bn2 -> relu
    bottleneck = model("resnet50", stem="cifar", blurpool="full").body.layer2[0]
    assert bottleneck.conv2.stride == (1, 1) and isinstance(bottleneck.conv3[0], BlurPool)
    imagenet = model("resnet18", stem="imagenet", blurpool="full")
    assert imagenet.body.conv1.stride == (2, 2) and len(blur_layers(imagenet)) == 7  # + the max-pool's
    mobile = model("mobilenet_v2", blurpool="full").body.features[2].conv[1]  # depthwise conv -> BN -> ReLU6 -> blur
    assert mobile[0].stride == (1, 1) and isinstance(mobile[-1], BlurPool) and mobile[-1].stride == 2


@pytest.mark.parametrize("arch,stem,size", [("resnet18", "auto", 32), ("resnet18", "auto", 224),
                                            ("resnet18", "imagenet_nopool", 96), ("resnet50", "cifar", 64),
                                            ("vgg16", None, 32), ("mobilenet_v2", None, 224), ("squeezenet", None, 224)])
def test_the_early_blurpool_check_agrees_with_the_built_network(arch, stem, size):
    from spatialprobe.config.schema import has_strided_maxpool

    cfg = OmegaConf.create(OmegaConf.to_container(compose_train(f"model={arch}").model))  # with its base files
    if stem:
        cfg.stem = stem
    built = build_model(cfg, 10, size)
    has = any(isinstance(m, nn.MaxPool2d) and m.stride not in (1, (1, 1)) for m in built.modules())
    assert has_strided_maxpool(cfg.arch, cfg.get("stem") or "auto", size) == has


def test_blurpool_after_max_pools_is_refused_where_there_is_none():
    from spatialprobe.train import validate

    with pytest.raises(ConfigError) as err:
        validate(compose_train("model=resnet18", "dataset=cifar10", "model.blurpool=true"))
    assert err.value.key == "model.blurpool" and "no strided max-pool" in str(err.value) and "full" in str(err.value)
    validate(compose_train("model=resnet18", "dataset=cifar10", "model.blurpool=full"))
    validate(compose_train("model=resnet18", "dataset=imagenet", "recipe=imagenet", "model.blurpool=true"))


@pytest.mark.parametrize("override,key", [("model.padding=mirror", "model.padding"),
                                          ("model.head=softmax", "model.head"),
                                          ("model.blurpool=maybe", "model.blurpool")])
def test_bad_model_options_name_key_and_choices(override, key):
    from spatialprobe.train import validate

    with pytest.raises(ConfigError) as err:
        validate(compose_train("model=gapnet_resnet18", override))
    assert err.value.key == key
    if key == "model.padding":
        assert "'mirror'" in str(err.value) and "reflect, replicate, circular" in str(err.value)
