"""Initial weights from a trained network (``model.pretrained``): torchvision's ImageNet weights or a file.

S0 section 4.5 fine-tunes an ImageNet-trained ResNet-50 for detection ("By using a pre-trained
ResNet-50 on ImageNet, we are able to reach 66% mAP on VOC2007 test set after finetuning").
``imagenet`` takes torchvision's original ImageNet weights of the architecture (``IMAGENET1K_V1``),
from torch's hub cache or downloaded there. The
weights must fit the network as built (architecture, ``model.width`` 1, ``model.stem`` of the
training, here ``imagenet``); only classifier layers (``fc`` / ``classifier``) of another shape
are left as initialised, since the number of classes differs.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from spatialprobe.errors import ConfigError, DataError
from spatialprobe.run.checkpoints import UnreadableFile, load

CLASSIFIERS = ("fc.", "classifier.")


def _torchvision_weights(arch: str) -> dict:
    from torchvision.models import get_model_weights

    try:
        enum = get_model_weights(arch)
        # the original ImageNet weights (S0, 2019), not torchvision's later, longer-trained ones
        weights = enum.IMAGENET1K_V1 if hasattr(enum, "IMAGENET1K_V1") else enum.DEFAULT
    except ValueError:
        raise ConfigError("model.pretrained", "imagenet", f"torchvision has no ImageNet weights for {arch}",
                          ["a path to a state dict"]) from None
    cache = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if cache.is_file():  # torch.hub would read it with weights_only=False: read it as every other file
        return load(cache, f"model.pretrained=imagenet ({cache})")
    try:  # downloaded (its hash checked), then read weights-only
        return weights.get_state_dict(progress=False, check_hash=True, weights_only=True)
    except Exception as err:  # no network, a truncated download
        raise DataError(f"model.pretrained=imagenet: torchvision's {weights} for {arch} is not in {cache} and could "
                        f"not be downloaded ({type(err).__name__}: {err}); copy {weights.url} to {cache}, or give "
                        f"model.pretrained=<path to a state dict>") from None


def read_state_dict(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError("model.pretrained", str(path), "no such file", ["imagenet", "a path to a state dict"])
    try:
        state = load(path, f"model.pretrained={str(path)!r}")  # tensors and plain data only: no code runs
    except UnreadableFile as err:
        raise DataError(f"{path}: not a readable state dict ({err.reason})") from None
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise DataError(f"{path}: not a state dict (a mapping of parameter names to tensors)")
    return state


def load_pretrained(body: nn.Module, arch: str, spec: str) -> None:
    """Copy the weights named by ``spec`` (``imagenet`` or a file) into ``body``, checked name by name."""
    state = _torchvision_weights(arch) if spec == "imagenet" else read_state_dict(Path(spec).expanduser())
    own = body.state_dict()
    head = lambda key: key.startswith(CLASSIFIERS)  # noqa: E731
    missing = [k for k in own if k not in state and not head(k)]
    wrong = [k for k in own if k in state and state[k].shape != own[k].shape and not head(k)]
    if missing or wrong:
        key = (wrong or missing)[0]
        found = f"shape {tuple(state[key].shape)} instead of {tuple(own[key].shape)}" if wrong else "missing"
        raise DataError(f"{spec}: the weights do not fit {arch} as configured ({len(missing)} missing, {len(wrong)} of "
                        f"another shape, e.g. {key}: {found}); they need model.width=1 and the stem they were "
                        f"trained with")
    body.load_state_dict({k: v for k, v in state.items() if k in own and v.shape == own[k].shape}, strict=False)
