"""conv1x1: every 3x3 (kxk) conv of a modified unit becomes 1x1.

Where the conv down-samples, ``downsample`` (choices: ``spatialprobe.config.schema.DOWNSAMPLE``) decides how: ``avgpool`` (2x2 average pool, the
default), ``maxpool`` (2x2 max pool), or ``stride`` (keep the stride on the 1x1 conv). The pools
use ceil mode, so the output size equals the strided conv's for odd sizes too. The same choice
is applied to the unit's skip branch by the surgery.
"""

from __future__ import annotations

from torch import nn

#: This method's kind, read without importing this module by spatialprobe.config.facts.
KIND = "conv1x1"


def pool2x2(kind: str, stride: int = 2) -> nn.Module:
    if kind == "maxpool":
        return nn.MaxPool2d(stride, ceil_mode=True)
    return nn.AvgPool2d(stride, ceil_mode=True, count_include_pad=False)


def to_1x1(conv: nn.Conv2d, downsample: str) -> nn.Module:
    """The 1x1 replacement of ``conv`` (freshly initialised), with its down-sampling."""
    stride = conv.stride[0]
    keep_stride = downsample == "stride" and stride > 1
    new = nn.Conv2d(conv.in_channels, conv.out_channels, 1, stride=stride if keep_stride else 1,
                    groups=conv.groups, bias=conv.bias is not None, padding_mode=conv.padding_mode)
    nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
    if new.bias is not None:
        nn.init.zeros_(new.bias)
    if stride == 1 or keep_stride:
        return new
    return nn.Sequential(pool2x2(downsample, stride), new)


def pooled_skip(skip: nn.Sequential, downsample: str) -> nn.Module:
    """A strided 1x1 skip projection (conv, norm) turned into pool -> stride-1 conv -> norm."""
    if downsample == "stride":
        return skip
    conv = skip[0]
    stride = conv.stride[0]
    if stride == 1:
        return skip
    conv.stride = (1, 1)
    return nn.Sequential(pool2x2(downsample, stride), *skip)
