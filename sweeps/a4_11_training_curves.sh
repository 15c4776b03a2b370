#!/usr/bin/env bash
# S0 Fig. 1: training curves of VGG-16 / CIFAR-100, the baseline and spatial shuffle on the last 54%
# of the convs (K=7), train and test top-1 per epoch, drawn from the two runs' logged metrics.csv
# (curves_vgg16_cifar100.png); nothing is re-trained to draw it.
#   local:  bash sweeps/a4_11_training_curves.sh
#   SLURM:  LAUNCHER=slurm bash sweeps/a4_11_training_curves.sh trainer=gpu hydra.launcher.gpus_per_node=1
source "$(dirname "$0")/lib.sh"
NAME=vgg16_cifar100_training_curves
sweep experiment=$NAME "$@"                       # k=0,7
figures $NAME
