#!/usr/bin/env bash
# P 4.2, Figs. 4, 5, 6: DeepLabv3-ResNet-50 trained on Cityscapes (experiment=deeplabv3_resnet50_cityscapes, the
# recipe of torchvision's segmentation reference; a GPU job), then the attack on its pooled backbone latent
# (spatialprobe.rank): overall rankings on val (Normal, Kernel-Flip*, Kernel-Flip**), Left / Right rankings on
# val-left / val-right, the top-N and N random channels off, rank ranges of 100; figures and tables next to the
# record (<checkpoint dir>/position-...-figures/).
#   local:  CITYSCAPES=/data/cityscapes bash sweeps/b_segmentation_attack.sh trainer=gpu \
#               model.weights_backbone=/data/weights/resnet50-0676ba61.pth
#   SLURM:  LAUNCHER=slurm CITYSCAPES=... bash sweeps/b_segmentation_attack.sh trainer=gpu hydra.launcher.gpus_per_node=1
#   your own network:  CHECKPOINT=deeplabv3_cityscapes.pth CITYSCAPES=... bash sweeps/b_segmentation_attack.sh
source "$(dirname "$0")/lib.sh"
CITYSCAPES=${CITYSCAPES:-${SPATIALPROBE_DATA:-data}/cityscapes}
if [ -z "${CHECKPOINT:-}" ]; then
    sweep experiment=deeplabv3_resnet50_cityscapes "dataset.root=$CITYSCAPES" seed=0 "$@"
    CHECKPOINT=$RUNS/sweeps/deeplabv3_resnet50_cityscapes/seed=0/checkpoints/last.ckpt
fi
if [ "${DRY_RUN:-0}" != 1 ]; then
    "$PY" -m spatialprobe.rank source=segmentation "checkpoint='$CHECKPOINT'" "segmentation.root='$CITYSCAPES'" \
        'ranking=[overall,left,right]' 'variant=[image_flip,kernel_flip_image,kernel_flip]' \
        'top_n=[10,100,200,300,400,500]' random_draws=5 batch_size=4 \
        'rank_ranges=[[1,100],[101,200],[201,300],[301,400],[401,500]]' fig5.images=6 fig5.top_n=500
fi
