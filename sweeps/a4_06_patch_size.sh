#!/usr/bin/env bash
# SPEC A4.6, paper A's figure: patch shuffle, p in {2,4,8,16,32}, of one unit at a time, VGG-16 and
# ResNet-50 on CIFAR-100 (unit_<model>_cifar100.png: one line per patch size), with the baselines.
#   local:  bash sweeps/a4_06_patch_size.sh
#   SLURM:  LAUNCHER=slurm bash sweeps/a4_06_patch_size.sh trainer=gpu hydra.launcher.gpus_per_node=1
source "$(dirname "$0")/lib.sh"
for exp in vgg16_cifar100_patch_size resnet50_cifar100_patch_size; do
    sweep experiment=$exp "$@"            # method.patch_size=2,4,8,16,32 method.unit='range(0,N)'
    sweep experiment=$exp method.patch_size=2 method.unit=null k=0 "$@"   # the baseline (K=0 modifies nothing)
done
figures vgg16_cifar100_patch_size resnet50_cifar100_patch_size
