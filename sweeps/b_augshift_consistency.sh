#!/usr/bin/env bash
# SPEC part B: AugShift vs the baseline vs BlurPool, ResNet-18 on CIFAR-100, test top-1 and Cons.8
# (conf/experiment/resnet18_cifar100_augshift.yaml: 4 runs), then the position-channel ranking and
# switch-off study on each trained network (spatialprobe.rank; JSON next to each checkpoint).
#   local:  bash sweeps/b_augshift_consistency.sh trainer=gpu
#   SLURM:  LAUNCHER=slurm bash sweeps/b_augshift_consistency.sh trainer=gpu hydra.launcher.gpus_per_node=1
source "$(dirname "$0")/lib.sh"
sweep experiment=resnet18_cifar100_augshift "$@"   # task=classify,augshift model.blurpool=false,full
if [ "${DRY_RUN:-0}" != 1 ]; then
    for ckpt in "$RUNS"/sweeps/resnet18_cifar100_augshift/*/checkpoints/last.ckpt; do
        "$PY" -m spatialprobe.rank "checkpoint='$ckpt'" 'top_n=[8,32,128]' ranking=overall  # quoted: run dirs hold = and ,
    done
    figures resnet18_cifar100_augshift
fi
