#!/usr/bin/env bash
# S1 appendix A.4, Fig. 7: VGG-16 / CIFAR-100, the train/test mismatch for every K: spatially shuffled
# networks (K = 1..13) evaluated with and without their shuffles, the baseline with the shuffle on its
# last K convs at test time only, 200 passes each (mismatch_vgg16_cifar100.png, train_test_matrix.md).
# The networks are those of S0 Fig. 4 / S1 Fig. 10 (experiment vgg16_cifar100_spatial_vs_channel): a run
# already trained by sweeps/a4_02_spatial_vs_channel.sh is not trained again, and vice versa.
#   local:  bash sweeps/a4_12_mismatch.sh
#   SLURM:  LAUNCHER=slurm bash sweeps/a4_12_mismatch.sh trainer=gpu hydra.launcher.gpus_per_node=1
source "$(dirname "$0")/lib.sh"
NAME=vgg16_cifar100_spatial_vs_channel
sweep experiment=$NAME method=spatial_shuffle "$@"   # k='range(0,14)'
if [ "${DRY_RUN:-0}" = 1 ]; then exit 0; fi
DIR=$RUNS/sweeps/$NAME
EVAL=(${EVAL_PREFIX:-} "$PY" -m spatialprobe.evaluate eval.passes=${EVAL_PASSES:-200})
BASE="$DIR/k=0,method=spatial_shuffle/checkpoints/last.ckpt"
"${EVAL[@]}" ckpt="'$BASE'"
for K in $(seq 1 13); do
    "${EVAL[@]}" ckpt="'$BASE'" method=spatial_shuffle k=$K                                      # none -> shuffle
    "${EVAL[@]}" ckpt="'$DIR/k=$K,method=spatial_shuffle/checkpoints/last.ckpt'"                 # shuffle -> shuffle
    "${EVAL[@]}" ckpt="'$DIR/k=$K,method=spatial_shuffle/checkpoints/last.ckpt'" eval.keep_method=false  # -> none
done
figures $NAME
