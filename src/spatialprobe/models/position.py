"""Model options of SPEC part B, applied to any family's torchvision body after it is built.

* ``model.head``: ``linear`` (the family's own head), ``gapnet`` (a last conv with one output
  channel per target, then global average pooling and nothing else: the pooled latent *is* the
  logits), ``permutenet`` (global pooling, then a fresh random permutation of the pooled channels
  on every forward pass, in training and at test time, then the family's head). ``head_kernel``
  is the GAPNet conv's kernel size (3 in the paper's code).
* ``model.padding``: the ``padding_mode`` of every ``Conv2d`` (zeros / reflect / replicate / circular).
* ``model.blurpool``: anti-aliased down-sampling (Zhang 2019) with kornia's blur pool: every
  strided max-pool becomes a stride-1 max-pool + a blur pool (``MaxBlurPool2D``), every strided
  conv after the stem becomes a blur pool followed by the conv at stride 1 (the stem conv keeps
  its stride, as in Zhang's models). ``blur_kernel`` is the binomial filter size (default 4).
  The blur pads with zeros whatever ``model.padding`` says.

Their choices and checks: :func:`spatialprobe.schema.check_model` (``HEADS``, ``PADDING_MODES``, ...).

The changes live inside the torchvision body (its ``avgpool`` / ``fc`` / ``classifier``), so the
body's own forward and the family's seam keep working: ``pool`` returns the latent *before* the
PermuteNet permutation (channel identities stay fixed, so they can be ranked and switched off) and
``forward_head`` permutes, then classifies; for GAPNet ``pool`` returns the logits and
``forward_head`` is the identity.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn


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


def antialias(body: nn.Module, kernel: int = 4) -> None:
    """Replace strided max-pools and (non-stem) strided convs by their blur-pool versions, in place."""
    from kornia.filters import BlurPool2D, MaxBlurPool2D

    first_conv = next((m for m in body.modules() if isinstance(m, nn.Conv2d)), None)
    for parent in list(body.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.MaxPool2d) and _stride(child.stride) > 1:
                setattr(parent, name, MaxBlurPool2D(kernel, stride=_stride(child.stride), max_pool_size=2))
            elif isinstance(child, nn.Conv2d) and child is not first_conv and _stride(child.stride) > 1:
                stride = _stride(child.stride)
                child.stride = (1, 1)
                setattr(parent, name, nn.Sequential(BlurPool2D(kernel, stride=stride), child))


def _stride(stride) -> int:
    return int(stride[0] if isinstance(stride, tuple | list) else stride)


def apply_head(body: nn.Module, head: str, num_classes: int, kernel: int = 3) -> None:
    """Turn the body into a GAPNet or PermuteNet (see module docstring); ``linear`` leaves it alone."""
    if head == "linear":
        return
    head_attr = "fc" if hasattr(body, "fc") else "classifier"
    if head == "permutenet":
        setattr(body, head_attr, nn.Sequential(ChannelPermute(), getattr(body, head_attr)))
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
    if cfg.get("blurpool"):
        antialias(body, int(cfg.get("blur_kernel") or 4))
    set_padding(body, cfg.get("padding") or "zeros")
    return body
