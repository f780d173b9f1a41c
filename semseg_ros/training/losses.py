"""Class-balanced cross-entropy: class weights computed from the training labels.

Two weightings, chosen with ``--class-weights``:

* ``mfb012``: MiniNet-v2's median frequency balancing softened by a power of 0.12,
  ``w_c = (median(f) / f_c) ** 0.12`` with ``f_c`` = pixels of class c / pixels of the
  images in which c appears (Eigen and Fergus' class frequency).
* ``enet``: ENet's ``w_c = 1 / ln(1.02 + p_c)`` with ``p_c`` = pixels of class c / all
  labelled pixels.
* ``none``: plain cross-entropy.

A class that never appears in the training labels gets weight 1 (no pixel uses it).
"""

from typing import Optional

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

CLASS_WEIGHTINGS = ('mfb012', 'enet', 'none')


def median_frequency_weights(pixel_counts: np.ndarray, image_pixel_counts: np.ndarray,
                             power: float = 0.12) -> np.ndarray:
    """Median frequency balancing raised to ``power``: ``(median(f) / f_c) ** power``.

    Args:
        pixel_counts: Pixels of each class.
        image_pixel_counts: Total pixels of the images in which each class appears.
        power: Softening exponent (1: the original median frequency balancing).
    """
    pixel_counts = np.asarray(pixel_counts, np.float64)
    image_pixel_counts = np.asarray(image_pixel_counts, np.float64)
    present = pixel_counts > 0
    weights = np.ones(len(pixel_counts))
    if present.any():
        frequency = pixel_counts[present] / image_pixel_counts[present]
        weights[present] = (np.median(frequency) / frequency) ** power
    return weights


def enet_weights(pixel_counts: np.ndarray, c: float = 1.02) -> np.ndarray:
    """Weighting of ENet, ``1 / ln(c + p_c)``, ``p_c`` the class's share of labelled pixels."""
    pixel_counts = np.asarray(pixel_counts, np.float64)
    total = pixel_counts.sum()
    weights = np.ones(len(pixel_counts))
    if total > 0:
        present = pixel_counts > 0
        weights[present] = 1.0 / np.log(c + pixel_counts[present] / total)
    return weights


def class_weights(method: str, pixel_counts: np.ndarray,
                  image_pixel_counts: np.ndarray) -> Optional[np.ndarray]:
    """Return the class weights of a weighting named in ``CLASS_WEIGHTINGS`` (None: none).

    Raises:
        ValueError: Unknown method.
    """
    if method == 'mfb012':
        return median_frequency_weights(pixel_counts, image_pixel_counts, 0.12)
    if method == 'enet':
        return enet_weights(pixel_counts)
    if method == 'none':
        return None
    raise ValueError(f'unknown class weighting {method!r}; valid: {", ".join(CLASS_WEIGHTINGS)}')


class SegmentationLoss(nn.Module):
    """Weighted cross-entropy over ``N x C x H x W`` logits and ``N x H x W`` labels.

    Equal to ``nn.CrossEntropyLoss(weight, ignore_index)`` with mean reduction, except that
    a batch whose pixels are all void gives a zero loss instead of NaN.
    """

    def __init__(self, weights: Optional[np.ndarray], ignore_index: int):
        """Create the loss.

        Args:
            weights: Per-class weights (None: all 1).
            ignore_index: Label id that contributes nothing.
        """
        super().__init__()
        self.ignore_index = int(ignore_index)
        self.register_buffer('weight', None if weights is None
                             else torch.tensor(np.asarray(weights), dtype=torch.float32))

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Return the weighted mean loss over the non-void pixels."""
        total = F.cross_entropy(logits, labels, weight=self.weight,
                                ignore_index=self.ignore_index, reduction='sum')
        # Masks, not boolean indexing: no data-dependent shapes, so no wait for the device.
        valid = labels != self.ignore_index
        if self.weight is None:
            normaliser = valid.sum().to(total.dtype)
        else:
            normaliser = (self.weight[labels.masked_fill(~valid, 0)] * valid).sum()
        # No valid pixel: the sum is 0, and so is the loss.
        return total / normaliser.clamp_min(torch.finfo(total.dtype).tiny)


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      temperature: float = 1.0) -> torch.Tensor:
    """Knowledge distillation (Hinton et al., 2015) per pixel: ``T^2 KL(teacher || student)``.

    Both ``N x C x H x W``; the teacher's softened class distribution is the target of the
    student's, averaged over every pixel (void ones too: the teacher labels them all). The
    ``T^2`` keeps the gradients' scale independent of the temperature.
    """
    student = F.log_softmax(student_logits.float() / temperature, dim=1)
    teacher = F.log_softmax(teacher_logits.detach().float() / temperature, dim=1)
    divergence = (teacher.exp() * (teacher - student)).sum(dim=1)
    return divergence.mean() * temperature ** 2
