#!/usr/bin/env bash
# Paper A at CPU scale (issue 12 part 6; the table in docs/REPRODUCTION.md section A): real CIFAR-10,
# the demo's narrow VGG-16-BN, recipe=cpu, 10,240 / 2,000 images, 12 epochs, bf16 autocast +
# channels_last (pinned in conf/experiment/cpu_cifar10_paper_a.yaml). 9 training runs:
#   1. the baseline (method=none k=0),
#   2. spatial / channel shuffle of the last K=3 convs, then the train/test matrix (S1 Table 2 left,
#      S0 Table 1): every network evaluated with and without the shuffles, 20 passes each,
#   3. gap_fc and conv1x1 at K = 3, 6, 9 (the experiment's own sweep),
# then collect + plot (kcurve_*.png, train_test_matrix.md, kcurve_table.md).
#   local:  OMP_NUM_THREADS=2 bash sweeps/a_cpu_evidence.sh      (the runs one after the other)
#   SLURM:  LAUNCHER=slurm bash sweeps/a_cpu_evidence.sh
LAUNCHER=${LAUNCHER:-basic}
source "$(dirname "$0")/lib.sh"
ROOT=$CIFAR10_ROOT   # $SPATIALPROBE_CIFAR10, else data/cifar10 (torchvision downloads it there)
NAME=cpu_cifar10_paper_a
K=3
sweep experiment=$NAME "dataset.root=$ROOT" method=none k=0 "$@"
sweep experiment=$NAME "dataset.root=$ROOT" method=spatial_shuffle,channel_shuffle k=$K "$@"
if [ "${DRY_RUN:-0}" != 1 ]; then
    DIR=$RUNS/sweeps/$NAME
    EVAL=(${EVAL_PREFIX:-} "$PY" -m spatialprobe.evaluate eval.passes=${EVAL_PASSES:-20} "data.root=$ROOT")
    "${EVAL[@]}" ckpt="'$DIR/k=0,method=none/checkpoints/last.ckpt'"
    "${EVAL[@]}" ckpt="'$DIR/k=0,method=none/checkpoints/last.ckpt'" method=spatial_shuffle k=$K
    "${EVAL[@]}" ckpt="'$DIR/k=0,method=none/checkpoints/last.ckpt'" method=channel_shuffle k=$K
    for m in spatial_shuffle channel_shuffle; do
        "${EVAL[@]}" ckpt="'$DIR/k=$K,method=$m/checkpoints/last.ckpt'"                       # trained + tested
        "${EVAL[@]}" ckpt="'$DIR/k=$K,method=$m/checkpoints/last.ckpt'" eval.keep_method=false  # trained, not tested
    done
fi
sweep experiment=$NAME "dataset.root=$ROOT"  "$@"     # method=gap_fc,conv1x1 k=3,6,9
figures $NAME
