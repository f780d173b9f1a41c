"""Training augmentation and the network input convention.

Input convention (the same in training, evaluation and at inference)::

    network input = float32 RGB / 255.0, N x 3 x H x W, no mean or standard deviation

Data loaders carry uint8 tensors (four times less to move between processes);
:func:`to_network_input` turns them into network input on the compute device.

Augmentation (:class:`TrainAugmentation`) does horizontal flip, random scale, crop with
translation and padding in a single ``cv2.warpAffine`` per image and label (bilinear for
the image, nearest for the label, padding with black and the ignore id), then a random
brightness and contrast change through a 256-entry lookup table. With ``pixel_shift`` set
(RDS-Net's recipe: flips and shifts of up to 2 px) the crop is placed and shifted in whole
pixels, so that without scaling the image is copied exactly. All randomness comes from
the ``numpy.random.Generator`` passed in, so a sample's augmentation depends only on the
seed it is given (which the datasets derive from run seed, epoch and index).
"""

from dataclasses import dataclass
import math
from typing import Optional, Tuple

import cv2
import numpy as np
import torch

INPUT_SCALE = 1.0 / 255.0


def to_network_input(images: torch.Tensor) -> torch.Tensor:
    """Turn uint8 RGB ``N x 3 x H x W`` (or ``3 x H x W``) into float32 network input (/255)."""
    return images.float().mul_(INPUT_SCALE)


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """Return an ``H x W x 3`` uint8 RGB array as a contiguous ``3 x H x W`` uint8 tensor."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


def resize_pair(image: np.ndarray, label: Optional[np.ndarray],
                size: Tuple[int, int]) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Resize an image (area/bilinear) and its label (nearest) to ``size`` = (width, height)."""
    width, height = size
    if image.shape[1] == width and image.shape[0] == height:
        return image, label
    shrinking = width < image.shape[1]
    image = cv2.resize(image, (width, height),
                       interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    if label is not None:
        label = cv2.resize(label, (width, height), interpolation=cv2.INTER_NEAREST)
    return image, label


def whole_pixel_span(free: float) -> Tuple[int, int]:
    """Return ``(first, last + 1)`` of the whole crop origins in ``[min(0, free), max(0, free)]``.

    ``free`` is how much wider (or taller) the scaled image is than the crop.
    """
    return math.ceil(min(0.0, free)), math.floor(max(0.0, free)) + 1


@dataclass
class AugmentationSettings:
    """What training augmentation draws: flip, scale, crop/translation, brightness/contrast.

    Attributes:
        crop_size: Output (width, height).
        ignore_index: Label id written where the crop reaches past the image.
        scale_range: Random scale factor range (uniform), e.g. (0.5, 2.0); (1, 1) disables.
        flip: Flip horizontally with probability 0.5.
        translate: Extra random shift of the crop, as a fraction of the crop size, beyond
            the positions that keep the crop inside the scaled image.
        brightness: Additive brightness change, up to this fraction of 255.
        contrast: Contrast factor in ``[1 - contrast, 1 + contrast]``.
        pixel_shift: When set, ``translate`` is not used: the crop origin is a uniform whole
            pixel among those that keep the crop inside the scaled image (or the image inside
            the crop), shifted by a uniform whole number of pixels in
            ``[-pixel_shift, pixel_shift]`` in x and, independently, in y.
    """

    crop_size: Tuple[int, int]
    ignore_index: int
    scale_range: Tuple[float, float] = (0.5, 2.0)
    flip: bool = True
    translate: float = 0.1
    brightness: float = 0.2
    contrast: float = 0.2
    pixel_shift: Optional[int] = None


class TrainAugmentation(AugmentationSettings):
    """The augmentation of :class:`AugmentationSettings` on one numpy image and label."""

    def __call__(self, image: np.ndarray, label: np.ndarray,
                 rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
        """Augment an ``H x W x 3`` uint8 RGB image and its ``H x W`` uint8 label."""
        height, width = label.shape
        crop_w, crop_h = self.crop_size
        scale = float(rng.uniform(*self.scale_range))
        flip = bool(self.flip and rng.random() < 0.5)
        # Crop origin in scaled-image pixels: anywhere keeping the crop inside the image (or
        # the image inside the crop when smaller), plus a random translation margin.
        free_x, free_y = width * scale - crop_w, height * scale - crop_h
        if self.pixel_shift is None:
            x0 = rng.uniform(min(0.0, free_x), max(0.0, free_x)) \
                + rng.uniform(-1, 1) * self.translate * crop_w
            y0 = rng.uniform(min(0.0, free_y), max(0.0, free_y)) \
                + rng.uniform(-1, 1) * self.translate * crop_h
        else:
            x0, y0 = (float(rng.integers(*whole_pixel_span(free)))
                      + float(rng.integers(-self.pixel_shift, self.pixel_shift + 1))
                      for free in (free_x, free_y))
        # Source pixel (x, y) lands at (scale * x' - x0, scale * y - y0), x' the flipped x.
        if flip:
            matrix = np.array([[-scale, 0.0, scale * (width - 1) - x0],
                               [0.0, scale, -y0]])
        else:
            matrix = np.array([[scale, 0.0, -x0], [0.0, scale, -y0]])
        image = cv2.warpAffine(image, matrix, (crop_w, crop_h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        label = cv2.warpAffine(label, matrix, (crop_w, crop_h), flags=cv2.INTER_NEAREST,
                               borderMode=cv2.BORDER_CONSTANT,
                               borderValue=(self.ignore_index,) * 3)
        if self.brightness or self.contrast:
            image = self._photometric(image, rng)
        return image, label

    def _photometric(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Scale contrast about the mean grey level and shift brightness, via a lookup table."""
        contrast = rng.uniform(1.0 - self.contrast, 1.0 + self.contrast)
        brightness = rng.uniform(-self.brightness, self.brightness) * 255.0
        mean = float(image.mean())
        table = (np.arange(256, dtype=np.float32) - mean) * contrast + mean + brightness
        return cv2.LUT(image, np.clip(np.rint(table), 0, 255).astype(np.uint8))
