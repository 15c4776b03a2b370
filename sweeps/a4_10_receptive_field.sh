#!/usr/bin/env bash
# SPEC A4.10, paper A's receptive-field study: VGG-16 with 3x3 -> 1x1 from the last conv backwards
# on CIFAR-100 at 32, 64 and 96 px; kcurve_table.md has the receptive field of the last conv next
# to the accuracy difference to the baseline of the same input size (delta).
#   local:  bash sweeps/a4_10_receptive_field.sh
#   SLURM:  LAUNCHER=slurm bash sweeps/a4_10_receptive_field.sh trainer=gpu hydra.launcher.gpus_per_node=1
# = python -m spatialprobe.train -m experiment=vgg16_cifar100_receptive_field hydra/launcher=local
source "$(dirname "$0")/lib.sh"
sweep experiment=vgg16_cifar100_receptive_field "$@"
figures vgg16_cifar100_receptive_field
