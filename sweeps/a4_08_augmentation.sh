#!/usr/bin/env bash
# SPEC A4.8, paper A's ablation: ResNet-50 / CIFAR-100, conv1x1 vs K with and without data
# augmentation (one line and one baseline per setting).
#   local:  bash sweeps/a4_08_augmentation.sh
#   SLURM:  LAUNCHER=slurm bash sweeps/a4_08_augmentation.sh trainer=gpu hydra.launcher.gpus_per_node=1
# = python -m spatialprobe.train -m experiment=resnet50_cifar100_augmentation hydra/launcher=local
source "$(dirname "$0")/lib.sh"
sweep experiment=resnet50_cifar100_augmentation "$@"
figures resnet50_cifar100_augmentation
