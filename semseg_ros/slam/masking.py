"""Dynamic objects painted out of a frame, so that a stock ORB-SLAM3 finds no features on them.

ORB-SLAM3 takes no extractor mask, but it sees the pixels it is given (DynaSLAM-style input
masking). A hard fill would put strong edges, hence FAST corners, on the outline of every
car; the masked pixels are instead replaced by a heavy blur of the frame, blended in over a
feathered edge, which leaves nothing there for FAST to fire on.
"""

import cv2
import numpy as np

BLUR_KERNEL = 41  # px: wider than FAST's 7 px circle at every pyramid level that matters
FEATHER_KERNEL = 9  # px: the blend ramp at the mask's edge


def paint_out(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Return a copy of ``image`` with the pixels where ``mask`` is non-zero painted out.

    Args:
        image: ``H x W x 3`` (or ``H x W``) uint8 frame.
        mask: ``H x W`` uint8, non-zero on the pixels to remove (e.g. the keyframe scorer's
            dilated dynamic-class mask).

    Raises:
        ValueError: The mask's size differs from the image's.
    """
    if mask.shape[:2] != image.shape[:2]:
        raise ValueError(f'mask is {mask.shape[1]}x{mask.shape[0]}, the image '
                         f'{image.shape[1]}x{image.shape[0]}')
    if not mask.any():
        return image.copy()
    blurred = cv2.GaussianBlur(image, (BLUR_KERNEL, BLUR_KERNEL), 0)
    weight = cv2.GaussianBlur((mask > 0).astype(np.float32), (FEATHER_KERNEL, FEATHER_KERNEL), 0)
    weight = np.maximum(weight, (mask > 0).astype(np.float32))
    if image.ndim == 3:
        weight = weight[:, :, None]
    out = image.astype(np.float32) * (1.0 - weight) + blurred.astype(np.float32) * weight
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
