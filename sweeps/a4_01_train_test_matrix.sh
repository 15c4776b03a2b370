#!/usr/bin/env bash
# The train/test scheme matrix, VGG-16 / CIFAR-100: S1 Table 2 (left, the last 3 convs) and S0 Table 1
# (the last 30% = 4 convs); {none, spatial shuffle, channel shuffle} trained x tested, stochastic
# evaluations averaged over 200 passes; S0 section 4.1's comparator, a one-hidden-layer MLP (512 units).
#   local:  bash sweeps/a4_01_train_test_matrix.sh
#   SLURM:  LAUNCHER=slurm bash sweeps/a4_01_train_test_matrix.sh trainer=gpu hydra.launcher.gpus_per_node=1
# Steps: 1. the baseline, the MLP and the four shuffled networks (multiruns), 2. every checkpoint
# evaluated with its shuffle on / off, the baseline with each shuffle at test time only
# (spatialprobe.evaluate eval.passes=200; on SLURM prefix it with EVAL_PREFIX="srun --gpus=1 ..."),
# 3. collect (training + evaluation records) and the matrix (train_test_matrix.md, a block per K).
source "$(dirname "$0")/lib.sh"
NAME=vgg16_cifar100_train_test_matrix
sweep experiment=$NAME method=none k=0 "$@"
sweep experiment=$NAME model=mlp method=none k=0 "$@"   # S0 4.1: "one-hidden-layer perceptron ... (25.61%)"
sweep experiment=$NAME "$@"                             # method=spatial_shuffle,channel_shuffle k=3,4
if [ "${DRY_RUN:-0}" = 1 ]; then exit 0; fi
DIR=$RUNS/sweeps/$NAME
EVAL=(${EVAL_PREFIX:-} "$PY" -m spatialprobe.evaluate eval.passes=${EVAL_PASSES:-200})
"${EVAL[@]}" ckpt="'$DIR/k=0,method=none/checkpoints/last.ckpt'"
"${EVAL[@]}" ckpt="'$DIR/k=0,method=none,model=mlp/checkpoints/last.ckpt'"
for K in 3 4; do
    for m in spatial_shuffle channel_shuffle; do
        "${EVAL[@]}" ckpt="'$DIR/k=0,method=none/checkpoints/last.ckpt'" method=$m k=$K           # tested only
        "${EVAL[@]}" ckpt="'$DIR/k=$K,method=$m/checkpoints/last.ckpt'"                        # trained + tested
        "${EVAL[@]}" ckpt="'$DIR/k=$K,method=$m/checkpoints/last.ckpt'" eval.keep_method=false # trained only
    done
done
figures $NAME
