"""What a keyframe selection is worth to a feature-based SLAM system, measured without its scores.

The selector scores frames on semantic content and image quality; these measures ignore all of
that and ask only what ORB-SLAM2 would get from the keyframes, on plain ORB features (no
semantic mask):

* relocalisation recall: the fraction of all frames that match at least one of their
  ``neighbours`` nearest keyframes (in time) with at least ``min_inliers`` verified
  correspondences (:meth:`~semseg_ros.keyframes.matching.OrbMatcher.inliers`: ratio test,
  RANSAC fundamental matrix). A keyframe matches itself. ORB-SLAM2 accepts a relocalisation
  from 50 inliers, which is the default;
* tracking continuity: the fraction of consecutive keyframes that match each other the same
  way (a map whose keyframes do not share points falls apart into pieces);
* map size: the keyframes and the ORB features they hold.

Matching is the expensive part, so :class:`PairCache` keeps every pair's inlier count: a sweep
over keyframe counts and methods matches each pair of frames once.
"""

from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np

from semseg_ros.keyframes.matching import OrbFeatures, OrbMatcher


@dataclass(frozen=True)
class DownstreamOptions:
    """Settings of the downstream measures.

    Attributes:
        min_inliers: Verified correspondences for two frames to match (N).
        orb_features: ORB features extracted per frame.
        neighbours: Nearest keyframes (in time) a frame is tried against.
    """

    min_inliers: int = 50
    orb_features: int = 1000
    neighbours: int = 2

    def __post_init__(self):
        for name, low in (('min_inliers', 1), ('orb_features', 8), ('neighbours', 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f'downstream {name} must be an integer >= {low}, got {value!r}')


class PairCache:
    """Inlier counts between the frames of one sequence, each pair matched once.

    Args:
        matcher: The matcher to count with.
        features: The features of every frame, in order.
    """

    def __init__(self, matcher: OrbMatcher, features: Sequence[OrbFeatures]):
        self.matcher = matcher
        self.features = list(features)
        self._counts: Dict[Tuple[int, int], int] = {}

    def __len__(self) -> int:
        """Return the number of frames."""
        return len(self.features)

    def inliers(self, first: int, second: int) -> int:
        """Return the verified correspondences between frames ``first`` and ``second``."""
        key = (first, second) if first <= second else (second, first)
        if key not in self._counts:
            self._counts[key] = self.matcher.inliers(self.features[key[0]],
                                                     self.features[key[1]])
        return self._counts[key]

    @property
    def pairs_matched(self) -> int:
        """Return how many pairs were matched so far."""
        return len(self._counts)


def nearest_keyframes(frame: int, keyframes: np.ndarray, count: int) -> np.ndarray:
    """Return the ``count`` keyframes nearest to ``frame`` in index (ties: the earlier)."""
    order = np.argsort(np.abs(keyframes - frame), kind='stable')
    return keyframes[order[:count]]


def sequence_counts(cache: PairCache, keyframes: Sequence[int], options: DownstreamOptions
                    ) -> Dict[str, int]:
    """Return the raw counts of one sequence's selection (see :func:`downstream_measures`).

    Raises:
        ValueError: Keyframe indices not ascending, repeated or outside the sequence.
    """
    chosen = np.asarray(keyframes, np.int64)
    n = len(cache)
    if len(chosen) and (chosen[0] < 0 or chosen[-1] >= n or np.any(np.diff(chosen) <= 0)):
        raise ValueError(f'keyframes must be ascending distinct indices in 0..{n - 1}, got '
                         f'{chosen.tolist()}')
    recalled = 0
    if len(chosen):
        for frame in range(n):
            recalled += any(k == frame or cache.inliers(frame, int(k)) >= options.min_inliers
                            for k in nearest_keyframes(frame, chosen, options.neighbours))
    linked = sum(cache.inliers(int(a), int(b)) >= options.min_inliers
                 for a, b in zip(chosen, chosen[1:]))
    return {'frames': n, 'recalled': recalled, 'keyframes': len(chosen),
            'links': max(0, len(chosen) - 1), 'linked': linked,
            'map_features': sum(len(cache.features[int(k)]) for k in chosen)}


def downstream_measures(selections: Sequence[Tuple[PairCache, Sequence[int]]],
                        options: DownstreamOptions) -> Dict[str, float]:
    """Return the downstream measures of keyframes chosen over one or more sequences.

    Args:
        selections: Per sequence, its pair cache and the chosen keyframe indices (ascending).
        options: The measure's settings.

    Returns:
        ``recall`` (recalled frames / all frames), ``continuity`` (matching consecutive
        keyframes / consecutive pairs; NaN with no pair), ``keyframes``, ``map_features`` and
        the raw counts ``frames``, ``recalled``, ``links``, ``linked``.
    """
    totals = dict.fromkeys(('frames', 'recalled', 'keyframes', 'links', 'linked',
                            'map_features'), 0)
    for cache, keyframes in selections:
        for key, value in sequence_counts(cache, keyframes, options).items():
            totals[key] += value
    result: Dict[str, float] = dict(totals)
    result['recall'] = totals['recalled'] / totals['frames'] if totals['frames'] else float('nan')
    result['continuity'] = (totals['linked'] / totals['links'] if totals['links']
                            else float('nan'))
    return result


def plot_sweep(points: Dict[str, List[Dict[str, float]]], titles: Dict[str, str],
               path, caption: str) -> None:
    """Plot recall and continuity against the keyframe count, one line per method (PNG).

    Args:
        points: Method -> measures (``keyframes``, ``recall``, ``continuity``) per sweep point.
        titles: Method -> legend label.
        path: The PNG to write.
        caption: The figure title (what was measured, on what).
    """
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(1, 2, figsize=(11, 4.2))
    for method, measures in points.items():
        ordered = sorted(measures, key=lambda m: m['keyframes'])
        counts = [m['keyframes'] for m in ordered]
        for axis, key in zip(axes, ('recall', 'continuity')):
            axis.plot(counts, [m[key] for m in ordered], marker='o', markersize=3,
                      label=titles.get(method, method))
    for axis, label in zip(axes, ('relocalisation recall', 'tracking continuity')):
        axis.set_xlabel('keyframes')
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.suptitle(caption, fontsize=9)
    figure.tight_layout()
    figure.savefig(str(path), dpi=110, format='png')
    pyplot.close(figure)
