"""Datasets (CamVid, Cityscapes, the user's own folders) and training augmentation."""
