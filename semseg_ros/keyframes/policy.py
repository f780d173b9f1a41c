"""Online keyframe selection from per-frame scores, and plain baselines to compare it with.

:class:`KeyframePolicy` is deterministic and online: frames are pushed in time order with their
:class:`~semseg_ros.keyframes.scoring.FrameScore`; each push returns the keyframe decisions it
settles, which may name an earlier frame (at most ``window_frames`` frames back), so a SLAM
front end keeps the last ``window_frames + 1`` frames to turn a decision into a keyframe.

Rules, for the frames pushed since the last keyframe (the *candidates*), applied after each
push in this order (maximum gap, novelty, window) until none fires:

* Gaps. Between consecutive keyframes at least ``min_gap_frames`` frames AND ``min_gap_s``
  seconds pass (a candidate meeting both is *eligible*); a keyframe is forced once the newest
  frame is ``max_gap_frames`` frames OR ``max_gap_s`` seconds after the last keyframe.
* Maximum gap (``'max_gap'``). The best eligible candidate within the maximum gap, preferring
  those at or above the floor, then those below it; failing that, the best eligible one.
* Novelty. An eligible newest frame with ``novelty >= novelty_threshold`` and quality at or
  above the floor is emitted at once (``'novelty'``); older candidates are dropped.
* Window. The eligible candidate of highest ``total`` with ``quality >= quality_floor`` (ties:
  the earliest) is emitted (``'window_best'``) once ``window_frames`` newer frames have passed
  without beating it.
* First (``'first'``). The first frame with quality at or above the floor. If none comes
  within the maximum gap after the sequence's first frame, or before :meth:`flush`, the best
  buffered frame whatever its quality.
* Initial (``'initial'``). With ``initial_keyframes`` N > 0, each of the first N frames of a
  sequence that is eligible (the minimum gap) is a keyframe at once: a monocular SLAM fed only
  the keyframes (the mapping profile, ``config/keyframes_mapping.yaml``) initialises its map
  from close frames; measured with ORB-SLAM3 in docs/orbslam2.md.
* Candidates more than ``window_frames`` frames old are dropped (they lost to a newer one or
  were never eligible), which bounds the delay.

Visual-overlap mode (``min_shared_features > 0``, the shipped configuration) replaces the
novelty and window rules with the rule of a SLAM front end, ORB-SLAM2's "tracked points fell
below a fraction of the reference keyframe's": every frame is pushed with its features (for
:meth:`from_config`, the :class:`~semseg_ros.keyframes.matching.OrbFeatures` of the frame off
the dynamic classes' mask) and the policy counts the verified correspondences it shares with the
last keyframe (``overlap``, by default :meth:`OrbMatcher.inliers`).

* Overlap (``'overlap'``). Once the newest frame shares fewer than ``min_shared_features`` with
  the last keyframe, the keyframe is the eligible frame before it, among the last
  ``window_frames + 1``, that still shares enough, of highest ``total`` at or above the quality
  floor (ties: the latest): the sharpest, most static frame that keeps the map connected. When
  no earlier frame qualifies, the newest frame itself (if eligible). Decisions are then at most
  ``window_frames + 1`` frames late; density follows how fast the view changes, not the clock.
* The maximum gap and the first keyframe are decided as above; flush adds no keyframe (the
  frames since the last one still overlap it).

Guarantees: gaps between keyframes are >= the minimum in frames and in seconds, always. They
are <= the maximum in frames and seconds, except where no frame meets the minimum within the
maximum: a hole in the stamps (or frames so sparse that ``min_gap_frames`` of them span more
than ``max_gap_s``), or ``max_gap_frames`` frames within ``min_gap_s``; the keyframe is then the
best frame meeting the minimum, as soon as one does. Every decision names a frame at most
``window_frames`` frames before the frame whose push produced it. A non-empty sequence yields
at least one keyframe. Stamps must increase strictly (else ValueError, and the frame is not
taken).

Novelty is measured against the last keyframe, which is only known once it is decided. Scores
that carry class histograms (all those of :class:`KeyframeScorer`) are therefore re-based by the
policy on its own last keyframe (:meth:`FrameScore.relative_to`) when pushed and again when a
new keyframe is decided; pass ``reference=policy.reference`` to the scorer to publish the same
values. Scores without histograms (synthetic ones) are used as given.

Typical use::

    policy = KeyframePolicy.from_config(config)
    for stamp_ns, labels, image in frames:
        for decision in policy.push(stamp_ns, scorer.score(labels, image,
                                                           reference=policy.reference), image):
            keep(decision.index, decision.payload, decision.reason)
    final = policy.flush()
"""

from dataclasses import dataclass
import math
from typing import Any, Callable, List, Mapping, Optional, Sequence

import numpy as np

from semseg_ros.keyframes.matching import OrbMatcher
from semseg_ros.keyframes.scoring import FrameScore, histogram_novelty

REASONS = ('first', 'initial', 'window_best', 'novelty', 'max_gap', 'overlap')


@dataclass(frozen=True)
class KeyframeDecision:
    """A frame chosen as keyframe.

    Attributes:
        index: The frame's position in the sequence (0 = first frame pushed).
        stamp_ns: Its stamp in nanoseconds.
        score: Its score (novelty re-based on the previous keyframe where possible).
        reason: ``'first'``, ``'window_best'``, ``'novelty'``, ``'max_gap'`` or
            ``'overlap'``.
        payload: What was pushed with the frame (frame id, image...).
        decided_at: Index of the frame whose push (or the last frame, for flush) decided it;
            ``decided_at - index`` is the decision delay in frames.
        gap_frames: Frames since the previous keyframe (None for the first).
        gap_ns: Nanoseconds since the previous keyframe (None for the first).
    """

    index: int
    stamp_ns: int
    score: FrameScore
    reason: str
    payload: Any
    decided_at: int
    gap_frames: Optional[int]
    gap_ns: Optional[int]


@dataclass(eq=False)
class _Frame:
    """A pushed frame waiting in the candidate buffer (compared by identity)."""

    index: int
    stamp_ns: int
    score: FrameScore
    payload: Any
    features: Any = None
    # (keyframe index, correspondences shared with that keyframe), computed on demand.
    shared: Optional[tuple] = None


def _best(frames: Sequence[_Frame]) -> Optional[_Frame]:
    """Return the frame of highest total score (the earliest on ties), or None."""
    best = None
    for frame in frames:
        if best is None or frame.score.total > best.score.total:
            best = frame
    return best


class KeyframePolicy:
    """Deterministic online keyframe selection with bounded delay (rules in the module doc)."""

    def __init__(self, min_gap_frames: int = 5, max_gap_frames: int = 60,
                 min_gap_s: float = 0.2, max_gap_s: float = 4.0, window_frames: int = 10,
                 novelty_threshold: float = 0.5, quality_floor: float = 0.2,
                 novelty_metric: str = 'intersection', min_shared_features: int = 0,
                 overlap: Optional[Callable[[Any, Any], int]] = None,
                 initial_keyframes: int = 0):
        """Set the rules.

        Args:
            min_gap_frames: Fewest frames between keyframes (>= 1).
            max_gap_frames: Most frames between keyframes (>= min_gap_frames).
            min_gap_s: Fewest seconds between keyframes (>= 0).
            max_gap_s: Most seconds between keyframes (> 0, >= min_gap_s).
            window_frames: Frames a best candidate must stay unbeaten (>= 0; 0 = greedy).
            novelty_threshold: Novelty that triggers an immediate keyframe, in (0, 1].
            quality_floor: Minimum quality of a keyframe unless forced, in [0, 1].
            novelty_metric: Metric for re-basing novelty: ``intersection`` or ``hellinger``.
            min_shared_features: Visual-overlap mode when > 0: a keyframe is due once the
                newest frame shares fewer verified correspondences with the last keyframe.
            overlap: ``overlap(features, keyframe_features) -> int``, the correspondences two
                frames share; default :meth:`OrbMatcher.inliers` of a default matcher.
            initial_keyframes: The first this many frames of a sequence are keyframes (those
                meeting the minimum gap; >= 0).

        Raises:
            ValueError: A value out of range, naming it.
        """
        def integer(low):
            return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low

        def number(test):
            return lambda v: (isinstance(v, (int, float)) and not isinstance(v, bool)
                              and math.isfinite(v) and test(v))

        checks = [
            ('min_gap_frames', min_gap_frames, integer(1), 'an integer >= 1'),
            ('max_gap_frames', max_gap_frames, integer(1), 'an integer >= 1'),
            ('min_gap_s', min_gap_s, number(lambda v: v >= 0), 'a finite number >= 0'),
            ('max_gap_s', max_gap_s, number(lambda v: v > 0), 'a finite number > 0'),
            ('window_frames', window_frames, integer(0), 'an integer >= 0'),
            ('novelty_threshold', novelty_threshold, number(lambda v: 0 < v <= 1),
             'a number in (0, 1]'),
            ('quality_floor', quality_floor, number(lambda v: 0 <= v <= 1),
             'a number in [0, 1]'),
            ('novelty_metric', novelty_metric,
             lambda v: v in ('intersection', 'hellinger'), "'intersection' or 'hellinger'"),
            ('min_shared_features', min_shared_features, integer(0), 'an integer >= 0'),
            ('initial_keyframes', initial_keyframes, integer(0), 'an integer >= 0'),
        ]
        for name, value, check, expected in checks:
            if not check(value):
                raise ValueError(f'KeyframePolicy: {name} must be {expected}, got {value!r}')
        if max_gap_frames < min_gap_frames or max_gap_s < min_gap_s:
            raise ValueError(f'KeyframePolicy: the maximum gap ({max_gap_frames} frames, '
                             f'{max_gap_s} s) must not be below the minimum '
                             f'({min_gap_frames} frames, {min_gap_s} s)')
        self.min_gap_frames = min_gap_frames
        self.max_gap_frames = max_gap_frames
        self.min_gap_ns = int(round(min_gap_s * 1e9))
        self.max_gap_ns = int(round(max_gap_s * 1e9))
        self.window_frames = window_frames
        self.novelty_threshold = float(novelty_threshold)
        self.quality_floor = float(quality_floor)
        self.novelty_metric = novelty_metric
        self.min_shared_features = min_shared_features
        self.initial_keyframes = initial_keyframes
        self.overlap = overlap
        # The extractor whose features ``overlap`` compares, when the policy chose it.
        self.matcher: Optional[OrbMatcher] = None
        if min_shared_features and overlap is None:
            self.matcher = OrbMatcher()
            self.overlap = self.matcher.inliers
        self.reset()

    @classmethod
    def from_config(cls, config: Mapping[str, Any],
                    overlap: Optional[Callable[[Any, Any], int]] = None) -> 'KeyframePolicy':
        """Build from a validated keyframe configuration (see ``load_keyframe_config``).

        Args:
            config: The configuration.
            overlap: The correspondence counter of visual-overlap mode; default: the
                :meth:`~OrbMatcher.inliers` of :attr:`matcher`.

        In visual-overlap mode :attr:`matcher` is an :class:`OrbMatcher` with the configured
        ``orb_features``: push each frame with
        ``policy.matcher.extract(image).outside(scorer.dynamic_mask(labels))``.
        """
        keys = ('min_gap_frames', 'max_gap_frames', 'min_gap_s', 'max_gap_s', 'window_frames',
                'novelty_threshold', 'quality_floor', 'novelty_metric', 'min_shared_features',
                'initial_keyframes')
        matcher = OrbMatcher(n_features=config['orb_features'])
        policy = cls(**{k: config[k] for k in keys}, overlap=overlap or matcher.inliers)
        policy.matcher = matcher
        return policy

    @property
    def uses_overlap(self) -> bool:
        """Whether keyframes follow the visual overlap (frames are pushed with features)."""
        return self.min_shared_features > 0

    def reset(self) -> None:
        """Forget everything: the next push starts a new sequence at index 0."""
        self._buffer: List[_Frame] = []
        self._last_keyframe: Optional[_Frame] = None
        self._last_decision: Optional[KeyframeDecision] = None
        self._first: Optional[_Frame] = None
        self._newest: Optional[_Frame] = None

    @property
    def reference(self) -> Optional[np.ndarray]:
        """The last keyframe's class histograms, to score novelty against (or None)."""
        return None if self._last_keyframe is None else self._last_keyframe.score.histograms

    @property
    def last_keyframe(self) -> Optional[KeyframeDecision]:
        """The decision of the last keyframe of this sequence, or None."""
        return self._last_decision

    @property
    def pending(self) -> int:
        """Number of frames buffered as candidates."""
        return len(self._buffer)

    def push(self, stamp_ns: int, score: FrameScore, payload: Any = None,
             features: Any = None) -> List[KeyframeDecision]:
        """Add the next frame; return the keyframe decisions it settles (often none).

        Args:
            stamp_ns: The frame's stamp in nanoseconds; must exceed the previous one.
            score: Its score.
            payload: Anything to hand back in a decision (frame id, image...).
            features: In visual-overlap mode, what ``overlap`` compares (required).

        Returns:
            Decisions in frame order; each may name an earlier frame.

        Raises:
            ValueError: The stamp does not increase, or features are missing in visual-overlap
                mode (the frame is then not taken).
        """
        if self.uses_overlap and features is None:
            raise ValueError('push: min_shared_features > 0 (visual-overlap mode) needs the '
                             "frame's features")
        stamp_ns = int(stamp_ns)
        if self._newest is not None and stamp_ns <= self._newest.stamp_ns:
            how = 'repeats' if stamp_ns == self._newest.stamp_ns else 'goes back from'
            raise ValueError(f"stamp {stamp_ns} ns {how} the previous frame's "
                             f'{self._newest.stamp_ns} ns; stamps must increase')
        index = 0 if self._newest is None else self._newest.index + 1
        frame = _Frame(index, stamp_ns, self._rebased(score), payload, features)
        self._newest = frame
        # Only the start's index and stamp matter (max gap before the first keyframe).
        self._first = self._first or _Frame(index, stamp_ns, score, None)
        # Frames older than the window can no longer be decided on: drop them first.
        oldest = index - self.window_frames - (1 if self.uses_overlap else 0)
        self._buffer = [f for f in self._buffer if f.index >= oldest]
        self._buffer.append(frame)
        return self._decide(frame)

    def flush(self) -> List[KeyframeDecision]:
        """End the sequence: return the pending keyframe (if any) and reset.

        The pending keyframe is the best eligible candidate at or above the quality floor
        (``'window_best'``); with no keyframe yet, the best buffered frame (``'first'``).
        """
        decisions = []
        newest = self._newest
        if self._last_keyframe is None and self._buffer:
            decisions.append(self._emit(_best(self._buffer), 'first', newest))
        elif self._buffer and not self.uses_overlap:
            best = _best([f for f in self._buffer if self._eligible(f)
                          and f.score.quality >= self.quality_floor])
            if best is not None:
                decisions.append(self._emit(best, 'window_best', newest))
        self.reset()
        return decisions

    def run(self, stamps_ns: Sequence[int], scores: Sequence[FrameScore],
            payloads: Optional[Sequence[Any]] = None,
            features: Optional[Sequence[Any]] = None) -> List[KeyframeDecision]:
        """Push a whole sequence and flush; return all decisions (resets first)."""
        lengths = [len(x) for x in (stamps_ns, scores, payloads, features) if x is not None]
        if len(set(lengths)) != 1:
            raise ValueError(f'run: {len(stamps_ns)} stamps, {len(scores)} scores, '
                             f'{"no" if payloads is None else len(payloads)} payloads and '
                             f'{"no" if features is None else len(features)} features differ')
        self.reset()
        decisions = []
        for i, (stamp, score) in enumerate(zip(stamps_ns, scores)):
            decisions += self.push(stamp, score, None if payloads is None else payloads[i],
                                   None if features is None else features[i])
        return decisions + self.flush()

    # -- internals ---------------------------------------------------------------------------

    def _rebased(self, score: FrameScore) -> FrameScore:
        """Return the score with novelty against the last keyframe, where it can be measured."""
        if score.histograms is None or score.weights is None:
            return score
        return score.relative_to(self.reference, self.novelty_metric)

    def _eligible(self, frame: _Frame) -> bool:
        """Whether a frame is far enough from the last keyframe (frames and seconds)."""
        last = self._last_keyframe
        return (frame.index - last.index >= self.min_gap_frames
                and frame.stamp_ns - last.stamp_ns >= self.min_gap_ns)

    def _within_max(self, frame: _Frame, since: _Frame) -> bool:
        """Whether a frame is within the maximum gap after ``since``."""
        return (frame.index - since.index <= self.max_gap_frames
                and frame.stamp_ns - since.stamp_ns <= self.max_gap_ns)

    def _max_reached(self, frame: _Frame, since: _Frame) -> bool:
        """Whether the maximum gap (frames or seconds) after ``since`` is reached at frame."""
        return (frame.index - since.index >= self.max_gap_frames
                or frame.stamp_ns - since.stamp_ns >= self.max_gap_ns)

    def _shared(self, frame: _Frame) -> int:
        """Return the correspondences frame shares with the last keyframe (cached)."""
        last = self._last_keyframe
        if frame.shared is None or frame.shared[0] != last.index:
            frame.shared = (last.index, int(self.overlap(frame.features, last.features)))
        return frame.shared[1]

    def _overlap_choice(self, newest: _Frame, eligible: List[_Frame]) -> Optional[_Frame]:
        """Return the keyframe the overlap rule takes now, or None (see the module doc)."""
        if self._shared(newest) >= self.min_shared_features:
            return None
        kept = [f for f in eligible if f is not newest
                and self._shared(f) >= self.min_shared_features]
        pool = [f for f in kept if f.score.quality >= self.quality_floor] or kept
        if pool:
            return max(pool, key=lambda f: (f.score.total, f.index))
        return newest if any(f is newest for f in eligible) else None

    def _emit(self, frame: _Frame, reason: str, newest: _Frame) -> KeyframeDecision:
        """Make frame the last keyframe, drop older candidates, re-base the rest."""
        last = self._last_keyframe
        decision = KeyframeDecision(
            index=frame.index, stamp_ns=frame.stamp_ns, score=frame.score, reason=reason,
            payload=frame.payload, decided_at=newest.index,
            gap_frames=None if last is None else frame.index - last.index,
            gap_ns=None if last is None else frame.stamp_ns - last.stamp_ns)
        self._last_keyframe = frame
        self._last_decision = decision
        self._buffer = [f for f in self._buffer if f.index > frame.index]
        for candidate in self._buffer:
            candidate.score = self._rebased(candidate.score)
        return decision

    def _decide(self, newest: _Frame) -> List[KeyframeDecision]:
        """Apply the rules after newest was buffered; return the decisions made."""
        if self._last_keyframe is None:
            if newest.score.quality >= self.quality_floor:
                return [self._emit(newest, 'first', newest)]
            if self._max_reached(newest, self._first):
                return [self._emit(_best(self._buffer), 'first', newest)]
            return []
        if newest.index < self.initial_keyframes and self._eligible(newest):
            return [self._emit(newest, 'initial', newest)]
        decisions = []
        while self._buffer:
            last = self._last_keyframe
            eligible = [f for f in self._buffer if self._eligible(f)]
            good = [f for f in eligible if f.score.quality >= self.quality_floor]
            if self._max_reached(newest, last):
                within = [f for f in eligible if self._within_max(f, last)]
                pools = ([f for f in within if f.score.quality >= self.quality_floor],
                         within, eligible)
                pool = next((p for p in pools if p), None)
                if pool is None:
                    break  # nothing meets the minimum gap yet: wait (see module doc)
                decisions.append(self._emit(_best(pool), 'max_gap', newest))
                continue
            if self.uses_overlap:
                chosen = self._overlap_choice(newest, eligible)
                if chosen is None:
                    break
                decisions.append(self._emit(chosen, 'overlap', newest))
                continue
            newest_good = any(f is newest for f in good)
            if newest_good and newest.score.novelty >= self.novelty_threshold:
                decisions.append(self._emit(newest, 'novelty', newest))
                continue
            best = _best(good)
            if best is not None and newest.index - best.index >= self.window_frames:
                decisions.append(self._emit(best, 'window_best', newest))
                continue
            break
        return decisions


def uniform_selection(n_frames: int, k: int) -> List[int]:
    """Return ``k`` evenly spaced frame indices of ``n_frames``: ``floor(i * n / k)``.

    Starts at frame 0 (a SLAM map starts with its first frame); indices are distinct.

    Raises:
        ValueError: ``k`` not in ``1..n_frames``.
    """
    if not isinstance(k, int) or not isinstance(n_frames, int) or not 1 <= k <= n_frames:
        raise ValueError(f'uniform_selection: need 1 <= k <= n_frames, got k={k!r}, '
                         f'n_frames={n_frames!r}')
    return [i * n_frames // k for i in range(k)]


def max_interval_selection(scores: Sequence[FrameScore], max_frames: int,
                           min_frames: int = 0, novelty_threshold: Optional[float] = None,
                           novelty_metric: str = 'intersection') -> List[int]:
    """ORB-SLAM2-like baseline: a keyframe every ``max_frames`` frames, or earlier on novelty.

    Emulates the frame-count part of ORB-SLAM2's ``Tracking::NeedNewKeyFrame``: frame 0 is a
    keyframe; then frame ``t`` is one when ``t - last >= max_frames`` (its condition c1a), or
    when ``t - last >= min_frames`` and the novelty against the last keyframe reaches
    ``novelty_threshold`` (c1b with local mapping taken as idle, and c2 "tracked points fell
    below a ratio of the reference keyframe's" approximated by ``1 - novelty``, the class
    histogram overlap). Not emulated: tracked map points themselves, the local-mapping queue,
    the stereo / RGB-D close-point rule (c1c), relocalisation, and c2 gating c1a (ORB-SLAM2
    adds no keyframe at the max interval while tracking stays strong). Image quality and
    semantic content are ignored, which is what the comparison is about.

    Args:
        scores: Per-frame scores; novelty is re-based on each new keyframe where the scores
            carry histograms, else used as given.
        max_frames: Keyframe interval (ORB-SLAM2: the camera's frame rate), >= 1.
        min_frames: Fewest frames before a novelty keyframe (ORB-SLAM2 default 0).
        novelty_threshold: Novelty that adds a keyframe early; None = never.
        novelty_metric: ``intersection`` or ``hellinger``, for re-basing.

    Returns:
        Indices of the keyframes, ascending.
    """
    if not isinstance(max_frames, int) or max_frames < 1 or min_frames < 0:
        raise ValueError(f'max_interval_selection: need max_frames >= 1 and min_frames >= 0, '
                         f'got {max_frames!r}, {min_frames!r}')
    chosen: List[int] = []
    reference = None
    for index, score in enumerate(scores):
        if not chosen:
            chosen.append(index)
            reference = score.histograms
            continue
        gap = index - chosen[-1]
        if score.histograms is not None and reference is not None:
            novelty = histogram_novelty(score.histograms, reference, novelty_metric)
        else:
            novelty = score.novelty
        if gap >= max_frames or (novelty_threshold is not None and gap >= min_frames
                                 and novelty >= novelty_threshold):
            chosen.append(index)
            reference = score.histograms
    return chosen
