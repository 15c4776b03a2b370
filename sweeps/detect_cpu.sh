#!/usr/bin/env bash
# S0 section 4.5 at CPU scale (docs/detection.md, docs/REPRODUCTION.md "A. Detection on Pascal VOC"):
# baseline vs spatially shuffled last backbone unit of the YOLO-like detector on cifar10_detect (real
# CIFAR-10 objects pasted on 64 px canvases), conf/experiment/detect_cpu.yaml, 2 runs; then the table
# (detection_table.md) and S0's Fig. 9 pies and Fig. 8 examples. Runs go to runs/sweeps/detect_cpu/.
# Reads CIFAR-10 from $SPATIALPROBE_CIFAR10 when set (a local copy), else torchvision's download into data/.
# On a busy machine OMP_NUM_THREADS=1 is many times faster than 2 threads (measured here: 10x).
#   local:  OMP_NUM_THREADS=1 bash sweeps/detect_cpu.sh          SLURM:  LAUNCHER=slurm bash sweeps/detect_cpu.sh
LAUNCHER=${LAUNCHER:-basic}
source "$(dirname "$0")/lib.sh"
ROOT=$CIFAR10_ROOT   # $SPATIALPROBE_CIFAR10, else data/cifar10 (torchvision downloads it there)
sweep experiment=detect_cpu "dataset.root=$ROOT" "$@"    # k=0,1: baseline, shuffled last backbone unit
detection_figures detect_cpu
