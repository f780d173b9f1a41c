"""ORB features and geometrically verified matches between frames, as a SLAM front end sees them.

One :class:`OrbMatcher` extracts ORB features (OpenCV's ORB: FAST corners on an image pyramid,
rotated BRIEF descriptors, as in ORB-SLAM2) and counts the correspondences between two frames
that survive Lowe's ratio test and a RANSAC fundamental matrix: the *verified inliers*. Both
the downstream evaluation (:mod:`semseg_ros.keyframes.downstream`) and the visual-overlap term
of the keyframe policy use it.

Features are extracted once per frame (:class:`OrbFeatures`); a semantic mask then selects a
subset (:meth:`OrbFeatures.outside`) without extracting again, so the plain and the masked
feature sets of a frame share the same keypoints.

Typical use::

    matcher = OrbMatcher(n_features=1000)
    a, b = matcher.extract(rgb_a), matcher.extract(rgb_b)
    inliers = matcher.inliers(a, b)           # 0 .. min(len(a), len(b))
    static = a.outside(dynamic_mask_a)         # features off moving objects
"""

from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

# Fewest correspondences a fundamental matrix can be fitted to (the 8-point method).
MIN_CORRESPONDENCES = 8


@dataclass(frozen=True)
class OrbFeatures:
    """The ORB features of one frame.

    Attributes:
        points: ``N x 2`` float32 keypoint positions (x, y) in pixels.
        descriptors: ``N x 32`` uint8 binary descriptors (256 bits each).
    """

    points: np.ndarray
    descriptors: np.ndarray

    def __len__(self) -> int:
        """Return the number of features."""
        return len(self.points)

    def outside(self, mask: Optional[np.ndarray]) -> 'OrbFeatures':
        """Return the features whose keypoint falls on a zero pixel of ``mask`` (None: all).

        Args:
            mask: ``H x W`` uint8, non-zero where features are unwanted (moving objects, as
                :func:`~semseg_ros.keyframes.scoring.dynamic_mask` marks them).
        """
        if mask is None or not len(self):
            return self
        cols = np.clip(self.points[:, 0].astype(np.intp), 0, mask.shape[1] - 1)
        rows = np.clip(self.points[:, 1].astype(np.intp), 0, mask.shape[0] - 1)
        keep = mask[rows, cols] == 0
        return OrbFeatures(self.points[keep], self.descriptors[keep])


class OrbMatcher:
    """Extracts ORB features and counts RANSAC-verified correspondences between two frames."""

    def __init__(self, n_features: int = 1000, ratio: float = 0.8, ransac_px: float = 2.0,
                 confidence: float = 0.99):
        """Set the extractor and the verification.

        Args:
            n_features: Most ORB features per frame (ORB-SLAM2's monocular default: 1000).
            ratio: Lowe's ratio test: the best match's Hamming distance must be below this
                fraction of the second best's, in (0, 1].
            ransac_px: Distance in pixels of an inlier from its epipolar line (ORB-SLAM2's
                chi-square test at one pixel of noise allows about 2).
            confidence: RANSAC confidence, in (0, 1).

        Raises:
            ValueError: A value out of range, naming it.
        """
        if not isinstance(n_features, int) or isinstance(n_features, bool) or n_features < 8:
            raise ValueError(f'OrbMatcher: n_features must be an integer >= 8, got '
                             f'{n_features!r}')
        if not 0.0 < ratio <= 1.0:
            raise ValueError(f'OrbMatcher: ratio must be in (0, 1], got {ratio!r}')
        if not ransac_px > 0:
            raise ValueError(f'OrbMatcher: ransac_px must be positive, got {ransac_px!r}')
        if not 0.0 < confidence < 1.0:
            raise ValueError(f'OrbMatcher: confidence must be in (0, 1), got {confidence!r}')
        self.n_features = n_features
        self.ratio = float(ratio)
        self.ransac_px = float(ransac_px)
        self.confidence = float(confidence)
        self._orb = cv2.ORB_create(nfeatures=n_features)
        self._matcher = cv2.BFMatcher(cv2.NORM_HAMMING)

    def extract(self, image: np.ndarray) -> OrbFeatures:
        """Return the ORB features of an ``H x W x 3`` RGB or ``H x W`` grey uint8 image."""
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 \
                or image.ndim not in (2, 3) or image.size == 0:
            shape = getattr(image, 'shape', None)
            raise ValueError(f'extract: expected an H x W (x 3) uint8 image, got {shape}')
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
        keypoints, descriptors = self._orb.detectAndCompute(gray, None)
        if descriptors is None:
            return OrbFeatures(np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8))
        points = np.array([k.pt for k in keypoints], np.float32).reshape(-1, 2)
        return OrbFeatures(points, descriptors)

    def inliers(self, first: OrbFeatures, second: OrbFeatures) -> int:
        """Return the number of ratio-tested matches consistent with one fundamental matrix.

        0 when fewer than :data:`MIN_CORRESPONDENCES` matches pass the ratio test (no
        geometry can be verified) or RANSAC finds no model.
        """
        if len(first) < 2 or len(second) < 2:
            return 0
        pairs = self._matcher.knnMatch(first.descriptors, second.descriptors, k=2)
        good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < self.ratio * p[1].distance]
        if len(good) < MIN_CORRESPONDENCES:
            return 0
        source = first.points[[m.queryIdx for m in good]]
        target = second.points[[m.trainIdx for m in good]]
        if np.array_equal(source, target):
            return len(good)  # the same view: every match is consistent, no model to fit
        _, inlier_mask = cv2.findFundamentalMat(source, target, cv2.FM_RANSAC, self.ransac_px,
                                                self.confidence)
        return 0 if inlier_mask is None else int(inlier_mask.sum())
