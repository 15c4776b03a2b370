#!/usr/bin/env bash
# `make demo`: a real small K-sweep on real CIFAR-10 on the CPU, ending in the K-curve figure and the results site.
# experiment=demo_cifar10_kcurve: narrow VGG-16-BN, 10,240 training / 2,000 test images, 8 epochs;
# the baseline, then spatial_shuffle vs channel_shuffle on the last K = 3 convs: 3 runs in one multirun. Re-running it skips the complete runs. Reads CIFAR-10 from $SPATIALPROBE_CIFAR10 when set (a
# local copy), else from data/cifar10, where torchvision downloads it on the first run.
#   local:  bash sweeps/demo.sh               (the runs side by side as local processes, 1 thread each)
#   SLURM:  LAUNCHER=slurm bash sweeps/demo.sh
#   -v:     bash sweeps/demo.sh -v            (the runs' full logs on the console too)
# Each run uses one thread: several one-thread runs side by side train faster than one run with all
# threads, and much faster on a busy machine (benchmarks/bench_cpu.py). 3 runs on c cores go
# ceil(3 / (3 // c)) at a time (all 3 on 2 cores, none idle; 1 at a time on 1 core; DEMO_PARALLEL overrides).
LAUNCHER=${LAUNCHER:-local}
source "$(dirname "$0")/lib.sh"
ROOT=$CIFAR10_ROOT   # $SPATIALPROBE_CIFAR10, else data/cifar10 (torchvision downloads it there)

JOBS=3
ARGS=()
if [ "$LAUNCHER" != slurm ]; then
    CORES=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc 2>/dev/null || sysctl -n hw.ncpu 2>/dev/null || echo 1)
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
    ROUNDS=$(( JOBS / CORES > 0 ? JOBS / CORES : 1 ))
    PARALLEL=${DEMO_PARALLEL:-$(( (JOBS + ROUNDS - 1) / ROUNDS ))}
    if [ "$LAUNCHER" = local ]; then ARGS+=("hydra.launcher.max_parallel=$PARALLEL"); fi
fi
sweep experiment=demo_cifar10_kcurve "dataset.root=$ROOT" "${ARGS[@]}" "$@"
figures demo_cifar10_kcurve
if [ "${DRY_RUN:-0}" != 1 ]; then
    # the results site of the sweep (records, metrics.csv files, figures; about a second): open index.html from disk
    "$PY" -m spatialprobe.report "$RUNS/sweeps/demo_cifar10_kcurve" -o "$RUNS/sweeps/demo_cifar10_kcurve/site"
    echo "demo: the K-curve is $RUNS/sweeps/demo_cifar10_kcurve/figures/kcurve_vgg16_cifar10.png"
    echo "demo: the results site is $RUNS/sweeps/demo_cifar10_kcurve/site/index.html"
fi
