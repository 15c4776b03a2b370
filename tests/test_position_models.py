"""GAPNet, PermuteNet, padding modes and BlurPool (SPEC part B models)."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from spatialprobe.errors import ConfigError
from spatialprobe.models import build_model
from spatialprobe.models.position import ChannelPermute
from test_config import compose_train


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


@pytest.mark.parametrize("name", ["permutenet_resnet18", "permutenet_vgg16"])
def test_permutenet_permutes_the_pooled_channels_freshly_on_every_forward(name):
    m = model(name).eval()
    x = torch.randn(2, 3, 96, 96)
    z = m.pool(m.forward_features(x))             # the latent before the permutation
    first = m.body.fc[1] if hasattr(m.body, "fc") else m.body.classifier[1][0]
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


def test_blurpool_antialiases_every_down_sampling_but_the_stem():
    from kornia.filters import BlurPool2D, MaxBlurPool2D

    plain, blurred = model("resnet18"), model("resnet18", blurpool=True)
    strided = [c for c in blurred.modules() if isinstance(c, nn.Conv2d) and c.stride != (1, 1)]
    assert strided == [blurred.body.conv1]  # only the stem conv keeps its stride
    assert sum(isinstance(mod, BlurPool2D) for mod in blurred.modules()) == 6  # 3 stages x (conv + shortcut)
    assert isinstance(blurred.body.maxpool, MaxBlurPool2D)
    x = torch.randn(1, 3, 96, 96)
    assert plain.forward_features(x).shape == blurred.forward_features(x).shape
    vgg = model("vgg16", blurpool=True)
    assert sum(isinstance(mod, MaxBlurPool2D) for mod in vgg.modules()) == 5
    assert not any(isinstance(mod, nn.MaxPool2d) for mod in vgg.modules())


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
