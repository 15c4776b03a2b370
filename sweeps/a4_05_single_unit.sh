#!/usr/bin/env bash
# SPEC A4.5, paper A's figure: spatial shuffle of a single unit (unit_vgg16_cifar100.png) against
# the last K units (kcurve_vgg16_cifar100.png), VGG-16 / CIFAR-100, in one sweep directory.
#   local:  bash sweeps/a4_05_single_unit.sh
#   SLURM:  LAUNCHER=slurm bash sweeps/a4_05_single_unit.sh trainer=gpu hydra.launcher.gpus_per_node=1
source "$(dirname "$0")/lib.sh"
NAME=vgg16_cifar100_single_unit
sweep experiment=$NAME "$@"                                     # method.unit='range(0,13)'
sweep experiment=$NAME method.unit=null k='range(0,14)' "$@"    # the last-K curve and the baseline
figures $NAME
