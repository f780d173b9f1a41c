"""Per-frame keyframe scoring from a segmentation label mask (and optionally image, confidence).

After Alonso, Riazuelo and Murillo, "Enhancing V-SLAM keyframe selection with an efficient
convnet for semantic analysis" (ICRA 2019): a fast segmentation network lets the robot prefer,
among the frames where the SLAM system could take a keyframe, those of good image quality and
useful semantic content. Every term is in [0, 1] and exposed on its own in :class:`FrameScore`:

* ``semantic``: weighted class coverage, the mean over all pixels of the pixel's class weight
  (``class_weights`` in the config, by class name; void pixels weigh 0), each pixel times
  ``confidence / 255`` when a confidence map is given and ``confidence_weighting`` is on.
* ``diversity``: entropy of the class histogram (void excluded) / log(number of classes).
* ``dynamic``: fraction of all pixels whose class moves (``dynamic_classes``). It lowers the
  score through ``static = 1 - dynamic``; :func:`dynamic_mask` marks those pixels.
* ``sharpness``: ``v / (v + sharpness_scale)`` with ``v`` (``laplacian_var``) the variance of
  the 3x3 Laplacian of the 8-bit grey image: 0 for a flat image, 0.5 at ``v = scale``, -> 1.
  Computed at the image's full resolution, as ``v`` depends on scale.
* ``exposure``: ``brightness term * clipping term``; the clipping term is
  ``max(0, 1 - (clipped_dark + clipped_bright) / max_clipped_fraction)`` with the fractions of
  grey levels ``<= dark_level`` and ``>= bright_level``; the brightness term is 1 when the mean
  grey level (``brightness``, 0..1) equals ``target_brightness`` and falls linearly to 0 at
  all-black and all-white.
* ``quality``: ``sharpness * exposure``; 1.0 when no image is given (quality unknown is not
  penalised; the image terms are then ``None``).
* ``novelty``: distance between this frame's class histograms and a reference's (the last
  keyframe's), each on a ``novelty_grid x novelty_grid`` grid of cells with void as a bin of
  its own, averaged over cells: ``1 - sum(min(p, q))`` (intersection) or
  ``sqrt(1 - sum(sqrt(p * q)))`` (Hellinger). 0 = same content, 1 = disjoint; 1.0 without a
  reference (everything is new).
* ``total``: ``sum(w_x * x) / sum(w)`` over x = quality, semantic, diversity, novelty, static
  with the ``weight_*`` keys of the config (:class:`ScoreWeights`); in [0, 1].

Class histograms are counted on every ``label_stride``-th row and column of the label mask
(nearest subsampling, so ids never blend): the fractions of regions much wider than the stride
stay the same, and the count is ``stride**2`` times cheaper. Labels are validated at full size.
The image and confidence map must have the label mask's height and width: the caller resizes
(a label mask with nearest-neighbour interpolation, an image with area interpolation) because
only it knows which resolution the SLAM system sees.

Typical use::

    scorer = KeyframeScorer(load_keyframe_config())
    score = scorer.score(labels, image=rgb, confidence=conf, reference=policy.reference)
    decisions = policy.push(stamp_ns, score, payload)
    mask = scorer.dynamic_mask(labels)    # 255 on moving objects; detector mask = 255 - mask
"""

from dataclasses import dataclass, field, fields, replace
import math
from typing import Any, Dict, Iterable, Mapping, Optional, Tuple

import cv2
import numpy as np

from semseg_ros.core.classes import ClassSet, load_class_set, UNLABELED_ID
from semseg_ros.keyframes.config import load_keyframe_config, validate_keyframe_config


@dataclass(frozen=True)
class ScoreWeights:
    """Weights of the combined score; ``total = sum(w_x * x) / sum(w)``.

    Attributes:
        quality: Weight of ``quality`` (sharpness * exposure).
        semantic: Weight of the weighted class coverage.
        diversity: Weight of the normalised class entropy.
        novelty: Weight of the novelty against the last keyframe.
        static: Weight of ``1 - dynamic``.
    """

    quality: float = 0.35
    semantic: float = 0.25
    diversity: float = 0.10
    novelty: float = 0.15
    static: float = 0.15

    def __post_init__(self):
        values = [getattr(self, f.name) for f in fields(self)]
        if min(values) < 0 or sum(values) <= 0:
            raise ValueError(f'score weights must be >= 0 with a positive sum, got {self}')

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> 'ScoreWeights':
        """Build from the ``weight_*`` keys of a keyframe configuration."""
        return cls(**{f.name: float(config[f'weight_{f.name}']) for f in fields(cls)})

    def combine(self, quality: float, semantic: float, diversity: float, novelty: float,
                dynamic: float) -> float:
        """Return the combined score of the given terms (all in [0, 1])."""
        total = (self.quality * quality + self.semantic * semantic
                 + self.diversity * diversity + self.novelty * novelty
                 + self.static * (1.0 - dynamic))
        return total / (self.quality + self.semantic + self.diversity + self.novelty
                        + self.static)


@dataclass(frozen=True)
class FrameScore:
    """The score of one frame, term by term (all terms in [0, 1]).

    Only ``total`` and ``quality`` are needed by :class:`~semseg_ros.keyframes.policy.
    KeyframePolicy`` (and ``novelty`` for its immediate trigger), so synthetic scores can be
    built with just those. Scores from :class:`KeyframeScorer` also carry the per-cell class
    histograms and the weights, which lets :meth:`relative_to` recompute the novelty against
    another keyframe.

    Attributes:
        total: Combined score (see :class:`ScoreWeights`).
        quality: ``sharpness * exposure``, 1.0 when no image was scored.
        semantic: Weighted coverage of useful classes.
        diversity: Normalised entropy of the class histogram.
        dynamic: Fraction of pixels of dynamic classes.
        novelty: Histogram distance to the reference keyframe (1.0 without reference).
        void: Fraction of void pixels.
        sharpness: Saturated variance of the Laplacian (None without image).
        exposure: Exposure score (None without image).
        brightness: Mean grey level / 255 (None without image).
        clipped_dark: Fraction of grey levels <= dark_level (None without image).
        clipped_bright: Fraction of grey levels >= bright_level (None without image).
        laplacian_var: Raw variance of the Laplacian, for tuning sharpness_scale.
        histograms: ``cells x (classes + 1)`` float32 class histograms (rows sum to 1, last
            column void), or None.
        weights: The weights ``total`` was combined with, or None.
    """

    total: float
    quality: float = 1.0
    semantic: float = 0.0
    diversity: float = 0.0
    dynamic: float = 0.0
    novelty: float = 1.0
    void: float = 0.0
    sharpness: Optional[float] = None
    exposure: Optional[float] = None
    brightness: Optional[float] = None
    clipped_dark: Optional[float] = None
    clipped_bright: Optional[float] = None
    laplacian_var: Optional[float] = None
    histograms: Optional[np.ndarray] = field(default=None, repr=False, compare=False)
    weights: Optional[ScoreWeights] = field(default=None, repr=False, compare=False)

    def as_dict(self) -> Dict[str, float]:
        """Return the scalar terms as ``name -> float`` (terms that are None left out)."""
        values = ((f.name, getattr(self, f.name)) for f in fields(self)
                  if f.name not in ('histograms', 'weights'))
        return {name: float(value) for name, value in values if value is not None}

    def relative_to(self, reference: Optional[np.ndarray], metric: str = 'intersection'
                    ) -> 'FrameScore':
        """Return a copy with novelty (and total) measured against another reference.

        Args:
            reference: The reference keyframe's ``histograms``; None -> novelty 1.0.
            metric: ``intersection`` or ``hellinger``.

        Raises:
            ValueError: This score has no histograms or weights, or the shapes differ.
        """
        if self.histograms is None or self.weights is None:
            raise ValueError('this FrameScore has no class histograms or weights to measure '
                             'novelty with; score frames with KeyframeScorer')
        novelty = histogram_novelty(self.histograms, reference, metric)
        total = self.weights.combine(self.quality, self.semantic, self.diversity, novelty,
                                     self.dynamic)
        return replace(self, novelty=novelty, total=total)


def histogram_novelty(histograms: np.ndarray, reference: Optional[np.ndarray],
                      metric: str = 'intersection') -> float:
    """Return the mean per-cell distance between two sets of normalised histograms, in [0, 1].

    Args:
        histograms: ``cells x bins`` array, each row summing to 1.
        reference: Same shape, or None (-> 1.0: nothing to compare with, all is new).
        metric: ``intersection`` (``1 - sum(min(p, q))``) or ``hellinger``
            (``sqrt(1 - sum(sqrt(p * q)))``).

    Raises:
        ValueError: Unknown metric or shapes that differ.
    """
    if reference is None:
        return 1.0
    if histograms.shape != reference.shape:
        raise ValueError(f'novelty: histograms {histograms.shape} and reference '
                         f'{reference.shape} differ (another class set or novelty_grid?)')
    if metric == 'intersection':
        per_cell = 1.0 - np.minimum(histograms, reference).sum(axis=1)
    elif metric == 'hellinger':
        overlap = np.sqrt(histograms.astype(np.float64) * reference).sum(axis=1)
        per_cell = np.sqrt(np.clip(1.0 - overlap, 0.0, 1.0))
    else:
        raise ValueError(f"novelty metric must be 'intersection' or 'hellinger', got {metric!r}")
    return float(np.clip(per_cell.mean(), 0.0, 1.0))


def sharpness_score(laplacian_var: float, scale: float) -> float:
    """Map a variance of the Laplacian to [0, 1): ``v / (v + scale)`` (0.5 at ``v = scale``)."""
    return float(laplacian_var / (laplacian_var + scale))


def dynamic_mask(labels: np.ndarray, dynamic_ids: Iterable[int], dilation_px: int = 0
                 ) -> np.ndarray:
    """Return a uint8 mask, 255 on pixels of dynamic classes grown by ``dilation_px``, else 0.

    The growth uses an elliptical kernel of size ``2 * dilation_px + 1`` (a disc), so a single
    pixel becomes a disc of radius ``dilation_px``. Feature extractors skip the marked pixels:
    OpenCV detectors take ``255 - mask`` (or ``cv2.bitwise_not(mask)``) as their mask.

    Args:
        labels: ``H x W`` uint8 class ids.
        dynamic_ids: Class ids that move.
        dilation_px: Growth radius in pixels (0 = none).

    Raises:
        ValueError: labels not 2-D uint8, ids outside 0..255, or a negative radius.
    """
    _check_labels(labels)
    ids = [int(i) for i in dynamic_ids]
    if any(not 0 <= i <= 255 for i in ids):
        raise ValueError(f'dynamic ids must be uint8 class ids (0..255), got {ids}')
    if int(dilation_px) != dilation_px or dilation_px < 0:
        raise ValueError(f'dilation_px must be a non-negative integer, got {dilation_px!r}')
    table = np.zeros(256, np.uint8)
    table[ids] = 255
    mask = cv2.LUT(labels, table)
    if dilation_px > 0 and ids:
        size = 2 * int(dilation_px) + 1
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
        mask = cv2.dilate(mask, kernel)
    return mask


def _check_labels(labels: np.ndarray) -> None:
    """Raise ValueError unless labels is a non-empty 2-D uint8 array."""
    if not isinstance(labels, np.ndarray) or labels.dtype != np.uint8 or labels.ndim != 2 \
            or labels.size == 0:
        desc = (f'{labels.dtype} array of shape {labels.shape}' if isinstance(labels, np.ndarray)
                else type(labels).__name__)
        raise ValueError(f'labels must be a non-empty H x W uint8 class-id array, got {desc}')


class KeyframeScorer:
    """Scores frames for keyframe selection; built once from a configuration, then per frame.

    Attributes:
        class_set: The class set the label ids refer to.
        class_weights: ``num_classes`` float array, the per-id semantic weights.
        dynamic_ids: Tuple of the dynamic class ids.
        weights: The :class:`ScoreWeights` of ``total``.
        config: The validated configuration.
    """

    def __init__(self, config: Optional[Mapping[str, Any]] = None,
                 class_set: Optional[ClassSet] = None):
        """Build a scorer.

        Args:
            config: Keyframe configuration (validated here); None loads the shipped one.
            class_set: The class set ``config['class_set']`` names, if already loaded.

        Raises:
            ValueError: Invalid configuration, or a class name not in the class set (the
                message lists the valid names).
        """
        self.config = (load_keyframe_config() if config is None
                       else validate_keyframe_config(config))
        self.class_set = class_set or load_class_set(self.config['class_set'])
        names = self.class_set.names
        self.class_weights = np.full(len(names), self.config['default_class_weight'])
        for name, weight in self.config['class_weights'].items():
            self.class_weights[self._class_id(name, 'class_weights')] = weight
        self.dynamic_ids = tuple(self._class_id(n, 'dynamic_classes')
                                 for n in self.config['dynamic_classes'])
        self.weights = ScoreWeights.from_config(self.config)
        self.num_bins = len(names) + 1  # the last bin counts void
        # uint8 id -> histogram bin; invalid ids are rejected before the table is used.
        self._bin_of_id = np.full(256, self.num_bins - 1, np.intp)
        self._bin_of_id[:len(names)] = np.arange(len(names))
        self._dynamic_bins = np.zeros(self.num_bins, bool)
        self._dynamic_bins[list(self.dynamic_ids)] = True
        self._cell_cache: Dict[Tuple[int, int, int], Tuple[int, np.ndarray]] = {}

    def _class_id(self, name: str, key: str) -> int:
        """Return the id of a class name, or raise ValueError listing the valid names."""
        if name not in self.class_set.names:
            raise ValueError(f'{key}: unknown class {name!r}; classes of '
                             f'{self.class_set.name!r}: {", ".join(self.class_set.names)}')
        return self.class_set.names.index(name)

    def check_labels(self, labels: np.ndarray) -> None:
        """Raise ValueError unless labels is 2-D uint8 with ids of the class set or void.

        Void is the class set's ignore id or :data:`UNLABELED_ID` (LabelInfo's "unlabelled",
        which the segmentation node writes under its confidence threshold).
        """
        _check_labels(labels)
        num_classes, ignore = self.class_set.num_classes, self.class_set.ignore_index
        if int(labels.max()) < num_classes:
            return
        outside = (labels >= num_classes) & (labels != ignore) & (labels != UNLABELED_ID)
        if not outside.any():
            return
        bad = np.unique(labels[outside])
        raise ValueError(f'labels hold id(s) {bad[:10].tolist()} outside the class set '
                         f'{self.class_set.name!r} (ids 0..{num_classes - 1}, void '
                         f'{ignore} or {UNLABELED_ID})')

    def _cells(self, height: int, width: int) -> Tuple[int, np.ndarray]:
        """Return (stride, per-pixel cell offset ``cell * num_bins``) for a label-mask size."""
        key = (height, width, self.config['label_stride'])
        if key not in self._cell_cache:
            if len(self._cell_cache) >= 8:  # sizes rarely change; keep the cache small
                self._cell_cache.clear()
            grid = self.config['novelty_grid']
            if height < grid or width < grid:
                raise ValueError(f'labels of {height}x{width} are smaller than the '
                                 f'{grid}x{grid} novelty grid')
            # A smaller stride where the grid would leave a cell empty.
            stride = max(1, min(self.config['label_stride'], height // grid, width // grid))
            rows = (np.arange(0, height, stride) * grid) // height
            cols = (np.arange(0, width, stride) * grid) // width
            offsets = (rows[:, None] * grid + cols[None, :]) * self.num_bins
            self._cell_cache[key] = (stride, offsets.astype(np.intp))
        return self._cell_cache[key]

    def class_counts(self, labels: np.ndarray, confidence: Optional[np.ndarray] = None
                     ) -> np.ndarray:
        """Count labels per novelty cell on the subsampled mask (labels assumed valid).

        Returns:
            ``cells x (num_classes + 1)`` float64 pixel counts (last column void), or with a
            confidence map the sums of ``confidence`` per cell and class.
        """
        stride, offsets = self._cells(*labels.shape)
        index = offsets + self._bin_of_id[labels[::stride, ::stride]]
        cells = self.config['novelty_grid'] ** 2
        weights = None if confidence is None else confidence[::stride, ::stride].ravel()
        counts = np.bincount(index.ravel(), weights=weights, minlength=cells * self.num_bins)
        return counts.reshape(cells, self.num_bins).astype(np.float64)

    def score(self, labels: np.ndarray, image: Optional[np.ndarray] = None,
              confidence: Optional[np.ndarray] = None,
              reference: Optional[np.ndarray] = None) -> FrameScore:
        """Score one frame.

        Args:
            labels: ``H x W`` uint8 class ids (void = the class set's ignore id).
            image: ``H x W x 3`` RGB or ``H x W`` grey uint8 image, or None (no quality terms).
            confidence: ``H x W`` uint8 confidence (0..255) of the labels, or None.
            reference: The last keyframe's ``FrameScore.histograms`` for the novelty, or None
                (novelty 1.0). ``KeyframePolicy.reference`` gives it.

        Returns:
            The :class:`FrameScore`.

        Raises:
            ValueError: Invalid labels, ids outside the class set, or an image / confidence
                map of another size or dtype.
        """
        self.check_labels(labels)
        if confidence is not None:
            _check_same_size('confidence', confidence, labels, channels=(None,))
        counts = self.class_counts(labels)
        cell_totals = counts.sum(axis=1, keepdims=True)
        histograms = (counts / cell_totals).astype(np.float32)
        per_class = counts.sum(axis=0)
        pixels = per_class.sum()
        classes = per_class[:-1]
        if confidence is not None and self.config['confidence_weighting']:
            mass = self.class_counts(labels, confidence).sum(axis=0)[:-1] / 255.0
        else:
            mass = classes
        semantic = float(np.dot(self.class_weights, mass) / pixels)
        labelled = classes.sum()
        diversity = 0.0
        if labelled > 0 and len(classes) > 1:
            p = classes[classes > 0] / labelled
            diversity = float(-(p * np.log(p)).sum() / math.log(len(classes)))
        dynamic = float(per_class[self._dynamic_bins].sum() / pixels)
        terms = {'semantic': _unit(semantic), 'diversity': _unit(diversity),
                 'dynamic': dynamic, 'void': float(per_class[-1] / pixels),
                 'novelty': histogram_novelty(histograms, reference,
                                              self.config['novelty_metric'])}
        if image is not None:
            _check_same_size('image', image, labels, channels=(None, 3))
            terms.update(self.image_quality(image))
            terms['quality'] = terms['sharpness'] * terms['exposure']
        else:
            terms['quality'] = 1.0
        total = self.weights.combine(terms['quality'], terms['semantic'], terms['diversity'],
                                     terms['novelty'], terms['dynamic'])
        return FrameScore(total=total, histograms=histograms, weights=self.weights, **terms)

    def image_quality(self, image: np.ndarray) -> Dict[str, float]:
        """Return the image terms: sharpness, exposure, brightness, clipped fractions, variance.

        Args:
            image: ``H x W x 3`` RGB or ``H x W`` grey uint8 image.
        """
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
        laplacian = cv2.Laplacian(gray, cv2.CV_16S)
        _, std = cv2.meanStdDev(laplacian)
        variance = float(std[0, 0]) ** 2
        levels = cv2.calcHist([gray], [0], None, [256], [0, 256]).ravel().astype(np.float64)
        levels /= levels.sum()
        brightness = float(np.dot(levels, np.arange(256)) / 255.0)
        dark = float(levels[:self.config['dark_level'] + 1].sum())
        bright = float(levels[self.config['bright_level']:].sum())
        target = self.config['target_brightness']
        brightness_term = 1.0 - abs(brightness - target) / max(target, 1.0 - target)
        clipping_term = 1.0 - (dark + bright) / self.config['max_clipped_fraction']
        return {'sharpness': sharpness_score(variance, self.config['sharpness_scale']),
                'exposure': _unit(brightness_term) * _unit(clipping_term),
                'brightness': brightness, 'clipped_dark': dark, 'clipped_bright': bright,
                'laplacian_var': variance}

    def dynamic_mask(self, labels: np.ndarray, dilation_px: Optional[int] = None) -> np.ndarray:
        """Return :func:`dynamic_mask` for this scorer's dynamic classes.

        Args:
            labels: ``H x W`` uint8 class ids.
            dilation_px: Growth radius; None = ``dynamic_dilation_px`` of the config.
        """
        if dilation_px is None:
            dilation_px = self.config['dynamic_dilation_px']
        return dynamic_mask(labels, self.dynamic_ids, dilation_px)


def _unit(value: float) -> float:
    """Clip to [0, 1] (guards rounding at the ends)."""
    return min(1.0, max(0.0, float(value)))


def _check_same_size(name: str, array: np.ndarray, labels: np.ndarray,
                     channels: Tuple[Optional[int], ...]) -> None:
    """Raise ValueError unless array is uint8 of the labels' size with allowed channels."""
    if not isinstance(array, np.ndarray) or array.dtype != np.uint8:
        got = array.dtype if isinstance(array, np.ndarray) else type(array).__name__
        raise ValueError(f'{name} must be a uint8 array, got {got}')
    allowed = ' or '.join('H x W' if c is None else f'H x W x {c}' for c in channels)
    shape_ok = (array.ndim == 2 and None in channels) or (array.ndim == 3
                                                          and array.shape[2] in channels)
    if not shape_ok:
        raise ValueError(f'{name} must be {allowed}, got shape {array.shape}')
    if array.shape[:2] != labels.shape:
        raise ValueError(f'{name} size {array.shape[1]}x{array.shape[0]} differs from the '
                         f'label mask {labels.shape[1]}x{labels.shape[0]}; resize one to the '
                         'other first (labels: nearest neighbour)')
