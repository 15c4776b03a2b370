#!/usr/bin/env bash
# Paper B (P) at CPU scale (docs/position.md, "CPU-scale results"): GAPNet vs PermuteNet
# location accuracy on the n x n grid task for n = 3, 5, 7, real CIFAR-10, ResNet-18 at width 0.25
# (conf/experiment/grid_cpu.yaml: 6 runs), then the table. About 1 h on 2 free CPU cores
# (OMP_NUM_THREADS=1 is faster on a busy machine). Runs go to runs/sweeps/grid_cpu/.
# Reads CIFAR-10 from $SPATIALPROBE_CIFAR10 when set (a local copy), else torchvision's download into data/.
#   local:  bash sweeps/position_cpu.sh            SLURM:  LAUNCHER=slurm bash sweeps/position_cpu.sh
source "$(dirname "$0")/lib.sh"
ROOT=$CIFAR10_ROOT   # $SPATIALPROBE_CIFAR10, else data/cifar10 (torchvision downloads it there)
sweep experiment=grid_cpu "dataset.root=$ROOT" "$@"    # model=gapnet_resnet18,permutenet_resnet18 dataset.grid=3,5,7
if [ "${DRY_RUN:-0}" != 1 ]; then "$PY" sweeps/position_table.py "$RUNS/sweeps/grid_cpu"; fi
