"""StampMatcher: exact-stamp matching of message streams with a bounded cache."""

import threading

import pytest

from semseg_ros.messages.stamp_sync import StampMatcher

MS = 1_000_000


def test_single_stream_matches_each_message_at_once():
    """With one stream every accepted message is its own set."""
    matcher = StampMatcher(['label_mask'])
    result = matcher.add('label_mask', 10 * MS, 'a')
    assert result.matched == {'label_mask': 'a'} and result.rejected is None
    assert matcher.add('label_mask', 20 * MS, 'b').matched == {'label_mask': 'b'}
    assert matcher.counts()['matched'] == 2 and matcher.pending == 0


def test_two_streams_match_identical_stamps_in_any_arrival_order():
    """A set completes when the second stream delivers the same stamp, whichever comes first."""
    matcher = StampMatcher(['label_mask', 'image'])
    assert matcher.add('image', 10 * MS, 'i10').matched is None
    assert matcher.add('image', 20 * MS, 'i20').matched is None
    first = matcher.add('label_mask', 10 * MS, 'l10')
    assert first.matched == {'label_mask': 'l10', 'image': 'i10'}
    second = matcher.add('label_mask', 20 * MS, 'l20')
    assert second.matched == {'label_mask': 'l20', 'image': 'i20'}
    assert matcher.add('label_mask', 30 * MS, 'l30').matched is None
    assert matcher.add('image', 30 * MS, 'i30').matched == {'label_mask': 'l30',
                                                            'image': 'i30'}
    assert matcher.pending == 0 and matcher.matched == 3
    assert matcher.unmatched == {'label_mask': 0, 'image': 0}


def test_a_match_discards_older_pending_messages_as_unmatched():
    """Frames the segmentation skipped expire when a later stamp matches; order is kept."""
    matcher = StampMatcher(['label_mask', 'image'])
    for stamp in (10, 20, 30):
        matcher.add('image', stamp * MS, f'i{stamp}')
    result = matcher.add('label_mask', 30 * MS, 'l30')
    assert result.matched == {'label_mask': 'l30', 'image': 'i30'}
    assert result.expired == [('image', 10 * MS), ('image', 20 * MS)]
    assert matcher.unmatched['image'] == 2 and matcher.pending == 0


def test_backwards_and_repeated_stamps_are_rejected_per_stream():
    """A stream's stamp must increase; the rejected message changes nothing."""
    matcher = StampMatcher(['label_mask', 'image'])
    matcher.add('label_mask', 20 * MS, 'l20')
    back = matcher.add('label_mask', 10 * MS, 'l10')
    assert back.rejected == 'stamp_backwards' and back.previous_ns == 20 * MS
    same = matcher.add('label_mask', 20 * MS, 'again')
    assert same.rejected == 'stamp_repeated'
    assert matcher.pending == 1 and matcher.last_stamp('label_mask') == 20 * MS
    # The other stream is independent: its first message may be older.
    assert matcher.add('image', 20 * MS, 'i20').matched == {'label_mask': 'l20',
                                                            'image': 'i20'}
    assert matcher.counts()['rejected_stamp_backwards'] == 1
    assert matcher.counts()['rejected_stamp_repeated'] == 1


def test_pending_messages_expire_by_age_and_late_ones_are_rejected():
    """Waiting partners expire max_age after the newest stamp; older arrivals are late."""
    matcher = StampMatcher(['label_mask', 'image'], max_age_ns=100 * MS)
    matcher.add('label_mask', 0, 'l0')
    matcher.add('label_mask', 50 * MS, 'l50')
    result = matcher.add('image', 120 * MS, 'i120')
    assert result.expired == [('label_mask', 0)]
    assert matcher.unmatched['label_mask'] == 1 and matcher.pending == 2
    late = matcher.add('image', 10 * MS, 'i10')
    assert late.rejected == 'stamp_backwards'  # the image stream already passed 120 ms
    fresh = StampMatcher(['label_mask', 'image'], max_age_ns=100 * MS)
    fresh.add('label_mask', 500 * MS, 'l500')
    late = fresh.add('image', 300 * MS, 'i300')
    assert late.rejected == 'late' and late.previous_ns == 400 * MS
    assert fresh.rejected['late'] == 1 and fresh.pending == 1


def test_count_bound_discards_the_oldest_pending():
    """A stream never holds more than max_pending unmatched messages."""
    matcher = StampMatcher(['label_mask', 'image'], max_pending=3, max_age_ns=10 ** 12)
    for stamp in range(1, 6):
        matcher.add('image', stamp * MS, stamp)
    assert matcher.pending == 3 and matcher.unmatched['image'] == 2
    assert matcher.add('label_mask', 3 * MS, 'l3').matched == {'label_mask': 'l3', 'image': 3}
    assert matcher.add('label_mask', 1 * MS, 'l1').rejected == 'stamp_backwards'


def test_reset_starts_a_new_sequence_and_keeps_counters():
    """After reset earlier stamps are accepted again."""
    matcher = StampMatcher(['label_mask', 'image'])
    matcher.add('image', 50 * MS, 'i50')
    matcher.add('label_mask', 50 * MS, 'l50')
    matcher.add('image', 60 * MS, 'i60')
    matcher.reset()
    assert matcher.pending == 0 and matcher.last_stamp('image') is None
    assert matcher.add('image', 1 * MS, 'i1').rejected is None
    assert matcher.matched == 1


def test_bad_arguments_are_refused_clearly():
    """Construction and add name what is wrong."""
    with pytest.raises(ValueError, match='distinct stream names'):
        StampMatcher(['a', 'a'])
    with pytest.raises(ValueError, match='max_pending'):
        StampMatcher(['a'], max_pending=0)
    with pytest.raises(ValueError, match='max_age_ns'):
        StampMatcher(['a'], max_age_ns=-1)
    with pytest.raises(KeyError, match="unknown stream 'b'"):
        StampMatcher(['a']).add('b', 0, None)


def test_concurrent_adds_lose_nothing():
    """Two threads feeding two streams: every stamp matches exactly once."""
    matcher = StampMatcher(['label_mask', 'image'], max_pending=2000, max_age_ns=10 ** 15)
    matches = []

    def feed(stream):
        for stamp in range(1000):
            result = matcher.add(stream, stamp, stamp)
            if result.matched:
                matches.append(result.matched[stream])

    threads = [threading.Thread(target=feed, args=(s,)) for s in matcher.streams]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Whichever stream runs ahead waits in the cache: every stamp matches exactly once.
    assert sorted(matches) == list(range(1000)) and matcher.matched == 1000
    assert matcher.unmatched == {'label_mask': 0, 'image': 0} and matcher.pending == 0
