#!/usr/bin/env bash
# SPEC part B, the paper's Table 1: location and recognition accuracy on the n x n grid task for
# GAPNet / PermuteNet on ResNet-18 and VGG-16, every padding mode, n = 3, 5, 7, with the paper's recipes
# (conf/experiment/grid_location.yaml: Adam 1e-3, 20 epochs; grid_recognition.yaml: Adam 1e-2, 100 epochs).
# 2 x 48 full CIFAR-10 runs: a GPU job. Runs go to runs/sweeps/grid_{location,recognition}/.
#   local:  bash sweeps/position_table1.sh dataset.root=/data/cifar10 trainer=gpu
#   SLURM:  LAUNCHER=slurm bash sweeps/position_table1.sh trainer=gpu hydra.launcher.gpus_per_node=1
source "$(dirname "$0")/lib.sh"
sweep experiment=grid_location "$@"      # model x model.padding x dataset.grid
sweep experiment=grid_recognition "$@"
if [ "${DRY_RUN:-0}" != 1 ]; then
    "$PY" sweeps/position_table.py "$RUNS/sweeps/grid_location" "$RUNS/sweeps/grid_recognition"
fi
