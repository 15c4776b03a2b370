#!/usr/bin/env bash
# S0 section 4.5, Figs. 8 and 9: the YOLO-like detector on Pascal VOC (2007+2012 trainval -> 2007 test),
# from scratch, baseline vs spatially shuffled last backbone unit (conf/experiment/resnet50_voc_detect.yaml),
# then S0's ImageNet-initialised baseline (model.pretrained=imagenet: torchvision's ResNet-50 weights), then
# the table and the figures. dataset.root holds VOCdevkit/VOC2007 and VOCdevkit/VOC2012. GPUs:
#   SLURM:  LAUNCHER=slurm bash sweeps/s0_detection_voc.sh trainer=gpu dataset.root=/datasets/voc \
#               hydra.launcher.gpus_per_node=1 hydra.launcher.cpus_per_task=8 hydra.launcher.timeout_min=2880
#   local:  bash sweeps/s0_detection_voc.sh trainer=gpu dataset.root=/datasets/voc
source "$(dirname "$0")/lib.sh"
sweep experiment=resnet50_voc_detect "$@"                              # k=0,1: S0's 50% vs 34% mAP
sweep experiment=resnet50_voc_detect model.pretrained=imagenet k=0 "$@"  # S0: 66% mAP after fine-tuning
detection_figures resnet50_voc_detect
