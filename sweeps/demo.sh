#!/usr/bin/env bash
# `make demo`: a real, short CIFAR-10 run on the CPU that prints its accuracy.
# Uses ../shared/data/cifar10-jpg.tar.gz when present, else torchvision's download into data/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
SHARED_CIFAR=${SPATIALPROBE_SHARED:-../shared}/data/cifar10-jpg.tar.gz
if [ -f "$SHARED_CIFAR" ]; then ROOT=$SHARED_CIFAR; else ROOT=data/cifar10; fi
OUT=${DEMO_DIR:-runs/demo}
"$PY" -m spatialprobe.train dataset=cifar10 dataset.root="$ROOT" model=resnet18 model.width=0.25 \
    recipe=cpu trainer.max_epochs=1 dataset.subset=10240 dataset.eval_subset=2000 \
    hydra.run.dir="$OUT/resnet18-k0" "$@"
