#!/usr/bin/env bash
# `make demo`: a real small K-sweep on real CIFAR-10 on the CPU, ending in the K-curve figure.
# experiment=demo_cifar10_kcurve: narrow VGG-16-BN, 10,240 training / 2,000 test images, 12 epochs;
# the baseline, then spatial_shuffle vs channel_shuffle on the last K = 3 and 6 convs (5 runs).
# Re-running it skips the complete runs. Uses ../shared/data/cifar10-jpg.tar.gz when present,
# else torchvision's download into data/.
#   local:  bash sweeps/demo.sh               (the runs one after the other, in this process)
#   SLURM:  LAUNCHER=slurm bash sweeps/demo.sh
# On a busy machine OMP_NUM_THREADS=1 is much faster than torch's default threads.
LAUNCHER=${LAUNCHER:-basic}
source "$(dirname "$0")/lib.sh"
SHARED_CIFAR=${SPATIALPROBE_SHARED:-../shared}/data/cifar10-jpg.tar.gz
if [ -f "$SHARED_CIFAR" ]; then ROOT=$SHARED_CIFAR; else ROOT=data/cifar10; fi

sweep experiment=demo_cifar10_kcurve "dataset.root=$ROOT" method=none k=0 "$@"
sweep experiment=demo_cifar10_kcurve "dataset.root=$ROOT" "$@"   # method=spatial_shuffle,channel_shuffle k=3,6
figures demo_cifar10_kcurve
