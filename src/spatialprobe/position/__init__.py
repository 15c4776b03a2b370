"""The position study of paper B on trained networks: probes of the pooled latent, ranking its channels by
the position they carry and switching them off (:mod:`~spatialprobe.position.probe`), for classifiers and
for DeepLab on Cityscapes (:mod:`~spatialprobe.position.segmentation`)."""
