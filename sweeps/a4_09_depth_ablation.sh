#!/usr/bin/env bash
# SPEC A4.9, paper A's depth ablation: ResNet-50 / Small-ImageNet-32 with conv1x1 on its last 9
# bottlenecks, the last n of them removed (method.strip=n); kcurve_table.md lists accuracy and
# parameters per n (config.method.strip).
#   local:  bash sweeps/a4_09_depth_ablation.sh
#   SLURM:  LAUNCHER=slurm bash sweeps/a4_09_depth_ablation.sh trainer=gpu hydra.launcher.gpus_per_node=1
source "$(dirname "$0")/lib.sh"
NAME=resnet50_imagenet32_depth_ablation
sweep experiment=$NAME "$@"                                      # method.strip='range(0,10)' at k=9
sweep experiment=$NAME method.strip=0 k=0 "$@"    # the baseline (K=0 modifies nothing)
figures $NAME
