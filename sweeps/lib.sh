# Sourced by the sweeps/*.sh scripts: where to run, with which launcher, and the collect + plot step.
#   LAUNCHER=local (default: jobs as local subprocesses, hydra.launcher.max_parallel at a time)
#   LAUNCHER=slurm (a SLURM job array; add hydra.launcher.partition=... trainer=gpu ... as arguments)
#   WAIT=0         with LAUNCHER=slurm: submit and return. Every sweep is submitted as a job array
#                  (hydra.launcher.wait=false), and the rest of the script (collect, figures, evaluations) as one
#                  SLURM job that starts when those arrays have ended (--dependency=afterany); the shell may close.
#                  Running the script again while they wait or run reports their state and submits nothing new.
#   DRY_RUN=1      list and validate every job of every sweep, train nothing
#   PY=...         the python with spatialprobe installed (default: .venv/bin/python, else python)
#   SPATIALPROBE_CIFAR10=...  a local copy of CIFAR-10 for the CIFAR-10 scripts ($CIFAR10_ROOT): torchvision's
#                  batches folder or a class-folder .tar.gz of JPEGs; unset, they read
#                  ${SPATIALPROBE_DATA:-data}/cifar10, where torchvision downloads CIFAR-10 on the first run
# With logger=wandb among the script's arguments the figures step also logs a W&B "figures" run
# (plot --wandb) into the group of the sweep's runs.
set -euo pipefail
SCRIPT=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")   # for the dependent job of WAIT=0
SCRIPT_ARGS=("$@")
STARTED_IN=$PWD
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
WAIT=${WAIT:-1}
AFTER_SWEEPS=${SPATIALPROBE_AFTER_SWEEPS:-0}   # 1 in the dependent job of WAIT=0: the sweeps were submitted before
SUBMIT=()
if [ "$WAIT" = 0 ] && [ "${DRY_RUN:-0}" != 1 ] && [ "$AFTER_SWEEPS" != 1 ]; then
    if [ "$LAUNCHER" != slurm ]; then
        echo "spatialprobe: error: WAIT=0 submits and returns, which needs LAUNCHER=slurm (now LAUNCHER=$LAUNCHER)" >&2
        exit 2
    fi
    SUBMIT=(hydra.launcher.wait=false hydra.launcher.figures_job=false)
    SPATIALPROBE_SUBMITTED=$(mktemp)   # the launcher appends the array job ids it submits
    export SPATIALPROBE_SUBMITTED
    DRY_RUN=1   # this pass only submits: the steps after the sweeps (guarded by DRY_RUN) run in the dependent job
    trap submit_rest EXIT
fi

# sweep ARGS...: one multirun of spatialprobe.train with the chosen launcher
sweep() {
    if [ "$AFTER_SWEEPS" = 1 ]; then   # the dependent job of WAIT=0: its arrays have ended
        echo "+ (submitted before) python -m spatialprobe.train -m hydra/launcher=$LAUNCHER $*" >&2
        return 0
    fi
    echo "+ python -m spatialprobe.train -m hydra/launcher=$LAUNCHER $*" >&2
    "$PY" -m spatialprobe.train -m "hydra/launcher=$LAUNCHER" "$@" "${DRY[@]}" "${SUBMIT[@]}"
}

# WAIT=0, when the script ends: the rest of it as one SLURM job after every array it submitted (afterany)
submit_rest() {
    local status=$? ids options=()
    trap - EXIT
    ids=$(sort -u "$SPATIALPROBE_SUBMITTED" | paste -sd: -)
    rm -f "$SPATIALPROBE_SUBMITTED"
    if [ "$status" != 0 ]; then exit "$status"; fi
    if [ -z "$ids" ]; then
        echo "$(basename "$SCRIPT"): nothing new submitted (every run is complete, running or queued); the steps" \
             "after the sweeps run when the script is run again after the runs have ended" >&2
        exit 0
    fi
    for arg in "${SCRIPT_ARGS[@]}"; do
        case "$arg" in hydra.launcher.partition=*|hydra.launcher.account=*|hydra.launcher.qos=*)
            options+=("--${arg#hydra.launcher.}") ;; esac
    done
    mkdir -p "$RUNS/logs"
    local job
    job=$(SPATIALPROBE_AFTER_SWEEPS=1 DRY_RUN=0 sbatch --parsable --dependency="afterany:$ids" --chdir="$STARTED_IN" \
          --job-name="$(basename "$SCRIPT" .sh)-after-sweeps" --output="$(cd "$RUNS/logs" && pwd)/%x-%j.out" \
          "${options[@]}" --wrap "$(printf '%q ' bash "$SCRIPT" "${SCRIPT_ARGS[@]}")")
    echo "$(basename "$SCRIPT"): sweeps submitted (SLURM job arrays ${ids//:/, }); the steps after them (collect," \
         "figures, evaluations): SLURM job $job when they have ended (log: $RUNS/logs/$(basename "$SCRIPT" .sh)-after-sweeps-$job.out);" \
         "this shell may close now" >&2
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
