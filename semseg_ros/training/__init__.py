"""Training and evaluation of the segmentation networks (``semseg train``, ``semseg eval``)."""
