# Sourced by the sweeps/*.sh scripts: where to run, with which launcher, and the collect + plot step.
#   LAUNCHER=local (default: jobs as local subprocesses, hydra.launcher.max_parallel at a time)
#   LAUNCHER=slurm (a SLURM job array; add hydra.launcher.partition=... trainer=gpu ... as arguments)
#   DRY_RUN=1      list and validate every job of every sweep, train nothing
#   PY=...         the python with spatialprobe installed (default: .venv/bin/python, else python)
#   SPATIALPROBE_CIFAR10=...  a local copy of CIFAR-10 for the CIFAR-10 scripts ($CIFAR10_ROOT): torchvision's
#                  batches folder or a class-folder .tar.gz of JPEGs; unset, they read
#                  ${SPATIALPROBE_DATA:-data}/cifar10, where torchvision downloads CIFAR-10 on the first run
# With logger=wandb among the script's arguments the figures step also logs a W&B "figures" run
# (plot --wandb) into the group of the sweep's runs.
set -euo pipefail
CIFAR10_ROOT=${SPATIALPROBE_CIFAR10:-}
case "$CIFAR10_ROOT" in
    "") CIFAR10_ROOT=${SPATIALPROBE_DATA:-data}/cifar10 ;;   # relative to the repository root, as paths.data_dir
    /*) ;;
    *) CIFAR10_ROOT=$PWD/$CIFAR10_ROOT ;;                   # a relative path names a file from where the script was started
esac
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ -z "${PY:-}" ]; then if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python; fi; fi
LAUNCHER=${LAUNCHER:-local}
RUNS=${SPATIALPROBE_RUNS:-runs}
DRY=()
if [ "${DRY_RUN:-0}" = 1 ]; then DRY=(dry_run=true); fi
PLOT_WANDB=()
for arg in "$@"; do if [ "$arg" = logger=wandb ]; then PLOT_WANDB=(--wandb); fi; done

# sweep ARGS...: one multirun of spatialprobe.train with the chosen launcher
sweep() {
    echo "+ python -m spatialprobe.train -m hydra/launcher=$LAUNCHER $*" >&2
    "$PY" -m spatialprobe.train -m "hydra/launcher=$LAUNCHER" "$@" "${DRY[@]}"
}

# figures NAME...: collect the sweeps runs/sweeps/NAME into one table and draw its figures and tables
figures() {
    if [ "${DRY_RUN:-0}" = 1 ]; then return 0; fi
    local dirs=() out="$RUNS/sweeps/$1"
    for name in "$@"; do dirs+=("$RUNS/sweeps/$name"); done
    if [ $# -gt 1 ]; then out="$RUNS/figures/$(basename "$0" .sh)"; fi
    "$PY" -m spatialprobe.collect "${dirs[@]}" -o "$out/results.csv"
    "$PY" -m spatialprobe.plot "$out/results.csv" -o "$out/figures" "${PLOT_WANDB[@]}"
}

# detection_figures NAME: the detection sweep runs/sweeps/NAME as a table (collect) and S0's Figs. 8 and 9
detection_figures() {
    if [ "${DRY_RUN:-0}" = 1 ]; then return 0; fi
    "$PY" -m spatialprobe.collect "$RUNS/sweeps/$1" -o "$RUNS/sweeps/$1/results.csv"
    "$PY" -m spatialprobe.plot_detection "$RUNS/sweeps/$1" -o "$RUNS/sweeps/$1/figures"
}
