"""Serving pieces without ROS: newest-frame slot, stream statistics, log throttle, overlay."""

import threading
import time

import numpy as np
import pytest

from semseg_ros.core.classes import load_class_set, overlay
from semseg_ros.core.serving import (COUNTERS, describe_stats, LatestSlot, LogThrottle,
                                     render_overlay, StreamStats)


class FakeClock:
    """A clock the test advances by hand."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_slot_keeps_only_the_newest_and_counts_replacements():
    """Items put before a take replace each other; each replacement counts as dropped."""
    slot = LatestSlot()
    assert slot.put(1) is False
    assert slot.put(2) is True
    assert slot.put(3) is True
    assert slot.take(timeout=0) == 3
    assert slot.dropped == 2
    assert slot.take(timeout=0.01) is None  # empty: times out


def test_slot_wakes_a_waiting_consumer_and_close_releases_it():
    """A blocked take returns the item put by another thread; close ends every take."""
    slot = LatestSlot()
    taken = []
    consumer = threading.Thread(target=lambda: taken.append(slot.take(timeout=10)))
    consumer.start()
    time.sleep(0.05)
    slot.put('frame')
    consumer.join(5)
    assert taken == ['frame']
    consumer = threading.Thread(target=lambda: taken.append(slot.take(timeout=10)))
    consumer.start()
    slot.close()
    consumer.join(5)
    assert not consumer.is_alive() and taken[-1] is None and slot.closed
    slot.put('late')
    assert slot.take(timeout=0) is None


def test_slot_never_queues_under_a_fast_producer():
    """A producer far faster than the consumer: every item is either taken or dropped."""
    slot = LatestSlot()
    taken = []

    def consume():
        while True:
            item = slot.take(timeout=1)
            if item is None:
                return
            taken.append(item)
            time.sleep(0.002)  # a slow model

    consumer = threading.Thread(target=consume)
    consumer.start()
    for i in range(2000):
        slot.put(i)
    time.sleep(0.05)
    slot.close()
    consumer.join(5)
    assert taken == sorted(taken) and taken[-1] == 1999  # in order, the newest served
    assert len(taken) + slot.dropped == 2000
    assert slot.dropped > 0


def test_stats_rates_counts_and_windows():
    """Rates per period, totals and new counts, latency median/p95 and stage medians."""
    clock = FakeClock()
    stats = StreamStats(window=10, clock=clock)
    for _ in range(20):
        stats.count('received')
    stats.count('dropped', 5)
    stats.count('bad')
    for latency in range(1, 16):  # only the last 10 (6..15) stay in the window
        stats.processed(float(latency), {'inference': 2.0 * latency})
    clock.now += 2.0
    snap = stats.snapshot()
    assert snap.input_rate_hz == pytest.approx(10.0)
    assert snap.processed_rate_hz == pytest.approx(7.5)
    assert snap.totals['dropped'] == 5 and snap.totals['bad'] == 1
    assert snap.latency_median_ms == pytest.approx(10.5)
    assert snap.latency_p95_ms == pytest.approx(np.percentile(np.arange(6, 16), 95))
    assert snap.stage_median_ms['inference'] == pytest.approx(21.0)
    clock.now += 1.0
    stats.count('received')
    second = stats.snapshot()
    assert second.new['received'] == 1 and second.totals['received'] == 21
    assert second.input_rate_hz == pytest.approx(1.0) and second.processed_rate_hz == 0
    keys = [key for key, _ in describe_stats(second)]
    assert [f'frames_{name}' for name in COUNTERS] == [k for k in keys if k.startswith('frames_')]
    assert {'input_rate_hz', 'latency_median_ms', 'latency_p95_ms', 'inference_ms'} <= set(keys)


def test_stats_without_frames_report_nan_latency():
    """No processed frame yet: latency is NaN, not an error."""
    snap = StreamStats().snapshot()
    assert np.isnan(snap.latency_median_ms) and np.isnan(snap.latency_p95_ms)


def test_log_throttle_reports_each_message_once_per_period_with_a_count():
    """The same message is held back within the period, then logged with how often it came."""
    clock = FakeClock()
    throttle = LogThrottle(period_s=5.0, clock=clock)
    assert throttle.check('bad step') == 'bad step'
    assert throttle.check('bad step') is None
    assert throttle.check('unsupported encoding') == 'unsupported encoding'
    clock.now += 1.0
    assert throttle.check('bad step') is None
    clock.now += 5.0
    assert throttle.check('bad step') == 'bad step (2 more like this in the last 6 s)'
    # With a key, messages that differ in detail count as one.
    assert throttle.check('late stamp 1', key='late') == 'late stamp 1'
    assert throttle.check('late stamp 2', key='late') is None
    clock.now += 6.0
    assert throttle.check('late stamp 3', key='late') == \
        'late stamp 3 (1 more like this in the last 6 s)'


def test_log_throttle_memory_is_bounded():
    """Ever-new messages do not grow its memory without bound."""
    throttle = LogThrottle(max_keys=8)
    for i in range(100):
        assert throttle.check(f'message {i}') == f'message {i}'
    assert len(throttle._state) <= 8


def test_render_overlay_at_mask_size():
    """A network-size mask blends with the image shrunk to its size; same size is plain."""
    classes = load_class_set('camvid')
    image = np.random.default_rng(0).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    labels = np.arange(32 * 48).reshape(32, 48) % classes.num_classes
    colors = classes.lookup_table()[labels.astype(np.uint8)]
    blend = render_overlay(image, colors, 0.5)
    assert blend.shape == (32, 48, 3)
    full = classes.lookup_table()[np.zeros((64, 96), np.uint8)]
    np.testing.assert_array_equal(render_overlay(image, full, 0.3), overlay(image, full, 0.3))
    with pytest.raises(ValueError, match='alpha'):
        render_overlay(image, full, 1.5)
