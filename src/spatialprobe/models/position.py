"""Model options of SPEC part B, applied to any family's torchvision body after it is built.

* ``model.head``: ``linear`` (the family's own head), ``gapnet`` (a last conv with one output
  channel per target, then global average pooling and nothing else: the pooled latent *is* the
  logits), ``permutenet`` (global pooling, then a fresh random permutation of the pooled channels
  on every forward pass, in training and at test time, then one linear layer to the classes, as in
  the authors' code: a ResNet's own fc; VGG's three-layer classifier is replaced by one). ``head_kernel``
  is the GAPNet conv's kernel size (3 in the paper's code).
* ``model.padding``: the ``padding_mode`` of every ``Conv2d`` (zeros / reflect / replicate / circular).
* ``model.blurpool``: BlurPool (Zhang 2019, "Making convolutional networks shift-invariant
  again"), a fixed binomial blur followed by subsampling (:class:`BlurPool`). ``pool`` (or
  ``true``) is the paper's description of it, "a Gaussian blurring layer after each max-pooling
  layer": every strided max-pool is evaluated at stride 1 and followed by a blur pool with the
  max-pool's stride. ``full`` is Zhang's whole anti-aliasing, as in his released anti-aliased networks
  (whose accuracies P's BlurPool rows match): in addition every strided conv after the stem computes at
  stride 1, and a blur pool with its stride follows its normalisation and activation (conv -> BN ->
  ReLU -> blur pool); a strided 1x1 projection on a skip becomes blur pool -> 1x1 conv; the stem conv
  keeps its stride, as in Zhang's ``pool_only`` models. The strided convs then run at the full
  resolution, so ``full`` costs more FLOPs (``inspect`` shows them). ``pool`` on a network without a strided max-pool (a ResNet
  with the 32 px stem, MobileNetV2) would change nothing and is refused. ``blur_kernel`` is the
  filter size (default 4, Zhang's default; 3 is [1, 2, 1]). The blur pads by reflection, as
  Zhang's layer does (replication on maps too small to reflect), whatever ``model.padding`` says.

Their choices and checks: :func:`spatialprobe.config.schema.check_model` (``HEADS``, ``PADDING_MODES``, ...).

The changes live inside the torchvision body (its ``avgpool`` / ``fc`` / ``classifier``), so the
body's own forward and the family's seam keep working: ``pool`` returns the latent *before* the
PermuteNet permutation (channel identities stay fixed, so they can be ranked and switched off) and
``forward_head`` permutes, then classifies; for GAPNet ``pool`` returns the logits and
``forward_head`` is the identity.
"""

from __future__ import annotations

import math

import torch
from omegaconf import DictConfig
from torch import nn
from torch.nn import functional as F

from spatialprobe.config.schema import blurpool_mode  # model.blurpool as none / pool / full


def binomial_kernel(size: int) -> torch.Tensor:
    """The ``size`` x ``size`` binomial filter: the outer product of row ``size - 1`` of Pascal's triangle, sum 1."""
    row = torch.tensor([math.comb(size - 1, k) for k in range(size)], dtype=torch.float64)
    return torch.outer(row, row).div_(row.sum() ** 2).float()


class BlurPool(nn.Module):
    """Blur every channel with a fixed binomial filter, then keep every ``stride``-th pixel (one depthwise conv).

    Padding (by reflection, Zhang's choice) of (k-1)//2 before and k//2 after keeps a stride-s map at
    ceil(size / s) pixels, like the strided layer it replaces.
    """

    def __init__(self, kernel: int = 4, stride: int = 2):
        super().__init__()
        self.kernel, self.stride = int(kernel), int(stride)
        self.pad = ((kernel - 1) // 2, kernel // 2) * 2  # left, right, top, bottom
        self.register_buffer("filter", binomial_kernel(kernel)[None, None], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        mode = "reflect" if min(x.shape[-2:]) > max(self.pad) else "replicate"
        weight = self.filter.to(x.dtype).expand(c, 1, self.kernel, self.kernel)
        return F.conv2d(F.pad(x, self.pad, mode=mode), weight, stride=self.stride, groups=c)

    def extra_repr(self) -> str:
        return f"kernel={self.kernel}, stride={self.stride}"


class ChannelPermute(nn.Module):
    """A fresh random permutation of dim 1 on every forward pass (a gather: gradients flow back)."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z[:, torch.randperm(z.shape[1], device=z.device)]


def set_padding(module: nn.Module, mode: str) -> int:
    """Set the padding mode of every Conv2d in ``module``; return how many convs were changed."""
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    for conv in convs:
        conv.padding_mode = mode  # Conv2d keeps the padding amounts for every mode
    return len(convs)


def antialias(body: nn.Module, mode: str = "pool", kernel: int = 4) -> int:
    """BlurPool in place (module docstring). ``pool``: every strided max-pool becomes max (stride 1) -> blur
    pool (its stride). ``full`` (Zhang's anti-aliased networks) also moves the subsampling of every strided
    conv but the stem behind the conv's normalisation and activation: conv (stride 1) -> BN -> ReLU -> blur
    pool (stride s) (in a ResNet block the blur goes in front of the next conv; in a conv-BN-activation
    sequence, MobileNetV2's, after the activation); a strided projection on the skip becomes blur pool ->
    1x1 conv (stride 1). Returns the number of blur layers inserted."""
    from torchvision.models.resnet import BasicBlock, Bottleneck

    first_conv = next((m for m in body.modules() if isinstance(m, nn.Conv2d)), None)
    inserted = 0
    for parent in list(body.modules()):
        for name, child in list(parent.named_children()):
            stride = _stride(child.stride) if isinstance(child, nn.MaxPool2d | nn.Conv2d) else 1
            if stride == 1:
                continue
            if isinstance(child, nn.MaxPool2d):
                child.stride = 1  # the max is taken densely; the blur pool does the subsampling
                setattr(parent, name, nn.Sequential(child, BlurPool(kernel, stride)))
            elif mode != "full" or child is first_conv:
                continue
            elif isinstance(parent, BasicBlock | Bottleneck) and name in ("conv1", "conv2"):
                # the block's next conv reads relu(bn(this conv)): blur in front of it
                following = "conv2" if isinstance(parent, BasicBlock) else "conv3"
                child.stride = (1, 1)
                setattr(parent, following, nn.Sequential(BlurPool(kernel, stride), getattr(parent, following)))
            elif isinstance(parent, nn.Sequential) and name == "0" and len(parent) > 1 and \
                    isinstance(parent[1], nn.BatchNorm2d) and not (child.kernel_size == (1, 1)):
                child.stride = (1, 1)  # conv -> BN -> activation, then the blur pool subsamples
                parent.append(BlurPool(kernel, stride))
            elif isinstance(parent, nn.Sequential):  # a projection (1x1) in a sequence: blur, then the conv
                child.stride = (1, 1)
                parent.insert(int(name), BlurPool(kernel, stride))
            else:  # a conv on its own: blur, then the conv at stride 1
                child.stride = (1, 1)
                setattr(parent, name, nn.Sequential(BlurPool(kernel, stride), child))
            inserted += 1
    return inserted


def _stride(stride) -> int:
    return int(stride[0] if isinstance(stride, tuple | list) else stride)


def apply_head(body: nn.Module, head: str, num_classes: int, kernel: int = 3) -> None:
    """Turn the body into a GAPNet or PermuteNet (see module docstring); ``linear`` leaves it alone."""
    if head == "linear":
        return
    head_attr = "fc" if hasattr(body, "fc") else "classifier"
    if head == "permutenet":
        # the authors' PermuteNet: pool, permute, one linear layer to the classes (a ResNet's own fc is one;
        # VGG's three-layer classifier becomes a single Linear(512 * width, classes))
        old = getattr(body, head_attr)
        linear = old if isinstance(old, nn.Linear) else nn.Linear(_pooled_channels(old), num_classes)
        setattr(body, head_attr, nn.Sequential(ChannelPermute(), linear))
        return
    channels = _pooled_channels(getattr(body, head_attr))
    conv = nn.Conv2d(channels, num_classes, kernel_size=kernel, padding=kernel // 2)
    body.avgpool = nn.Sequential(conv, nn.AdaptiveAvgPool2d(1))
    setattr(body, head_attr, nn.Identity())


def _pooled_channels(head: nn.Module) -> int:
    first = head if isinstance(head, nn.Linear) else next(m for m in head.modules() if isinstance(m, nn.Linear))
    return first.in_features


def apply_options(body: nn.Module, cfg: DictConfig, num_classes: int) -> nn.Module:
    """Apply ``head``, ``blurpool`` and ``padding`` of ``cfg`` (a model config) to ``body``, in place."""
    apply_head(body, cfg.get("head") or "linear", num_classes, int(cfg.get("head_kernel") or 3))
    mode = blurpool_mode(cfg.get("blurpool"))
    if mode != "none":
        antialias(body, mode, int(cfg.get("blur_kernel") or 4))
    set_padding(body, cfg.get("padding") or "zeros")
    return body
