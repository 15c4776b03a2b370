#!/usr/bin/env bash
# S1 section 4.4, Fig. 3 (left): ResNet-50 / Small-ImageNet-32 with conv1x1 on its last 6
# bottlenecks, the last n = 0..6 of them removed (method.strip=n): 7 models (6..0 1x1 bottlenecks), plus the baseline.
# depth_resnet50_imagenet32.png: accuracy vs the 1x1 bottlenecks kept (6 - n); kcurve_table.md the numbers.
#   local:  bash sweeps/a4_09_depth_ablation.sh dataset.root=/data/imagenet32
#   SLURM:  LAUNCHER=slurm bash sweeps/a4_09_depth_ablation.sh trainer=gpu hydra.launcher.gpus_per_node=1 dataset.root=...
source "$(dirname "$0")/lib.sh"
NAME=resnet50_imagenet32_depth_ablation
sweep experiment=$NAME "$@"                       # method.strip='range(0,7)' at k=6
sweep experiment=$NAME method.strip=0 k=0 "$@"    # the baseline (K=0 modifies nothing)
figures $NAME
