#!/usr/bin/env bash
# S1 appendix A.1, Fig. 4: conv1x1 down-sampling by average pool, max pool or strided conv,
# ResNet-50 / Small-ImageNet-32, accuracy vs K (one line per down-sampling).
#   local:  bash sweeps/a4_07_conv1x1_downsample.sh dataset.root=/data/imagenet32
#   SLURM:  LAUNCHER=slurm bash sweeps/a4_07_conv1x1_downsample.sh trainer=gpu hydra.launcher.gpus_per_node=1 dataset.root=...
# = python -m spatialprobe.train -m experiment=resnet50_imagenet32_conv1x1_downsample hydra/launcher=local
source "$(dirname "$0")/lib.sh"
sweep experiment=resnet50_imagenet32_conv1x1_downsample "$@"
figures resnet50_imagenet32_conv1x1_downsample
