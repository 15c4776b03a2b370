#!/usr/bin/env bash
# SPEC A4.2, paper A's figure: VGG-16 / CIFAR-100, accuracy vs K for spatial and channel shuffle.
#   local:  bash sweeps/a4_02_spatial_vs_channel.sh
#   SLURM:  LAUNCHER=slurm bash sweeps/a4_02_spatial_vs_channel.sh trainer=gpu hydra.launcher.gpus_per_node=1
# = python -m spatialprobe.train -m experiment=vgg16_cifar100_spatial_vs_channel hydra/launcher=local
#   (sweeps method=spatial_shuffle,channel_shuffle k='range(0,14)')
source "$(dirname "$0")/lib.sh"
sweep experiment=vgg16_cifar100_spatial_vs_channel "$@"
figures vgg16_cifar100_spatial_vs_channel
