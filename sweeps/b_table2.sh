#!/usr/bin/env bash
# P Table 2: ResNet-18 / +AugShift / BlurPool on CIFAR-100, CIFAR-10 and ImageNet, top-1 and shift
# consistency (Cons.8; Cons.16 on ImageNet), then the table in the paper's layout (sweeps/table2.py).
# Experiments: resnet18_{cifar100,cifar10,imagenet}_augshift (conf/experiment/). 3 + 3 + 4 runs; GPU jobs.
#   local:  bash sweeps/b_table2.sh trainer=gpu          (ImageNet: IMAGENET=/data/ilsvrc2012)
#   SLURM:  LAUNCHER=slurm bash sweeps/b_table2.sh trainer=gpu hydra.launcher.gpus_per_node=1
#   DRY_RUN=1 bash sweeps/b_table2.sh                    list and validate every job, train nothing
source "$(dirname "$0")/lib.sh"
IMAGENET=${IMAGENET:-${SPATIALPROBE_DATA:-data}/imagenet}
for data in cifar100 cifar10; do
    sweep experiment=resnet18_${data}_augshift task=classify,augshift model.blurpool=false "$@"  # ResNet-18, +AugShift
    sweep experiment=resnet18_${data}_augshift task=classify model.blurpool=full "$@"            # BlurPool (no max-pool)
done
sweep experiment=resnet18_imagenet_augshift "dataset.root=$IMAGENET" task=classify,augshift model.blurpool=false "$@"
sweep experiment=resnet18_imagenet_augshift "dataset.root=$IMAGENET" task=classify model.blurpool=true,full "$@"
if [ "${DRY_RUN:-0}" != 1 ]; then
    "$PY" sweeps/table2.py "$RUNS"/sweeps/resnet18_{cifar100,cifar10,imagenet}_augshift
fi
