#!/usr/bin/env bash
# P at CPU scale on real CIFAR-10 (docs/position.md, "CPU-scale results"; ledger section B):
#  1. Table 2's three rows, ResNet-18 x0.25, 10,240 training / 2,000 test images, 6 one-cycle epochs
#     (conf/experiment/resnet18_cifar10_augshift_cpu.yaml): the baseline, +AugShift, BlurPool; top-1, Cons.8;
#  2. position decoding from each frozen network's pooled latent (spatialprobe.decode: a linear read-out
#     of the grid cell, channels in order and permuted);
#  3. both tables (sweeps/table2.py, the decode table).
# Re-running skips the complete training runs. About 1.5 h on 2 busy CPU cores with OMP_NUM_THREADS=1 (on
# an oversubscribed machine one torch thread ran a training step 10x faster than two: 2.7 s vs 30 s).
#   local:  OMP_NUM_THREADS=1 bash sweeps/b_cpu_evidence.sh       SLURM:  LAUNCHER=slurm bash sweeps/b_cpu_evidence.sh
LAUNCHER=${LAUNCHER:-basic}
source "$(dirname "$0")/lib.sh"
ROOT=$CIFAR10_ROOT   # $SPATIALPROBE_CIFAR10, else data/cifar10 (torchvision downloads it there)
EXP=resnet18_cifar10_augshift_cpu

sweep experiment=$EXP "dataset.root=$ROOT" task=classify,augshift model.blurpool=false "$@"   # ResNet-18, +AugShift
sweep experiment=$EXP "dataset.root=$ROOT" task=classify model.blurpool=full "$@"            # BlurPool
if [ "${DRY_RUN:-0}" != 1 ]; then
    "$PY" sweeps/table2.py "$RUNS/sweeps/$EXP"
    "$PY" -m spatialprobe.decode "sweep_dir=$RUNS/sweeps/$EXP" "data_root=$ROOT" 'grid=[3,5]'   # decode.json per run
fi
