"""Match messages of several streams by identical stamps, in a small bounded cache (no rclpy).

The package's own replacement for message_filters' exact-time synchroniser, which is not
installable from PyPI. A node adds each message of each stream with its header stamp; once
every stream has delivered a stamp, :meth:`StampMatcher.add` returns the set. Matched sets come
out in strictly increasing stamp order, which the keyframe policy needs:

* A stream's stamps must increase. A message whose stamp repeats or goes back from that
  stream's previous one is rejected (``'stamp_repeated'``, ``'stamp_backwards'``).
* Completing a set at stamp ``s`` discards every pending message older than ``s``: they can
  no longer be used in order (typically frames the segmentation node skipped).
* A message older than ``max_age_ns`` before the newest stamp seen on any stream is rejected as
  ``'late'``; pending messages that age past that horizon are discarded, and so is the oldest
  pending message of a stream holding more than ``max_pending``.

Discarded (never matched) messages are counted per stream in ``unmatched``; rejected ones per
reason in ``rejected``. With a single stream every accepted message matches at once::

    matcher = StampMatcher(('label_mask', 'image'), max_pending=30, max_age_ns=2 * 10**9)
    result = matcher.add('image', stamp_ns, image_msg)        # result.matched is None
    result = matcher.add('label_mask', stamp_ns, label_msg)   # result.matched: both messages
"""

from collections import OrderedDict
from dataclasses import dataclass, field
import threading
from typing import Any, Dict, List, Optional, Sequence, Tuple

REJECT_REASONS = ('stamp_backwards', 'stamp_repeated', 'late')


@dataclass
class SyncResult:
    """What one :meth:`StampMatcher.add` did.

    Attributes:
        matched: ``stream -> item`` for every stream when this message completed a set at its
            stamp, else None.
        rejected: Why the message was not taken (one of :data:`REJECT_REASONS`), or None.
        expired: ``(stream, stamp_ns)`` of the pending messages this call discarded unmatched.
        previous_ns: For a rejected message, the stamp it was compared with (the stream's
            previous stamp, or the age horizon for ``'late'``); else None.
    """

    matched: Optional[Dict[str, Any]] = None
    rejected: Optional[str] = None
    expired: List[Tuple[str, int]] = field(default_factory=list)
    previous_ns: Optional[int] = None


class StampMatcher:
    """Exact-stamp matching of several message streams with a bounded cache (thread-safe)."""

    def __init__(self, streams: Sequence[str], max_pending: int = 30,
                 max_age_ns: int = 2_000_000_000):
        """Set up the streams and the bounds.

        Args:
            streams: Distinct stream names (e.g. topic names); at least one.
            max_pending: Most messages kept waiting per stream (>= 1).
            max_age_ns: A pending message is discarded once the newest stamp on any stream
                is more than this ahead of it (>= 0 nanoseconds).

        Raises:
            ValueError: No streams, repeated names, or a bound out of range.
        """
        streams = tuple(streams)
        if not streams or len(set(streams)) != len(streams):
            raise ValueError(f'StampMatcher needs distinct stream names, got {streams!r}')
        if isinstance(max_pending, bool) or not isinstance(max_pending, int) \
                or max_pending < 1:
            raise ValueError(f'max_pending must be an integer >= 1, got {max_pending!r}')
        if isinstance(max_age_ns, bool) or not isinstance(max_age_ns, int) or max_age_ns < 0:
            raise ValueError(f'max_age_ns must be an integer >= 0, got {max_age_ns!r}')
        self.streams = streams
        self.max_pending = max_pending
        self.max_age_ns = max_age_ns
        self._lock = threading.Lock()
        self.matched = 0
        self.unmatched = dict.fromkeys(streams, 0)
        self.rejected = dict.fromkeys(REJECT_REASONS, 0)
        self.reset()

    def reset(self) -> None:
        """Forget every pending message and stamp (counters are kept): a new sequence."""
        with self._lock:
            self._pending: Dict[str, 'OrderedDict[int, Any]'] = {
                s: OrderedDict() for s in self.streams}
            self._last: Dict[str, Optional[int]] = dict.fromkeys(self.streams)
            self._newest: Optional[int] = None

    def last_stamp(self, stream: str) -> Optional[int]:
        """Return the stamp of the last message a stream delivered (accepted), or None."""
        return self._last[stream]

    @property
    def pending(self) -> int:
        """Number of messages waiting for their partners, over all streams."""
        with self._lock:
            return sum(len(p) for p in self._pending.values())

    def add(self, stream: str, stamp_ns: int, item: Any) -> SyncResult:
        """Add one message; return the completed set, if any, and what was discarded.

        Args:
            stream: One of the names given to the constructor.
            stamp_ns: The message's header stamp in nanoseconds.
            item: What to hand back in the matched set (the message, a decoded array...).

        Raises:
            KeyError: An unknown stream name.
        """
        if stream not in self._pending:
            raise KeyError(f'unknown stream {stream!r}; streams: {", ".join(self.streams)}')
        stamp_ns = int(stamp_ns)
        result = SyncResult()
        with self._lock:
            last = self._last[stream]
            if last is not None and stamp_ns <= last:
                result.rejected = 'stamp_repeated' if stamp_ns == last else 'stamp_backwards'
                result.previous_ns = last
            elif self._newest is not None and stamp_ns < self._newest - self.max_age_ns:
                result.rejected, result.previous_ns = 'late', self._newest - self.max_age_ns
            if result.rejected is not None:
                self.rejected[result.rejected] += 1
                return result
            self._last[stream] = stamp_ns
            self._newest = stamp_ns if self._newest is None else max(self._newest, stamp_ns)
            self._pending[stream][stamp_ns] = item
            if all(stamp_ns in p for p in self._pending.values()):
                result.matched = {s: p.pop(stamp_ns) for s, p in self._pending.items()}
                self.matched += 1
                self._expire_before(stamp_ns, result.expired)
            else:
                self._expire_before(self._newest - self.max_age_ns, result.expired)
                queue = self._pending[stream]
                while len(queue) > self.max_pending:
                    self._discard(stream, next(iter(queue)), result.expired)
        return result

    def _expire_before(self, horizon_ns: int, expired: List[Tuple[str, int]]) -> None:
        """Discard the pending messages stamped before the horizon (stamps are in order)."""
        for stream, queue in self._pending.items():
            while queue and next(iter(queue)) < horizon_ns:
                self._discard(stream, next(iter(queue)), expired)

    def _discard(self, stream: str, stamp_ns: int, expired: List[Tuple[str, int]]) -> None:
        """Drop one pending message, counting it as unmatched."""
        del self._pending[stream][stamp_ns]
        self.unmatched[stream] += 1
        expired.append((stream, stamp_ns))

    def counts(self) -> Dict[str, int]:
        """Return the counters as one flat mapping (for diagnostics).

        Keys: ``matched``, ``pending``, ``unmatched_<stream>`` and ``rejected_<reason>``.
        """
        with self._lock:
            counts = {'matched': self.matched,
                      'pending': sum(len(p) for p in self._pending.values())}
            counts.update({f'unmatched_{s}': n for s, n in self.unmatched.items()})
            counts.update({f'rejected_{r}': n for r, n in self.rejected.items()})
        return counts
