"""Model size and cost: exact parameter count and FLOPs per image (torch's flop counter)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def dummy_forward(model: nn.Module, image_size: int, forward=None, batch: int = 1, channels: int = 3):
    """``forward(x)`` (default: ``model(x)``) on a batch of black images, in eval mode and without gradients,
    on the model's device; the model's training mode is restored afterwards, whatever happens."""
    was_training = model.training
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    model.eval()
    try:
        with torch.no_grad():
            return (forward or model)(torch.zeros(batch, channels, image_size, image_size, device=device))
    finally:
        model.train(was_training)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, image_size: int, channels: int = 3) -> int:
    """FLOPs of one forward pass of one image (a multiply-add counts as 2), in eval mode."""
    with FlopCounterMode(display=False) as counter:
        dummy_forward(model, image_size, channels=channels)
    return int(counter.get_total_flops())


def _pair(v) -> int:
    return int(v[0] if isinstance(v, tuple | list) else v)


def feature_maps(model, image_size: int, channels: int = 3) -> list[dict]:
    """Input and output spatial size of every unit (one forward of a dummy image, eval mode)."""
    body = model.body
    names = model.unit_names()
    sizes: dict[str, dict] = {}
    hooks = []

    def hook(name):
        def fn(_m, args, out):
            hw = lambda t: list(t.shape[2:]) if t.dim() == 4 else [1, 1]  # noqa: E731
            sizes[name] = {"input": hw(args[0]), "output": hw(out)}
        return fn

    for name in names:
        hooks.append(body.get_submodule(name).register_forward_hook(hook(name)))
    try:
        dummy_forward(model, image_size, channels=channels)
    finally:
        for h in hooks:
            h.remove()
    return [{"unit": i, "name": n, **sizes.get(n, {"input": None, "output": None})} for i, n in enumerate(names)]


def receptive_field(model, modified_units: list[int] | tuple[int, ...] = ()) -> int | None:
    """Theoretical receptive field (pixels, one axis) of the spatial part of the network, in the
    convention of S1 Fig. 3 (right): the field of the feature map that enters the first modified
    unit (``modified_units``: unit indices, e.g. the surgery report's), or, with none modified, of the
    last feature map before global pooling.

    Walks the layers in forward order, ignoring skip projections, and stops at the first modified
    unit or the first global pooling: each kxk conv or pool with stride s grows the field by
    (k-1) * jump, then jump *= s. Layers behind the first modified unit do not count, not even the
    pools between 1x1 convs: for VGG-16 at 32 px with conv1x1 on the last K = 10 .. 0 convs this
    gives the paper's axis 10 16 24 32 44 60 76 100 132 164 212. None where a spatial map is
    flattened into a fully connected layer (the MLP): every output then sees the whole image.
    """
    skip = model.family.skip_branch
    names = model.unit_names()
    stop = names[min(modified_units)] if modified_units else None
    rf, jump = 1, 1
    for name, m in model.body.named_modules():
        if name == stop:
            break
        if skip and f".{skip}" in f".{name}":
            continue
        if isinstance(m, nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool2d):  # gap_fc's GlobalAvgPool is one
            break
        if isinstance(m, nn.Flatten):
            return None
        if isinstance(m, nn.Conv2d):
            k = _pair(m.dilation) * (_pair(m.kernel_size) - 1) + 1
        elif isinstance(m, nn.MaxPool2d | nn.AvgPool2d):
            k = _pair(m.kernel_size)
        elif isinstance(getattr(m, "kernel", None), int) and isinstance(getattr(m, "stride", None), int):
            k = m.kernel  # a fixed filter with a stride (BlurPool's blur and subsampling)
        else:
            continue
        rf += (k - 1) * jump
        jump *= _pair(m.stride)
    return rf
