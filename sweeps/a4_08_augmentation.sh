#!/usr/bin/env bash
# S1 Table 2 (right): ResNet-50 / CIFAR-100, the baseline, GAP+FC and 1x1Conv (K = 1..16) with and
# without data augmentation (crop + flip); best.md: the best network per method and setting (the
# table), kcurve_resnet50_cifar100.png: every K, one line and one baseline per setting.
#   local:  bash sweeps/a4_08_augmentation.sh
#   SLURM:  LAUNCHER=slurm bash sweeps/a4_08_augmentation.sh trainer=gpu hydra.launcher.gpus_per_node=1
source "$(dirname "$0")/lib.sh"
NAME=resnet50_cifar100_augmentation
sweep experiment=$NAME method=none k=0 "$@"       # the two baselines (dataset.augment=true,false)
sweep experiment=$NAME "$@"                       # method=gap_fc,conv1x1 k='range(1,17)' x augment
figures $NAME
