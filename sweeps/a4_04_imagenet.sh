#!/usr/bin/env bash
# SPEC A4.4, paper A's ImageNet table: ResNet-50, ResNet-152, VGG-16, MobileNetV2 and SqueezeNet
# with conv1x1 / gap_fc / spatial_shuffle on the last K units (compressed.md: the most compressed
# network within 1 point of the baseline, best.md: the best one, with parameters).
# ImageNet needs GPUs; the SLURM form is the one meant to be used:
#   SLURM:  LAUNCHER=slurm bash sweeps/a4_04_imagenet.sh trainer=ddp trainer.devices=4 \
#               hydra.launcher.gpus_per_node=4 hydra.launcher.cpus_per_task=8 hydra.launcher.mem_gb=64 \
#               hydra.launcher.timeout_min=2880 dataset.root=/datasets/imagenet
#   local:  bash sweeps/a4_04_imagenet.sh trainer=gpu dataset.root=/datasets/imagenet
# = python -m spatialprobe.train -m experiment=<model>_imagenet_kcurve hydra/launcher=slurm ...
source "$(dirname "$0")/lib.sh"
EXPS=(resnet50_imagenet_kcurve resnet152_imagenet_kcurve vgg16_imagenet_kcurve mobilenet_v2_imagenet_kcurve
      squeezenet_imagenet_kcurve)
for exp in "${EXPS[@]}"; do
    sweep experiment=$exp "$@"
done
figures "${EXPS[@]}"
