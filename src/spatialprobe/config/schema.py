"""What a valid configuration is: choices, ranges, unit counts, and the keys that do not change a result.

Everything here needs only OmegaConf and the standard library, so a rejected configuration, a
150-job dry run, ``inspect`` with a bad K or ``evaluate`` with a missing checkpoint are answered in a
fraction of a second: nothing of torch, torchvision, torchmetrics or Lightning is imported on the
way. The heavy modules take their constants from here (models: unit counts, stems, heads, the width
rule; methods: names and kinds; data: kinds, formats, loaders; tasks; speed; W&B modes; rank), and
``tests/test_schema.py`` holds this module against the real models and registries.

**Where a new key's check goes.** In the ``check_<group>`` function of its config group below
(``model.*`` in :func:`check_model`, ``dataset.*`` in :func:`check_dataset`, a top-level or run key
in :func:`check_run` ...), written with the ``require_*`` helpers of :mod:`spatialprobe.config.checks`:
each raises a one-line :class:`~spatialprobe.errors.ConfigError` naming the key, the bad value and
the valid choices. Its choices become a constant here, imported by the module that implements them.
A key that does not change what a run computes (where data lives, logging, checkpoint frequency)
goes into :data:`RESULT_NEUTRAL_KEYS` instead: it then stays out of the run directory's name, the
record's ``config_hash`` and the figures' variants. A check that needs data or a device (files on
disk, GPU capabilities) does not belong here: it runs where the data or the device is opened.

Every check takes the composed config as an OmegaConf ``DictConfig`` or as the plain resolved dict
a sweep check builds for each job (:func:`spatialprobe.config.checks.get` reads both).
"""

from __future__ import annotations

from omegaconf import ListConfig, OmegaConf

from spatialprobe import CONF_DIR
from spatialprobe.config.checks import (
    dotted_keys,
    get,
    has,
    require_choice,
    require_given,
    require_number,
    require_positive_int,
)
from spatialprobe.config.facts import arch_facts, method_kinds
from spatialprobe.errors import ConfigError

#: checkpoint.on_unreadable: what a run does when none of its checkpoints loads (spatialprobe.run.checkpoints)
CHECKPOINT_ON_UNREADABLE = ("fail", "restart")

# --------------------------------------------------------------------------- result-neutral keys
#: Keys that do not change what a run computes. A key names itself and everything below it. They stay
#: out of the run directory's name (hydra.job.config.override_dirname.exclude_keys in conf/train.yaml,
#: through the ``sp.result_neutral_keys`` resolver), out of ``records.config_hash`` (so a complete run
#: is skipped and an unfinished one resumed after its data moved), and are never a curve of their own
#: in plots (``plot``). tests/test_schema.py trains twice to check that changing them changes nothing.
RESULT_NEUTRAL_KEYS = (
    "experiment",          # the group choice; what it sets is in the config itself
    "experiment_name",     # names the sweep directory and W&B group
    "name",                # the run's name, derived from model, dataset, method, k, seed
    "resume",
    "dry_run",
    "cost",                # dry_run's GPU-hour estimate (cost.gpu, cost.mfu, ...)
    "paths",               # data_dir, cache_dir, run_root ($SPATIALPROBE_DATA / _CACHE / _RUNS)
    "dataset.root",        # where the data set lives (the same images from another place)
    "dataset.format",      # how those files are read (auto finds it)
    "dataset.download",
    "dataset.verify",      # md5 of the files: a check, not a change
    "logger",              # csv / wandb and their keys
    "checkpoint",          # how often last.ckpt is written; resume is bit-exact
    "lock",                # run.lock's heartbeat and stale limit
    "debug",               # injected faults (tests of resume)
    "trainer.enable_progress_bar",
    "trainer.log_every_n_steps",
)


def is_result_neutral(key: str) -> bool:
    """Whether the dotted ``key`` is, or lies below, a result-neutral key."""
    return any(key == k or key.startswith(k + ".") for k in RESULT_NEUTRAL_KEYS)


def result_neutral_override_keys(_root_=None) -> list[str]:
    """The override keys Hydra leaves out of a run directory's name: every result-neutral key and every
    key below one in the composed config (Hydra compares override keys exactly, not by prefix)."""
    keys = set(RESULT_NEUTRAL_KEYS)
    if _root_ is not None:
        app = {k: v for k, v in OmegaConf.to_container(_root_, resolve=False).items() if k != "hydra"}
        keys.update(k for k in dotted_keys(app) if is_result_neutral(k))
    return sorted(keys)


def _is_list(value) -> bool:
    return isinstance(value, list | tuple | ListConfig)


# --------------------------------------------------------------------------- models
#: Every architecture's facts, declared beside its adapter (``FACTS`` in spatialprobe/models/<family>.py,
#: read without torch by spatialprobe.config.facts; tests/test_schema.py holds them against the built networks)
ARCH_FACTS = arch_facts()
#: Modifiable units of every architecture
UNIT_COUNTS = {arch: int(f["units"]) for arch, f in ARCH_FACTS.items()}
ARCHS = tuple(sorted(UNIT_COUNTS))
FULL_WIDTH_ONLY = tuple(arch for arch, f in ARCH_FACTS.items() if f.get("full_width_only"))
STEMS = ("auto", "cifar", "imagenet", "imagenet_nopool")
HEADS = ("linear", "gapnet", "permutenet")
HEAD_KERNELS = (1, 3, 5, 7)
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
BLURPOOL = (False, True, "none", "pool", "full")  # see spatialprobe.models.position
BLUR_KERNELS = (2, 3, 4, 5, 6, 7)
COMPILE = (False, True, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")

#: Fewest channels any layer may keep under ``model.width`` (a narrower layer is a bottleneck that
#: hides what the experiment measures; the tests' tiny width 0.0625 leaves ResNet and VGG exactly 4).
MIN_CHANNELS = 4
#: The narrowest layer of every architecture at width 1: (which, channels); the width scales it.
NARROWEST = {arch: tuple(f["narrowest"]) for arch, f in ARCH_FACTS.items()}
#: Architectures whose width rounds every layer to a multiple of this (torchvision's _make_divisible).
WIDTH_DIVISOR = {arch: int(f["width_divisor"]) for arch, f in ARCH_FACTS.items() if f.get("width_divisor")}


def scaled(channels: int, width: float, divisor: int | None = None) -> int:
    """Channels of a layer under a width multiplier: rounded (at least 1), or to a multiple of ``divisor``
    the way torchvision's MobileNetV2 does (never below the divisor, never 10 % below the exact value)."""
    if divisor is None:
        return max(1, int(round(channels * width)))
    exact = channels * width
    rounded = max(divisor, int(exact + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * exact else rounded


def narrowest_channels(arch: str, width: float) -> int:
    """Channels of ``arch``'s narrowest layer at ``width``."""
    return scaled(NARROWEST[arch][1], width, WIDTH_DIVISOR.get(arch))


def unit_count(arch: str) -> int:
    """Number of modifiable units of ``arch`` (no model is built)."""
    return UNIT_COUNTS[arch]


def resolve_stem(stem: str, image_size: int) -> str:
    """``model.stem=auto``: the 32 px stem up to 64 px inputs, else torchvision's ImageNet stem."""
    return ("cifar" if image_size <= 64 else "imagenet") if stem == "auto" else stem


def has_strided_maxpool(arch: str, stem: str, image_size: int) -> bool:
    """Whether the network down-samples with a strided max-pool (BlurPool's ``pool`` mode blurs after it):
    the architecture's ``strided_maxpool`` fact (``always``, ``never``, or ``imagenet_stem``: only with
    torchvision's ImageNet stem, e.g. ResNets)."""
    rule = ARCH_FACTS[arch]["strided_maxpool"]
    return rule == "always" or (rule == "imagenet_stem" and resolve_stem(stem, image_size) == "imagenet")


def blurpool_mode(value) -> str:
    """``model.blurpool`` as one of none / pool / full (``false`` = none, ``true`` = pool)."""
    if value is None or value is False:
        return "none"
    return "pool" if value is True else str(value)


def check_model(cfg) -> None:
    arch = require_choice(cfg, "model.arch", ARCHS)
    width = require_number(cfg, "model.width", minimum=0, exclusive_minimum=True)
    if arch in FULL_WIDTH_ONLY and width != 1:
        raise ConfigError("model.width", width, f"{arch} is built at full width only", [1.0])
    narrowest = narrowest_channels(arch, width)
    if narrowest < MIN_CHANNELS:
        what, full = NARROWEST[arch]
        raise ConfigError("model.width", width, f"leaves {arch}'s narrowest layer ({what}, {full} channels at width 1) "
                          f"{narrowest} channel(s) wide; every layer needs >= {MIN_CHANNELS}",
                          [f">= {MIN_CHANNELS / full:g}"])
    if has(cfg, "model.stem"):
        require_choice(cfg, "model.stem", STEMS)
    if has(cfg, "model.fc_width"):
        require_number(cfg, "model.fc_width", integer=True, minimum=MIN_CHANNELS)
    if has(cfg, "model.dropout"):
        require_number(cfg, "model.dropout", minimum=0, maximum=1)
    if has(cfg, "model.hidden"):
        require_number(cfg, "model.hidden", integer=True, minimum=MIN_CHANNELS)
    # part B options; optional (a model config without them is a plain linear-head, zero-padded network)
    for key, choices in (("model.head", HEADS), ("model.head_kernel", HEAD_KERNELS), ("model.padding", PADDING_MODES),
                         ("model.blurpool", BLURPOOL), ("model.blur_kernel", BLUR_KERNELS)):
        if get(cfg, key) is not None:
            require_choice(cfg, key, choices)
    size, stem = get(cfg, "dataset.image_size"), get(cfg, "model.stem") or "auto"
    if blurpool_mode(get(cfg, "model.blurpool")) == "pool" and isinstance(size, int) and \
            not has_strided_maxpool(arch, stem, size):
        raise ConfigError("model.blurpool", get(cfg, "model.blurpool"),
                          f"{arch} with stem '{stem}' at {size} px has no strided max-pool to blur (BlurPool after "
                          "each max-pool would change nothing); 'full' also blurs before every strided conv",
                          ["full", False])
    for key, choices in (("model.channels_last", (False, True)), ("model.compile", COMPILE)):
        if has(cfg, key):
            require_choice(cfg, key, choices)
    pretrained = get(cfg, "model.pretrained")
    if pretrained is not None and not isinstance(pretrained, str):
        raise ConfigError("model.pretrained", pretrained, "must be imagenet or the path of a state dict",
                          ["null", "imagenet", "/path/to/weights.pth"])


# --------------------------------------------------------------------------- methods and K
#: Every method and its kind (``KIND`` in spatialprobe/methods/<name>.py, read without torch): op = a
#: parameter-free random op at the unit's shuffle sites, gap_fc = global pooling then fully connected
#: units, conv1x1 = kxk convs made 1x1, none = the baseline.
METHOD_KINDS = method_kinds()
METHODS = tuple(METHOD_KINDS)
PARAMETER_FREE = tuple(name for name, kind in METHOD_KINDS.items() if kind == "op")  # applicable at test time
DOWNSAMPLE = ("avgpool", "maxpool", "stride")  # conv1x1 where the unit down-samples


def check_method(cfg) -> None:
    """method, k, unit, patch size, downsample and strip, against the model's unit count."""
    name = require_choice(cfg, "method.name", METHODS)
    kind = METHOD_KINDS[name]
    arch = require_choice(cfg, "model.arch", ARCHS)
    n = unit_count(arch)
    k = require_number(cfg, "k", integer=True, minimum=0)
    if k > n:
        raise ConfigError("k", k, f"{arch} has {n} modifiable units", [f"0..{n}"])
    unit = get(cfg, "method.unit")
    if unit is not None:
        if kind == "gap_fc":
            raise ConfigError("method.unit", unit, "gap_fc pools globally from its first unit on, so it is only "
                              "defined for the last K units; use k=K", ["null"])
        require_number(cfg, "method.unit", integer=True, minimum=0, maximum=n - 1)
        if k != 0:
            raise ConfigError("k", k, "method.unit selects one unit; leave k at 0", [0])
    if kind == "none" and k != 0:
        raise ConfigError("k", k, "method=none modifies no unit", [0])
    if has(cfg, "method.patch_size"):
        require_number(cfg, "method.patch_size", integer=True, minimum=1)
    if has(cfg, "method.downsample"):
        require_choice(cfg, "method.downsample", DOWNSAMPLE)
    strip = get(cfg, "method.strip") or 0
    if strip:
        require_number(cfg, "method.strip", integer=True, minimum=0)
        n_modified = 1 if unit is not None else k
        if strip > n_modified:
            raise ConfigError("method.strip", strip, f"cannot remove more units than the {n_modified} modified",
                              [f"0..{n_modified}"])
    for key in ("method.train", "method.test"):
        if has(cfg, key) and not isinstance(get(cfg, key), bool):
            raise ConfigError(key, get(cfg, key), "must be a boolean", ["true", "false"])


# --------------------------------------------------------------------------- data
# in-memory 32/64 px sets | full-size class folders | part B grid | Cityscapes (segmentation) | boxes (detection)
DATASET_KINDS = ("array", "imagefolder", "grid", "cityscapes", "detect")
FORMATS = ("auto", "cifar", "folder", "smallimagenet")
LOADERS = ("device", "torch")
PLACEMENTS = ("auto", "device", "host")
GRID_TARGETS = ("location", "class")
GRID_SOURCES = ("cifar10", "cifar100")


def native_size(cfg) -> object:
    """The size of the stored images (``dataset.native_size``, else ``dataset.image_size``)."""
    return get(cfg, "dataset.native_size") or get(cfg, "dataset.image_size")


def _check_array_dataset(cfg) -> None:
    require_choice(cfg, "dataset.format", FORMATS)
    for key, choices in (("dataset.loader", LOADERS), ("dataset.placement", PLACEMENTS)):
        if has(cfg, key):
            require_choice(cfg, key, choices)
    require_number(cfg, "dataset.num_workers", integer=True, minimum=0, optional=True)
    require_positive_int(cfg, "dataset.native_size", optional=True)
    size = require_positive_int(cfg, "dataset.image_size")
    stored = native_size(cfg)
    if size != stored and size % 32:
        raise ConfigError("dataset.image_size", size, f"must be a positive multiple of 32 to resize the stored "
                          f"{stored} px {get(cfg, 'dataset.name')} images", [32, 64, 96, "..."])


def _check_imagefolder_dataset(cfg) -> None:
    resize = require_positive_int(cfg, "dataset.resize_size")
    require_number(cfg, "dataset.num_workers", integer=True, minimum=0)
    size = require_positive_int(cfg, "dataset.image_size")
    if resize < size:
        raise ConfigError("dataset.resize_size", resize,
                          f"must be >= dataset.image_size ({size}): the centre crop is taken from it")


def _check_grid_dataset(cfg) -> None:
    """The grid keys come first: num_classes and image_size are derived from them."""
    grid = require_number(cfg, "dataset.grid", integer=True, minimum=1)
    if require_choice(cfg, "dataset.target", GRID_TARGETS) == "location" and grid == 1:
        raise ConfigError("dataset.grid", grid, "a 1x1 grid has one location, nothing to learn; dataset.target=class "
                          "takes it (the plain image)", [">= 2"])
    require_choice(cfg, "dataset.source", GRID_SOURCES)
    require_positive_int(cfg, "dataset.source_classes")
    require_positive_int(cfg, "dataset.cell_size")
    require_number(cfg, "dataset.placement_seed", integer=True, minimum=0)
    _check_array_dataset(cfg)


def _check_cityscapes_dataset(cfg) -> None:
    for key in ("dataset.base_size", "dataset.crop_size"):
        require_positive_int(cfg, key)
    require_number(cfg, "dataset.num_workers", integer=True, minimum=0)
    scale = get(cfg, "dataset.scale_range")
    if not _is_list(scale) or len(scale) != 2 or not 0 < scale[0] <= scale[1]:
        raise ConfigError("dataset.scale_range", list(scale) if _is_list(scale) else scale,
                          "must be [min, max] with 0 < min <= max", ["[0.5, 2.0]"])


VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
               "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")
DETECT_SOURCES = ("voc", "cifar10", "cifar100")  # Pascal VOC, or CIFAR objects pasted on canvases


def voc_set(key: str, value) -> tuple[str, str]:
    """``"2007:trainval"`` -> ("2007", "trainval"), checked against what VOC has."""
    year, _, image_set = str(value).partition(":")
    sets = ("train", "val", "trainval", "test") if year == "2007" else ("train", "val", "trainval")
    if year not in [str(y) for y in range(2007, 2013)] or image_set not in sets:
        raise ConfigError(key, value, "must be YEAR:SET with YEAR 2007..2012 and SET train / val / trainval "
                          "(test: 2007 only)", ["2007:trainval", "2012:trainval", "2007:test"])
    return year, image_set


def _pair(cfg, key: str, lo: float, hi: float, integer: bool) -> tuple:
    value = get(cfg, key)
    ok = _is_list(value) and len(value) == 2 and all(
        isinstance(v, int if integer else int | float) and not isinstance(v, bool) for v in value)
    if not ok or not (lo <= value[0] <= value[1] <= hi):
        raise ConfigError(key, list(value) if _is_list(value) else value,
                          f"must be [min, max] with {lo} <= min <= max <= {hi}", ["[1, 4]"])
    return tuple(value)


def _check_detect_dataset(cfg) -> None:
    """Detection data (spatialprobe.data.detection): Pascal VOC's sets, or the canvases of cifar10_detect."""
    source = require_choice(cfg, "dataset.source", DETECT_SOURCES)
    require_choice(cfg, "dataset.augment", [True, False])
    require_number(cfg, "dataset.jitter", minimum=0, maximum=0.9)
    require_number(cfg, "dataset.color", minimum=0, maximum=1)
    require_number(cfg, "dataset.num_workers", integer=True, minimum=0)
    size = require_positive_int(cfg, "dataset.image_size")
    if source == "voc":
        if get(cfg, "dataset.num_classes") != len(VOC_CLASSES):
            raise ConfigError("dataset.num_classes", get(cfg, "dataset.num_classes"), "Pascal VOC has 20 classes", [20])
        sets = get(cfg, "dataset.train_sets")
        if not _is_list(sets) or not sets:
            raise ConfigError("dataset.train_sets", sets, "must list the training sets",
                              ['["2007:trainval","2012:trainval"]'])
        for value in sets:
            voc_set("dataset.train_sets", value)
        voc_set("dataset.test_set", get(cfg, "dataset.test_set"))
        return
    require_positive_int(cfg, "dataset.source_classes")
    require_positive_int(cfg, "dataset.source_size")
    classes = get(cfg, "dataset.classes")
    if classes is not None and not (_is_list(classes) and classes and all(isinstance(c, str) for c in classes)
                                    and len(set(classes)) == len(classes)):
        raise ConfigError("dataset.classes", classes, f"must be null (all {source} classes) or a list of "
                          "distinct class names", ["null", "[airplane,automobile,frog,horse]"])
    _pair(cfg, "dataset.objects", 1, 64, integer=True)
    _pair(cfg, "dataset.object_size", 4, size, integer=True)
    require_number(cfg, "dataset.max_overlap", minimum=0, maximum=1)
    require_positive_int(cfg, "dataset.train_canvases")
    require_positive_int(cfg, "dataset.test_canvases")
    require_number(cfg, "dataset.build_seed", integer=True, minimum=0)


_DATASET_CHECKS = {"array": _check_array_dataset, "imagefolder": _check_imagefolder_dataset,
                   "grid": _check_grid_dataset, "cityscapes": _check_cityscapes_dataset,
                   "detect": _check_detect_dataset}


def check_dataset(cfg) -> None:
    """The dataset keys (no file is opened: missing data is found where it is read)."""
    kind = require_choice(cfg, "dataset.kind", DATASET_KINDS) if has(cfg, "dataset.kind") else "array"
    _DATASET_CHECKS[kind](cfg)
    require_positive_int(cfg, "dataset.num_classes")
    require_positive_int(cfg, "dataset.image_size")
    require_positive_int(cfg, "dataset.subset", optional=True)
    require_positive_int(cfg, "dataset.eval_subset", optional=True)
    require_number(cfg, "dataset.val_size", integer=True, minimum=0)
    for key in ("dataset.mean", "dataset.std"):
        value = get(cfg, key)
        if not _is_list(value) or len(value) != 3:
            raise ConfigError(key, value, "must list 3 values (R, G, B)")


# --------------------------------------------------------------------------- task, recipe, trainer
#: The tasks: conf/task/<name>.yaml, each with its module spatialprobe.tasks.<name>
TASKS = tuple(sorted(p.stem for p in (CONF_DIR / "task").glob("*.yaml") if not p.stem.startswith("_")))
#: Methods a detector's backbone takes: every kind that keeps the spatial map the boxes are read from
DETECT_METHODS = tuple(name for name, kind in METHOD_KINDS.items() if kind != "gap_fc")
OPTIMIZERS = ("sgd", "adam", "rmsprop")
#: debug.kill_during: the moments other than a training step at which a run can be SIGKILLed (run.callbacks.DebugFaults)
KILL_MOMENTS = ("validation", "epoch_end", "epoch_start", "test")
SCHEDULES = ("multistep", "exponential", "poly", "onecycle", "cosine", "constant")
#: Lightning's precision values and their short aliases
PRECISIONS = ("32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true", "transformer-engine",
              "transformer-engine-float16", "64", "32", "16", "bf16", 64, 32, 16)
#: The paper's recipe of each grid target (SPEC part B): conf/recipe/<name>.yaml
GRID_RECIPES = {"location": "grid_location", "class": "grid_recognition"}


def consistency_shifts(cfg) -> list:
    """``eval.consistency`` as a list of S (a single S or a list; null: none)."""
    value = get(cfg, "eval.consistency")
    if value is None:
        return []
    return list(value) if _is_list(value) else [value]


def task_name(cfg) -> str:
    """The config's task (``task.name``; ``classify`` when the config has none)."""
    return get(cfg, "task.name") or "classify"


def context_margin(cfg) -> int:
    """Px of real image context the test loader adds around each image for Cons.S (class-folder sets only)."""
    shifts = consistency_shifts(cfg)
    return -(-max(shifts) // 2) if shifts and get(cfg, "dataset.kind") == "imagefolder" else 0


def check_task(cfg) -> None:
    """task (classify / augshift / segment / detect) and the shift consistency of the test set (eval.consistency)."""
    if get(cfg, "task") is not None:
        require_choice(cfg, "task.name", TASKS)
    task = get(cfg, "task.name") or "classify"
    size = get(cfg, "dataset.image_size")
    if task == "augshift":
        require_number(cfg, "augshift.lambda", minimum=0)
        require_choice(cfg, "task.views", [2])  # the loader's two augmented views of every image
    elif get(cfg, "task.views") is not None:
        require_choice(cfg, "task.views", [1])  # one view: only augshift trains on pairs
    if task == "segment":
        require_number(cfg, "segment.aux_weight", minimum=0)
        require_number(cfg, "segment.aux_lr_factor", minimum=0, exclusive_minimum=True)
    segmentation = [get(cfg, "dataset.kind") == "cityscapes", get(cfg, "model.arch") == "deeplabv3_resnet50"]
    if task == "segment" and not all(segmentation) or task != "segment" and any(segmentation):
        raise ConfigError("task.name", task, "task=segment goes with a segmentation data set "
                          "(dataset=cityscapes) and a segmentation model (model=deeplabv3_resnet50), and only them",
                          ["segment with dataset=cityscapes", "classify / augshift / detect otherwise"])
    detect_data = get(cfg, "dataset.kind") == "detect"
    if detect_data and task != "detect":
        raise ConfigError("task", task, f"{get(cfg, 'dataset.name')} is a detection data set", ["detect"])
    if task == "detect":
        if not detect_data:
            raise ConfigError("dataset", get(cfg, "dataset.name"), "task=detect needs a detection data set",
                              ["voc", "cifar10_detect"])
        _check_detect_task(cfg)
    shifts = consistency_shifts(cfg)
    for s in shifts:
        if isinstance(s, bool) or not isinstance(s, int) or s < 1:
            raise ConfigError("eval.consistency", s, "must be a shift in px >= 1, or a list of them", ["8", "[8,16]"])
        if isinstance(size, int) and s >= size:
            raise ConfigError("eval.consistency", s, f"must be smaller than the {size} px images", [f"1..{size - 1}"])
    if len(set(shifts)) != len(shifts):
        raise ConfigError("eval.consistency", list(shifts), "lists a shift twice")
    if shifts:
        require_positive_int(cfg, "eval.consistency_passes")
        resize = get(cfg, "dataset.resize_size")
        crop = size + 2 * -(-max(shifts) // 2) if isinstance(size, int) else None
        if get(cfg, "dataset.kind") == "imagefolder" and isinstance(resize, int) and crop > resize:
            raise ConfigError("eval.consistency", max(shifts), f"the shifted views are cut from a {crop} px centre "
                              f"crop, larger than dataset.resize_size={resize}",
                              [f"1..{resize - size}", f"dataset.resize_size>={crop}"])


def _check_detect_task(cfg) -> None:
    """task=detect: the head's keys, and what a detector cannot be combined with."""
    require_choice(cfg, "method.name", DETECT_METHODS)
    if get(cfg, "model.head") not in (None, "linear"):
        raise ConfigError("model.head", get(cfg, "model.head"), "a detector replaces the classifier head", ["linear"])
    if consistency_shifts(cfg):
        raise ConfigError("eval.consistency", get(cfg, "eval.consistency"), "shift consistency compares class "
                          "predictions; task=detect has none", ["null"])
    require_positive_int(cfg, "detect.boxes")
    require_choice(cfg, "detect.head_stride", [1, 2])
    for key in ("lambda_coord", "lambda_noobj"):
        require_number(cfg, f"detect.{key}", minimum=0)
    require_number(cfg, "detect.score_threshold", minimum=0, maximum=1)
    require_number(cfg, "detect.nms_iou", minimum=0, maximum=1, exclusive_minimum=True)
    require_positive_int(cfg, "detect.max_detections")
    require_number(cfg, "detect.show_threshold", minimum=0, maximum=1)


def check_recipe(cfg) -> None:
    """The recipe's keys: optimiser, schedule and their numbers (module.build_optimizer / build_scheduler)."""
    optimizer = require_choice(cfg, "recipe.optimizer", OPTIMIZERS)
    schedule = require_choice(cfg, "recipe.schedule", SCHEDULES)
    require_number(cfg, "recipe.lr", minimum=0, exclusive_minimum=True)
    require_number(cfg, "recipe.batch_size", integer=True, minimum=1)
    require_number(cfg, "recipe.lr_scale_batch", integer=True, minimum=1, optional=True)
    require_number(cfg, "recipe.weight_decay", minimum=0)
    if optimizer in ("sgd", "rmsprop"):
        require_number(cfg, "recipe.momentum", minimum=0, maximum=1)
    if optimizer == "rmsprop":
        require_number(cfg, "recipe.alpha", minimum=0, maximum=1)
        require_number(cfg, "recipe.eps", minimum=0, exclusive_minimum=True)
    if schedule == "multistep":  # x gamma at each milestone (> 1 raises the rate: a test wrecks a run with it)
        require_number(cfg, "recipe.gamma", minimum=0, exclusive_minimum=True)
    if schedule == "exponential":  # x gamma after every epoch
        require_number(cfg, "recipe.gamma", minimum=0, maximum=1, exclusive_minimum=True)
    if schedule == "poly":
        require_number(cfg, "recipe.poly_power", minimum=0, exclusive_minimum=True)
    warmup = require_number(cfg, "recipe.warmup_epochs", minimum=0, optional=True)
    if warmup and schedule == "onecycle":
        raise ConfigError("recipe.warmup_epochs", warmup, "the one-cycle schedule has its own warm-up", [0])


def check_trainer(cfg) -> None:
    """The Trainer keys that need no device (GPU presence and bf16 support: speed.check_devices)."""
    require_choice(cfg, "trainer.precision", PRECISIONS)
    require_number(cfg, "trainer.max_epochs", integer=True, minimum=1)


def recipe_note(cfg) -> str | None:
    """One line when a grid task trains with a recipe other than the paper's for its target."""
    target, recipe = get(cfg, "dataset.target"), get(cfg, "recipe.name")
    if get(cfg, "dataset.kind") != "grid" or target not in GRID_RECIPES or recipe == GRID_RECIPES[target]:
        return None
    return (f"spatialprobe: note: dataset.target={target} trains with recipe={recipe}; the paper's recipe for it is "
            f"recipe={GRID_RECIPES[target]}")


# --------------------------------------------------------------------------- a training run
LOGGERS = ("csv", "wandb")
WANDB_MODES = ("offline", "online", "disabled")
# wandb's own names for the same modes (WANDB_MODE=dryrun is what older Lightning versions write)
WANDB_MODE_ALIASES = {"dryrun": "offline", "run": "online"}


def wandb_mode(value: object, key: str = "logger.mode") -> str:
    """``value`` as one of WANDB_MODES (wandb's aliases accepted); ConfigError otherwise."""
    mode = WANDB_MODE_ALIASES.get(value, value) if isinstance(value, str) else value
    if mode not in WANDB_MODES:
        raise ConfigError(key, value, "not one of the valid W&B modes",
                          [*WANDB_MODES, *(f"{a} (= {m})" for a, m in WANDB_MODE_ALIASES.items())])
    return mode


def check_logger(cfg) -> None:
    """logger.*; W&B online also needs credentials on this machine (read by spatialprobe.run.loggers with the
    standard library: no wandb import, no network)."""
    if require_choice(cfg, "logger.name", LOGGERS) != "wandb":
        return
    from spatialprobe.config.wandb_login import require_wandb_login

    require_wandb_login(wandb_mode(get(cfg, "logger.mode")))
    require_number(cfg, "logger.init_timeout", minimum=0, exclusive_minimum=True)
    require_number(cfg, "logger.finish_timeout", minimum=0, exclusive_minimum=True)


def check_run(cfg) -> None:
    """Top-level keys, checkpointing and fault injection."""
    require_number(cfg, "seed", integer=True, minimum=0)
    require_number(cfg, "checkpoint.every_n_steps", integer=True, minimum=1, optional=True)
    require_number(cfg, "checkpoint.every_minutes", minimum=0, exclusive_minimum=True, optional=True)
    require_number(cfg, "checkpoint.signal_deadline_s", minimum=0, exclusive_minimum=True, optional=True)
    require_number(cfg, "eval.test_passes", integer=True, minimum=1, optional=True)
    if get(cfg, "checkpoint.on_unreadable", None) is not None:
        require_choice(cfg, "checkpoint.on_unreadable", CHECKPOINT_ON_UNREADABLE)
    beat = require_number(cfg, "lock.heartbeat_s", minimum=0, exclusive_minimum=True, optional=True)
    stale = require_number(cfg, "lock.stale_after_s", minimum=0, exclusive_minimum=True, optional=True)
    if beat is not None and stale is not None and stale < 3 * beat:
        raise ConfigError("lock.stale_after_s", stale, f"must be at least 3 x lock.heartbeat_s ({beat:g}), or a "
                          "live holder's lock could be taken over between two heartbeats", [f">= {3 * beat:g}"])
    require_number(cfg, "debug.kill_at_step", integer=True, minimum=0, optional=True)
    require_number(cfg, "debug.hang_at_step", integer=True, minimum=0, optional=True)
    require_number(cfg, "debug.crash_at_epoch", integer=True, minimum=0, optional=True)
    if get(cfg, "debug.kill_during") is not None:
        require_choice(cfg, "debug.kill_during", KILL_MOMENTS)
    only = get(cfg, "debug.only_jobs")
    if only is not None and not (_is_list(only) and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                                                        for n in only)):
        raise ConfigError("debug.only_jobs", only, "must be a list of job numbers of the multirun", ["[0]", "[1,3]"])


def check_cost(cfg) -> None:
    """The keys of a dry run's cost estimate (spatialprobe.launch.cost): the GPU, its utilisation, a throughput."""
    from spatialprobe.config.gpus import PEAK_TFLOPS  # a table, stdlib only

    gpu = get(cfg, "cost.gpu")
    if gpu is not None and str(gpu) not in PEAK_TFLOPS:
        raise ConfigError("cost.gpu", gpu, "not a GPU of the built-in table (or set cost.peak_tflops)",
                          sorted(PEAK_TFLOPS))
    require_number(cfg, "cost.mfu", minimum=0, maximum=1, exclusive_minimum=True, optional=True)
    require_number(cfg, "cost.peak_tflops", minimum=0, exclusive_minimum=True, optional=True)
    require_number(cfg, "cost.images_per_s", minimum=0, exclusive_minimum=True, optional=True)


def validate_train(cfg) -> None:
    """Every check of a training run that needs neither data nor a device; runs before anything is written."""
    check_run(cfg)
    check_dataset(cfg)
    check_model(cfg)
    check_method(cfg)
    check_task(cfg)
    check_recipe(cfg)
    check_trainer(cfg)
    check_cost(cfg)
    check_logger(cfg)


def validate_inspect(cfg) -> None:
    """``spatialprobe.inspect`` builds the network only: model, method and K."""
    check_model(cfg)
    check_method(cfg)


# --------------------------------------------------------------------------- sweeps
def check_local_launcher(cfg) -> int:
    """hydra/launcher=local's keys; returns the GPUs per job (checked against the machine by the launcher)."""
    require_number(cfg, "hydra.launcher.max_parallel", integer=True, minimum=1, optional=True)
    return int(require_number(cfg, "hydra.launcher.gpus_per_node", integer=True, minimum=0, optional=True) or 0)


def check_search(cfg) -> tuple[int, int]:
    """``spatialprobe.search_k``'s keys: returns (the model's units, the largest K to consider)."""
    require_number(cfg, "search.tolerance", minimum=0)
    arch = require_choice(cfg, "model.arch", ARCHS)
    units = unit_count(arch)
    k_max = require_number(cfg, "search.k_max", integer=True, minimum=1, maximum=units, optional=True)
    if get(cfg, "method.name") == "none":
        raise ConfigError("method", "none", "search_k needs a method that modifies units",
                          [name for name in METHODS if name != "none"])
    return units, units if k_max is None else k_max


# --------------------------------------------------------------------------- evaluate
EVAL_SPLITS = ("test", "val")
EVAL_DEVICES = ("auto", "cpu", "cuda")


def check_evaluate(cfg) -> None:
    """The options of ``spatialprobe.evaluate`` that need no checkpoint: they run before it is loaded."""
    require_number(cfg, "eval.passes", integer=True, minimum=1)
    require_number(cfg, "eval.batch_size", integer=True, minimum=1)
    require_choice(cfg, "eval.split", EVAL_SPLITS)
    require_choice(cfg, "eval.device", EVAL_DEVICES)
    method = get(cfg, "method.name")
    if get(cfg, "method") is not None:
        if method not in PARAMETER_FREE and method != "none":
            raise ConfigError("method", method, "only a parameter-free method can be applied to a trained network",
                              PARAMETER_FREE)
    elif get(cfg, "k") != 0:
        raise ConfigError("k", get(cfg, "k"), "k selects the units of a test-time method; add method=...", [0])


def check_test_time_method(cfg, trained) -> None:
    """The test-time method of ``spatialprobe.evaluate`` against the trained network's config."""
    if get(cfg, "method") is not None:
        check_method({"model": get(trained, "model"), "method": get(cfg, "method"), "k": get(cfg, "k")})


# --------------------------------------------------------------------------- rank, decode
RANK_SOURCES = ("classifier", "segmentation")
RANKINGS = ("overall", "left", "right")
VARIANTS = ("image_flip", "kernel_flip_image", "kernel_flip")  # P: Normal, Kernel-Flip*, Kernel-Flip**


def require_device(cfg, key: str = "device") -> str:
    """A device name (``auto``, ``cpu``, ``cuda``, ``cuda:N``); whether CUDA is there is asked where it is used."""
    name = get(cfg, key)
    if not isinstance(name, str) or not (name in ("auto", "cpu") or name.startswith("cuda")):
        raise ConfigError(key, name, "not a device", ["auto", "cpu", "cuda", "cuda:1"])
    return name


def _one_or_more(cfg, key: str, choices) -> list:
    """A choice, or a list of choices (each once)."""
    value = get(cfg, key)
    values = list(value) if _is_list(value) else [value]
    bad = [v for v in values if v not in choices]
    if bad or not values or len(set(values)) != len(values):
        raise ConfigError(key, bad[0] if bad else value, "not one of the valid choices (or a list of them, each once)",
                          choices)
    return values


def check_rank(cfg) -> list[int]:
    """``spatialprobe.rank``: checks that need neither data nor a model; returns the list of N (``top_n``)."""
    source = require_choice(cfg, "source", RANK_SOURCES)
    _one_or_more(cfg, "ranking", RANKINGS)
    _one_or_more(cfg, "variant", VARIANTS)
    ranges = get(cfg, "rank_ranges")
    for spec in (list(ranges) if _is_list(ranges) else [ranges]) if ranges is not None else []:
        ok = _is_list(spec) and len(spec) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in spec)
        if not ok or not 1 <= spec[0] <= spec[1]:
            raise ConfigError("rank_ranges", list(spec) if _is_list(spec) else spec,
                              "each range is [first, last] ranks, 1 <= first <= last", ["[[1,100],[101,200]]"])
    require_number(cfg, "fig5.images", integer=True, minimum=0)
    require_device(cfg)
    top_n = get(cfg, "top_n")
    sizes = list(top_n) if _is_list(top_n) else [top_n]
    for n in sizes:  # the upper bound (the latent size) is checked once the model is built
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError("top_n", n, "must be an integer >= 1 (a number of latent channels)")
    require_number(cfg, "random_draws", integer=True, minimum=1)
    require_positive_int(cfg, "probe_images")
    require_positive_int(cfg, "eval_images", optional=True)
    require_positive_int(cfg, "batch_size")
    require_number(cfg, "seed", integer=True, minimum=0)
    if source == "classifier":
        require_given(cfg, "checkpoint", "runs/<run>/checkpoints/last.ckpt",
                      "the spatialprobe.train checkpoint whose latent channels are ranked")
    if not get(cfg, "checkpoint") and not get(cfg, "output"):
        require_given(cfg, "output", "position.json", "where the record goes when no checkpoint is given")
    if source == "segmentation":
        require_positive_int(cfg, "segmentation.num_classes")
    return [int(n) for n in sizes]


def check_decode(cfg) -> list[int]:
    """``spatialprobe.decode``: checks that need neither data nor a model; returns the grid sizes n."""
    grid = get(cfg, "grid")
    grids = list(grid) if _is_list(grid) else [grid]
    for n in grids:
        if isinstance(n, bool) or not isinstance(n, int) or n < 2:
            raise ConfigError("grid", n, "must be a grid size n >= 2 (n x n cells), or a list of them", ["3", "[3,5]"])
    if not get(cfg, "checkpoint") and not get(cfg, "sweep_dir"):
        require_given(cfg, "checkpoint", "runs/<run>/checkpoints/last.ckpt (or sweep_dir=runs/sweeps/<experiment>)",
                      "the spatialprobe.train checkpoint whose latent is read out")
    for key in ("train_images", "test_images", "placements", "epochs", "batch_size"):
        require_positive_int(cfg, key)
    require_number(cfg, "lr", minimum=0, exclusive_minimum=True)
    require_number(cfg, "seed", integer=True, minimum=0)
    require_device(cfg)
    return [int(n) for n in grids]
