"""Serving segmentation on a live stream, without ROS: newest-frame slot, statistics, rendering.

The segmentation node is thin glue around these pieces, so they are tested on their own:

* :class:`LatestSlot` keeps only the newest frame for one worker thread; a frame replaced
  before the worker took it is counted as dropped, so a slow model never builds a queue.
* :class:`StreamStats` counts frames and keeps rolling windows of latency and stage times
  for diagnostics.
* :class:`LogThrottle` lets a repeated problem be reported once per period, with a count.
* :class:`StreamSize` refuses a frame whose size differs from the stream's (a damaged one).
* :func:`render_overlay` blends an image with a colour mask of any resolution.
"""

from collections import deque
from dataclasses import dataclass, field
import threading
import time
from typing import Any, Callable, Deque, Dict, Generic, List, Optional, Tuple, TypeVar

import cv2
import numpy as np

from semseg_ros.core.classes import overlay
from semseg_ros.core.latency import percentile

Item = TypeVar('Item')


class LatestSlot(Generic[Item]):
    """A one-item mailbox between a producer callback and one consumer thread.

    :meth:`put` never blocks: it replaces a waiting item (counting it as dropped) and wakes
    the consumer. :meth:`take` waits for an item, or returns None on timeout or after
    :meth:`close`.
    """

    def __init__(self):
        self._condition = threading.Condition()
        self._item: Optional[Item] = None
        self._closed = False
        self.dropped = 0

    def put(self, item: Item) -> bool:
        """Store ``item`` as the newest; return True if it replaced an unprocessed one."""
        with self._condition:
            replaced = self._item is not None
            if replaced:
                self.dropped += 1
            self._item = item
            self._condition.notify()
        return replaced

    def take(self, timeout: Optional[float] = None) -> Optional[Item]:
        """Remove and return the newest item; None after ``timeout`` s or once closed."""
        with self._condition:
            self._condition.wait_for(lambda: self._item is not None or self._closed, timeout)
            if self._closed:
                return None
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        """Wake the consumer for good: every later :meth:`take` returns None at once."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed


@dataclass
class StreamSnapshot:
    """Statistics of a stream since the previous snapshot and over the rolling window.

    Attributes:
        period_s: Seconds since the previous snapshot.
        input_rate_hz: Frames received per second over the period.
        processed_rate_hz: Frames segmented and published per second over the period.
        totals: Frame counts since start: ``received``, ``processed``, ``dropped``
            (replaced before processing), ``bad`` (unreadable input), ``failed``
            (inference or publishing raised), ``idle`` (nobody subscribed).
        new: The same counts over the period only.
        latency_median_ms: Receive-to-publish latency median over the window.
        latency_p95_ms: Receive-to-publish latency 95th percentile over the window.
        stage_median_ms: Median milliseconds of each stage over the window.
    """

    period_s: float
    input_rate_hz: float
    processed_rate_hz: float
    totals: Dict[str, int]
    new: Dict[str, int]
    latency_median_ms: float
    latency_p95_ms: float
    stage_median_ms: Dict[str, float] = field(default_factory=dict)


COUNTERS = ('received', 'processed', 'dropped', 'bad', 'failed', 'idle')


class StreamStats:
    """Thread-safe frame counters and rolling windows of latency and stage times."""

    def __init__(self, window: int = 100, clock: Callable[[], float] = time.monotonic):
        self._lock = threading.Lock()
        self._clock = clock
        self._counts = dict.fromkeys(COUNTERS, 0)
        self._last_counts = dict(self._counts)
        self._last_time = clock()
        self._latencies: Deque[float] = deque(maxlen=window)
        self._stages: Dict[str, Deque[float]] = {}
        self._window = window

    def count(self, counter: str, n: int = 1) -> None:
        """Add ``n`` to one of :data:`COUNTERS`."""
        with self._lock:
            self._counts[counter] += n

    def processed(self, latency_ms: float, stages_ms: Dict[str, float]) -> None:
        """Record one published frame: its latency and the milliseconds of each stage."""
        with self._lock:
            self._counts['processed'] += 1
            self._latencies.append(latency_ms)
            for stage, ms in stages_ms.items():
                self._stages.setdefault(stage, deque(maxlen=self._window)).append(ms)

    def snapshot(self) -> StreamSnapshot:
        """Return the statistics and start a new period."""
        with self._lock:
            now = self._clock()
            period = max(now - self._last_time, 1e-9)
            new = {k: self._counts[k] - self._last_counts[k] for k in COUNTERS}
            totals = dict(self._counts)
            latencies = list(self._latencies)
            stages = {k: float(np.median(v)) for k, v in self._stages.items() if v}
            self._last_counts, self._last_time = totals, now
        return StreamSnapshot(period, new['received'] / period, new['processed'] / period,
                              totals, new, percentile(latencies, 50), percentile(latencies, 95),
                              stages)


class LogThrottle:
    """Report each distinct message at most once per period, with how often it recurred."""

    def __init__(self, period_s: float = 5.0, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 64):
        self._period = period_s
        self._clock = clock
        self._max_keys = max_keys
        self._lock = threading.Lock()
        self._state: Dict[str, Tuple[float, int]] = {}

    def check(self, message: str, key: Optional[str] = None) -> Optional[str]:
        """Return the text to log for ``message`` now, or None while it is throttled.

        Args:
            message: The text to log.
            key: What counts as "the same message" (default: the text itself); e.g. a drop
                reason, when each message names its own stamp.
        """
        key = message if key is None else key
        with self._lock:
            now = self._clock()
            last, suppressed = self._state.get(key, (None, 0))
            if last is not None and now - last < self._period:
                self._state[key] = (last, suppressed + 1)
                return None
            if len(self._state) >= self._max_keys:
                self._state.clear()  # a stream of ever-new messages must not grow memory
            self._state[key] = (now, 0)
        if suppressed:
            return f'{message} ({suppressed} more like this in the last {now - last:.0f} s)'
        return message


class StreamSize:
    """The frame size of an image stream: a frame of another size is refused, for a while.

    A damaged compressed frame can declare, and decode to, any size (8x8 garbage); a camera
    changes its resolution rarely and then for good. So a frame whose size differs from the
    stream's is refused until :attr:`confirmations` frames in a row have the new size, which
    then becomes the stream's.
    """

    def __init__(self, confirmations: int = 3):
        self.confirmations = confirmations
        self.size: Optional[Tuple[int, int]] = None
        self._candidate: Optional[Tuple[int, int]] = None
        self._seen = 0

    def check(self, width: int, height: int) -> Optional[str]:
        """Return why a ``width`` x ``height`` frame is refused (None: it is accepted)."""
        size = (width, height)
        if self.size is None or size == self.size:
            self.size, self._candidate, self._seen = size, None, 0
            return None
        self._seen = self._seen + 1 if size == self._candidate else 1
        self._candidate = size
        if self._seen >= self.confirmations:
            self.size, self._candidate, self._seen = size, None, 0
            return None
        return (f"frame is {width}x{height} but the stream's frames are "
                f'{self.size[0]}x{self.size[1]} (a new size is taken after '
                f'{self.confirmations} frames in a row)')


def render_overlay(image: np.ndarray, colors: np.ndarray, alpha: float) -> np.ndarray:
    """Blend an RGB image with a colour mask, resizing the image to the mask's size first.

    A mask at network resolution is smaller than the camera image: the image is shrunk
    (area interpolation) so the overlay has the mask's size.
    """
    if image.shape[:2] != colors.shape[:2]:
        image = cv2.resize(image, (colors.shape[1], colors.shape[0]),
                           interpolation=cv2.INTER_AREA)
    return overlay(image, colors, alpha)


def describe_stats(snapshot: StreamSnapshot) -> List[Tuple[str, Any]]:
    """Return the snapshot as ordered (key, value) pairs for a diagnostics message."""
    pairs: List[Tuple[str, Any]] = [
        ('input_rate_hz', round(snapshot.input_rate_hz, 2)),
        ('processed_rate_hz', round(snapshot.processed_rate_hz, 2)),
    ]
    pairs += [(f'frames_{name}', snapshot.totals[name]) for name in COUNTERS]
    pairs += [('latency_median_ms', round(snapshot.latency_median_ms, 2)),
              ('latency_p95_ms', round(snapshot.latency_p95_ms, 2))]
    pairs += [(f'{stage}_ms', round(ms, 2)) for stage, ms in snapshot.stage_median_ms.items()]
    return pairs
