#!/usr/bin/env bash
# SPEC A4.3, paper A's K-curves: spatial_shuffle, gap_fc and conv1x1 on the last K units of VGG-16
# and ResNet-50, on CIFAR-100 and Small-ImageNet-32 (one figure per model and data set).
#   local:  bash sweeps/a4_03_kcurves.sh
#   SLURM:  LAUNCHER=slurm bash sweeps/a4_03_kcurves.sh trainer=gpu hydra.launcher.gpus_per_node=1
# = python -m spatialprobe.train -m experiment=<model>_<dataset>_kcurve hydra/launcher=local
#   (each sweeps method=spatial_shuffle,gap_fc,conv1x1 k='range(0,14)' for VGG-16, 'range(0,17)' for ResNet-50)
source "$(dirname "$0")/lib.sh"
for exp in vgg16_cifar100_kcurve resnet50_cifar100_kcurve vgg16_imagenet32_kcurve resnet50_imagenet32_kcurve; do
    sweep experiment=$exp "$@"
done
figures vgg16_cifar100_kcurve resnet50_cifar100_kcurve vgg16_imagenet32_kcurve resnet50_imagenet32_kcurve
