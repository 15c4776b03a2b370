#!/usr/bin/env bash
# SPEC part B, the paper's Table 1: location and recognition accuracy on the n x n grid task for
# GAPNet / PermuteNet on ResNet-18 and VGG-16, every padding mode, n = 3, 5, 7, with the paper's recipes
# (conf/experiment/grid_location.yaml: Adam 1e-3, 20 epochs; grid_recognition.yaml: Adam 1e-2, 100 epochs).
# 2 x 4 x 4 x 3 = 96 full CIFAR-10 runs: a GPU job. Extra arguments go to every run, e.g. dataset.root=...,
# trainer=gpu, or a launcher (hydra/launcher=...) from the cluster configs.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-runs/position_table1}
for target in location recognition; do
    "$PY" -m spatialprobe.train -m experiment=grid_$target \
        model=gapnet_resnet18,permutenet_resnet18,gapnet_vgg16,permutenet_vgg16 \
        model.padding=zeros,reflect,replicate,circular dataset.grid=3,5,7 \
        hydra.sweep.dir="$OUT/$target" 'hydra.sweep.subdir=${model.name}-${model.padding}-n${dataset.grid}' "$@"
done
"$PY" sweeps/position_table.py "$OUT/location" "$OUT/recognition"
