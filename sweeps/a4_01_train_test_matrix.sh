#!/usr/bin/env bash
# SPEC A4.1, paper A's table: VGG-16 / CIFAR-100, last 30% of the layers (K=4), training scheme x
# test scheme for {none, spatial shuffle, channel shuffle} (stochastic evaluations: 200 passes).
#   local:  bash sweeps/a4_01_train_test_matrix.sh
#   SLURM:  LAUNCHER=slurm bash sweeps/a4_01_train_test_matrix.sh trainer=gpu hydra.launcher.gpus_per_node=1
# Steps: 1. the baseline and the two shuffled networks (multiruns), 2. every checkpoint evaluated
# with its shuffle on / off and the baseline with each shuffle at test time only
# (spatialprobe.evaluate eval.passes=200; on SLURM prefix it with EVAL_PREFIX="srun --gpus=1 ..."),
# 3. collect (training + evaluation records) and the matrix (train_test_matrix.md).
source "$(dirname "$0")/lib.sh"
NAME=vgg16_cifar100_train_test_matrix
sweep experiment=$NAME method=none k=0 "$@"
sweep experiment=$NAME "$@"                           # method=spatial_shuffle,channel_shuffle k=4
if [ "${DRY_RUN:-0}" = 1 ]; then exit 0; fi
DIR=$RUNS/sweeps/$NAME
EVAL=(${EVAL_PREFIX:-} "$PY" -m spatialprobe.evaluate eval.passes=${EVAL_PASSES:-200})
"${EVAL[@]}" ckpt="$DIR/k=0,method=none/checkpoints/last.ckpt"
"${EVAL[@]}" ckpt="$DIR/k=0,method=none/checkpoints/last.ckpt" method=spatial_shuffle k=4
"${EVAL[@]}" ckpt="$DIR/k=0,method=none/checkpoints/last.ckpt" method=channel_shuffle k=4
for m in spatial_shuffle channel_shuffle; do
    "${EVAL[@]}" ckpt="$DIR/k=4,method=$m/checkpoints/last.ckpt"                       # trained + tested
    "${EVAL[@]}" ckpt="$DIR/k=4,method=$m/checkpoints/last.ckpt" eval.keep_method=false  # trained, not tested
done
figures $NAME
