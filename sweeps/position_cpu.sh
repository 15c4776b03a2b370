#!/usr/bin/env bash
# SPEC part B at CPU scale (README "Position information after global pooling"): GAPNet vs PermuteNet
# location accuracy on the n x n grid task for n = 3, 5, 7, real CIFAR-10, ResNet-18 at width 0.25
# (conf/experiment/grid_cpu.yaml: 6 runs), then the table. About 1 h on 2 free CPU cores
# (OMP_NUM_THREADS=1 is faster on a busy machine). Runs go to runs/sweeps/grid_cpu/.
# Uses ../shared/data/cifar10-jpg.tar.gz when present, else torchvision's download into data/.
#   local:  bash sweeps/position_cpu.sh            SLURM:  LAUNCHER=slurm bash sweeps/position_cpu.sh
source "$(dirname "$0")/lib.sh"
SHARED_CIFAR=${SPATIALPROBE_SHARED:-../shared}/data/cifar10-jpg.tar.gz
if [ -f "$SHARED_CIFAR" ]; then ROOT=$SHARED_CIFAR; else ROOT=data/cifar10; fi
sweep experiment=grid_cpu "dataset.root=$ROOT" "$@"    # model=gapnet_resnet18,permutenet_resnet18 dataset.grid=3,5,7
if [ "${DRY_RUN:-0}" != 1 ]; then "$PY" sweeps/position_table.py "$RUNS/sweeps/grid_cpu"; fi
