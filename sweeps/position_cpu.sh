#!/usr/bin/env bash
# SPEC part B at CPU scale (README "Position information after global pooling"): GAPNet vs PermuteNet
# location accuracy on the n x n grid task for n = 3, 5, 7, real CIFAR-10, ResNet-18 at width 0.25
# (conf/experiment/grid_cpu.yaml), then the table. About 1 h on 2 free CPU cores.
# Uses ../shared/data/cifar10-jpg.tar.gz when present, else torchvision's download into data/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
SHARED_CIFAR=${SPATIALPROBE_SHARED:-../shared}/data/cifar10-jpg.tar.gz
if [ -f "$SHARED_CIFAR" ]; then ROOT=$SHARED_CIFAR; else ROOT=data/cifar10; fi
OUT=${OUT:-runs/position_cpu}
"$PY" -m spatialprobe.train -m experiment=grid_cpu dataset.root="$ROOT" \
    dataset.grid=3,5,7 model=gapnet_resnet18,permutenet_resnet18 trainer.enable_progress_bar=false \
    hydra.sweep.dir="$OUT" 'hydra.sweep.subdir=${model.name}-n${dataset.grid}' "$@"
"$PY" sweeps/position_table.py "$OUT"
