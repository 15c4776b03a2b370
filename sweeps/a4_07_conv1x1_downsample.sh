#!/usr/bin/env bash
# SPEC A4.7, paper A's ablation: conv1x1 down-sampling by average pool, max pool or strided conv,
# ResNet-50 / CIFAR-100, accuracy vs K (one line per down-sampling).
#   local:  bash sweeps/a4_07_conv1x1_downsample.sh
#   SLURM:  LAUNCHER=slurm bash sweeps/a4_07_conv1x1_downsample.sh trainer=gpu hydra.launcher.gpus_per_node=1
# = python -m spatialprobe.train -m experiment=resnet50_cifar100_conv1x1_downsample hydra/launcher=local
source "$(dirname "$0")/lib.sh"
sweep experiment=resnet50_cifar100_conv1x1_downsample "$@"
figures resnet50_cifar100_conv1x1_downsample
