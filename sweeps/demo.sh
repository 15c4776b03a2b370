#!/usr/bin/env bash
# `make demo`: a real small K-sweep on real CIFAR-10 on the CPU, ending in the K-curve figure.
# experiment=demo_cifar10_kcurve: narrow VGG-16-BN, 10,240 training / 2,000 test images, 12 epochs;
# the baseline, then spatial_shuffle vs channel_shuffle on the last K = 3 and 6 convs (5 runs,
# about 3-4 minutes each on 2 free cores). Re-running it skips the complete runs.
# Uses ../shared/data/cifar10-jpg.tar.gz when present, else torchvision's download into data/.
#   local:  bash sweeps/demo.sh                       (runs the jobs one after the other, in-process)
#   SLURM:  LAUNCHER=slurm bash sweeps/demo.sh        (one array job per command)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
SHARED_CIFAR=${SPATIALPROBE_SHARED:-../shared}/data/cifar10-jpg.tar.gz
if [ -f "$SHARED_CIFAR" ]; then ROOT=$SHARED_CIFAR; else ROOT=data/cifar10; fi
export SPATIALPROBE_RUNS=${SPATIALPROBE_RUNS:-runs}
SWEEP=$SPATIALPROBE_RUNS/sweeps/demo_cifar10_kcurve
COMMON=(experiment=demo_cifar10_kcurve "dataset.root=$ROOT" "hydra/launcher=${LAUNCHER:-basic}")

"$PY" -m spatialprobe.train -m "${COMMON[@]}" method=none k=0 "$@"
"$PY" -m spatialprobe.train -m "${COMMON[@]}" method=spatial_shuffle,channel_shuffle k=3,6 "$@"
"$PY" -m spatialprobe.collect "$SWEEP" -o "$SWEEP/results.csv"
"$PY" -m spatialprobe.plot "$SWEEP/results.csv" -o "$SWEEP/figures"
