"""Online keyframe policy on synthetic score sequences, baselines, and a real CamVid sequence."""

import re

import cv2
import numpy as np
import pytest

from semseg_ros.keyframes.config import load_keyframe_config
from semseg_ros.keyframes.policy import (KeyframePolicy, max_interval_selection, REASONS,
                                         uniform_selection)
from semseg_ros.keyframes.scoring import FrameScore, histogram_novelty, KeyframeScorer

SECOND = 1_000_000_000


def stamp(i, rate=30):
    """Stamp in ns of frame i at rate Hz."""
    return i * SECOND // rate


def frame(total=0.5, quality=1.0, novelty=0.0):
    """A synthetic score with just what the policy reads."""
    return FrameScore(total=total, quality=quality, novelty=novelty)


def push_all(policy, scores, stamps=None, flush=True):
    """Push a sequence (30 Hz unless stamps are given); return every decision."""
    stamps = [stamp(i) for i in range(len(scores))] if stamps is None else stamps
    decisions = []
    for i, (stamp_ns, score) in enumerate(zip(stamps, scores)):
        decisions += policy.push(stamp_ns, score, payload=f'frame{i}')
    return decisions + (policy.flush() if flush else [])


def check_gaps(policy, decisions, stamps, allow_holes=False):
    """Assert the documented guarantees on a run's decisions."""
    indices = [d.index for d in decisions]
    assert indices == sorted(set(indices)), 'keyframes out of order or repeated'
    assert all(d.reason in REASONS for d in decisions)
    assert decisions[0].reason == 'first' and decisions[0].gap_frames is None
    for prev, cur in zip(decisions, decisions[1:]):
        assert cur.gap_frames == cur.index - prev.index
        assert cur.gap_ns == cur.stamp_ns - prev.stamp_ns == stamps[cur.index] - stamps[
            prev.index]
        assert cur.gap_frames >= policy.min_gap_frames and cur.gap_ns >= policy.min_gap_ns
        assert cur.gap_frames <= policy.max_gap_frames
        if cur.gap_ns > policy.max_gap_ns:
            largest_interval = np.diff(stamps[prev.index:cur.index + 1]).max()
            assert allow_holes and cur.reason == 'max_gap', cur
            assert largest_interval > policy.max_gap_ns - policy.min_gap_ns
    for d in decisions:
        assert 0 <= d.decided_at - d.index <= policy.window_frames
        assert d.payload == f'frame{d.index}'


def test_first_frame_is_a_keyframe_at_once():
    """The first frame at or above the floor is a keyframe, decided on its own push."""
    policy = KeyframePolicy(quality_floor=0.3)
    [decision] = policy.push(0, frame(quality=0.9), 'a')
    assert (decision.index, decision.reason, decision.decided_at, decision.payload) == (
        0, 'first', 0, 'a')
    assert policy.last_keyframe == decision


def test_first_keyframe_waits_for_the_quality_floor():
    """Frames below the floor before the first keyframe are skipped."""
    policy = KeyframePolicy(quality_floor=0.3)
    assert policy.push(0, frame(quality=0.1)) == []
    assert policy.push(stamp(1), frame(quality=0.2)) == []
    [decision] = policy.push(stamp(2), frame(quality=0.5))
    assert (decision.index, decision.reason) == (2, 'first')


def test_first_keyframe_is_forced_by_the_max_gap():
    """Never above the floor: the best of the last window at the max gap from the start."""
    policy = KeyframePolicy(min_gap_frames=2, max_gap_frames=10, window_frames=3,
                            quality_floor=0.5)
    totals = [0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.95, 0.3, 0.6, 0.2, 0.4, 0.1]  # 6: too old
    decisions = push_all(policy, [frame(t, quality=0.1) for t in totals], flush=False)
    [first] = decisions[:1]
    assert (first.index, first.reason, first.decided_at) == (8, 'first', 10)


def test_best_in_window_is_chosen_and_a_better_frame_restarts_the_window():
    """The highest total wins once window frames have not beaten it."""
    policy = KeyframePolicy(min_gap_frames=2, max_gap_frames=50, window_frames=3,
                            min_gap_s=0.0, novelty_threshold=1.0)
    totals = [0.5, 0.5, 0.5, 0.6, 0.5, 0.5, 0.9, 0.5, 0.5, 0.5, 0.5]
    decisions = push_all(policy, [frame(t) for t in totals], flush=False)
    assert [(d.index, d.reason, d.decided_at) for d in decisions] == [
        (0, 'first', 0), (6, 'window_best', 9)]
    policy = KeyframePolicy(min_gap_frames=2, max_gap_frames=50, window_frames=3,
                            min_gap_s=0.0, novelty_threshold=1.0)
    totals = [0.5, 0.5, 0.5, 0.6, 0.5, 0.7, 0.5, 0.9, 0.5, 0.5, 0.5]
    decisions = push_all(policy, [frame(t) for t in totals], flush=False)
    assert [(d.index, d.decided_at) for d in decisions] == [(0, 0), (7, 10)]


def test_ties_go_to_the_earliest_frame():
    """Equal totals: the earliest eligible frame is the keyframe (deterministic)."""
    policy = KeyframePolicy(min_gap_frames=3, max_gap_frames=50, window_frames=4,
                            min_gap_s=0.0, novelty_threshold=1.0)
    decisions = push_all(policy, [frame(0.5)] * 8, flush=False)
    assert [(d.index, d.decided_at) for d in decisions] == [(0, 0), (3, 7)]


def test_frames_before_the_min_gap_are_never_chosen():
    """A great frame too close to the last keyframe loses to eligible ones."""
    policy = KeyframePolicy(min_gap_frames=5, max_gap_frames=50, window_frames=3,
                            min_gap_s=0.0, novelty_threshold=1.0)
    totals = [0.5, 0.99, 0.99, 0.5, 0.5, 0.6, 0.5, 0.5, 0.5, 0.5]
    decisions = push_all(policy, [frame(t) for t in totals], flush=False)
    assert [d.index for d in decisions] == [0, 5]


def test_min_gap_in_seconds_applies_too():
    """With 30 Hz stamps, a 0.5 s minimum keeps keyframes 15 frames apart."""
    policy = KeyframePolicy(min_gap_frames=1, max_gap_frames=100, min_gap_s=0.5,
                            max_gap_s=10.0, window_frames=0, novelty_threshold=1.0)
    decisions = push_all(policy, [frame(0.5)] * 40, flush=False)
    assert [d.index for d in decisions] == [0, 15, 30]


def test_novelty_triggers_an_immediate_keyframe_after_the_min_gap():
    """A novel frame is a keyframe on its own push; before the min gap it is ignored."""
    policy = KeyframePolicy(min_gap_frames=5, max_gap_frames=50, window_frames=10,
                            min_gap_s=0.0, novelty_threshold=0.6)
    novelties = [0, 0.9, 0.1, 0.1, 0.1, 0.1, 0.2, 0.7, 0.1]
    scores = [frame(0.5 if i != 5 else 0.8, novelty=n) for i, n in enumerate(novelties)]
    decisions = []
    for i, score in enumerate(scores):
        decisions += [(d.index, d.reason, i) for d in policy.push(stamp(i), score)]
    assert decisions == [(0, 'first', 0), (7, 'novelty', 7)]


def test_novel_frame_below_the_floor_does_not_trigger():
    """Novelty never overrides the quality floor."""
    policy = KeyframePolicy(min_gap_frames=2, max_gap_frames=50, window_frames=2,
                            min_gap_s=0.0, novelty_threshold=0.5, quality_floor=0.4)
    scores = [frame(), frame(), frame(), frame(0.9, quality=0.2, novelty=0.9), frame(0.5)]
    decisions = push_all(policy, scores, flush=False)
    assert [(d.index, d.reason) for d in decisions] == [(0, 'first'), (2, 'window_best')]


def test_quality_floor_excludes_high_scoring_poor_frames():
    """A frame with the highest total but quality under the floor is never picked."""
    policy = KeyframePolicy(min_gap_frames=2, max_gap_frames=50, window_frames=3,
                            min_gap_s=0.0, novelty_threshold=1.0, quality_floor=0.5)
    scores = [frame(), frame(0.2), frame(0.3), frame(0.95, quality=0.3), frame(0.4),
              frame(0.2), frame(0.2), frame(0.2), frame(0.2)]
    decisions = push_all(policy, scores, flush=False)
    assert [d.index for d in decisions] == [0, 4]


def test_max_gap_forces_the_best_frame_even_below_the_floor():
    """With every frame under the floor, keyframes come exactly at the maximum gap."""
    policy = KeyframePolicy(min_gap_frames=3, max_gap_frames=8, window_frames=2,
                            min_gap_s=0.0, novelty_threshold=1.0, quality_floor=0.5)
    totals = [0.5] + [0.3, 0.2, 0.1, 0.4, 0.2, 0.1, 0.6, 0.3, 0.2] * 3
    scores = [frame(totals[0])] + [frame(t, quality=0.1) for t in totals[1:]]
    decisions = push_all(policy, scores, flush=False)
    assert [(d.index, d.reason, d.decided_at) for d in decisions] == [
        (0, 'first', 0), (7, 'max_gap', 8), (13, 'max_gap', 15), (19, 'max_gap', 21),
        (25, 'max_gap', 27)]
    check_gaps(policy, decisions, [stamp(i) for i in range(len(scores))])


def test_max_gap_prefers_frames_above_the_floor():
    """At the maximum gap, a frame at or above the floor beats a better-scoring poor one."""
    policy = KeyframePolicy(min_gap_frames=2, max_gap_frames=6, window_frames=10,
                            min_gap_s=0.0, novelty_threshold=1.0, quality_floor=0.5)
    scores = [frame(), frame(0.1, 0.1), frame(0.1, 0.1), frame(0.3, 0.9), frame(0.9, 0.1),
              frame(0.1, 0.1), frame(0.1, 0.1)]
    assert policy.push(0, scores[0])
    decisions = []
    for i in range(1, 7):
        decisions += policy.push(stamp(i), scores[i])
    assert [(d.index, d.reason, d.decided_at) for d in decisions] == [(3, 'max_gap', 6)]


def test_max_gap_in_seconds():
    """At 10 Hz with a 1 s maximum, keyframes are at most 1 s apart."""
    policy = KeyframePolicy(min_gap_frames=2, max_gap_frames=1000, min_gap_s=0.0,
                            max_gap_s=1.0, window_frames=20, novelty_threshold=1.0)
    stamps = [i * SECOND // 10 for i in range(40)]
    scores = [frame(0.5 + 0.01 * (i % 7)) for i in range(40)]
    decisions = push_all(policy, scores, stamps)
    assert len(decisions) >= 4
    check_gaps(policy, decisions, stamps)
    assert any(d.reason == 'max_gap' for d in decisions)


@pytest.mark.parametrize('seed', range(6))
def test_gaps_and_delays_hold_on_random_sequences(seed):
    """Random scores, jittered 30 Hz stamps and random settings: the guarantees hold."""
    rng = np.random.default_rng(seed)
    min_f = int(rng.integers(1, 8))
    # Consistent units: max_gap_frames frames always span more than min_gap_s.
    policy = KeyframePolicy(
        min_gap_frames=min_f, max_gap_frames=int(min_f + rng.integers(8, 40)),
        min_gap_s=float(rng.uniform(0, 0.15)), max_gap_s=float(rng.uniform(0.5, 3.0)),
        window_frames=int(rng.integers(0, 15)), novelty_threshold=float(rng.uniform(0.3, 1)),
        quality_floor=float(rng.uniform(0, 0.8)))
    n = 400
    stamps = np.cumsum(rng.integers(int(0.7 * stamp(1)), int(1.3 * stamp(1)), n)).tolist()
    scores = [frame(*rng.uniform(0, 1, 3)) for _ in range(n)]
    decisions = push_all(policy, scores, stamps)
    check_gaps(policy, decisions, stamps)
    again = push_all(policy, scores, stamps)
    assert [(d.index, d.reason, d.decided_at) for d in decisions] == [
        (d.index, d.reason, d.decided_at) for d in again]


def test_hole_in_the_stamps_keeps_the_min_gap():
    """After a 10 s hole the max gap in seconds cannot hold; the min gap still does."""
    policy = KeyframePolicy(min_gap_frames=5, max_gap_frames=30, min_gap_s=0.1,
                            max_gap_s=2.0, window_frames=5, novelty_threshold=1.0)
    stamps = [stamp(i) for i in range(20)] + [10 * SECOND + stamp(i) for i in range(40)]
    scores = [frame(0.5 + 0.02 * (i % 5)) for i in range(60)]
    decisions = push_all(policy, scores, stamps)
    check_gaps(policy, decisions, stamps, allow_holes=True)
    across = [d for d in decisions if d.index >= 20][0]
    assert across.reason == 'max_gap' and across.gap_ns > policy.max_gap_ns


def test_conflicting_units_never_break_the_min_gap():
    """60 frames pass in under the 1 s minimum: the minimum in seconds still wins."""
    policy = KeyframePolicy(min_gap_frames=2, max_gap_frames=10, min_gap_s=1.0,
                            max_gap_s=5.0, window_frames=3, novelty_threshold=1.0)
    stamps = [i * SECOND // 100 for i in range(260)]  # 100 Hz
    decisions = push_all(policy, [frame(0.5)] * 260, stamps)
    gaps = [d.gap_ns for d in decisions[1:]]
    assert gaps and min(gaps) >= SECOND
    assert all(d.reason == 'max_gap' for d in decisions[1:])


def test_stamps_must_increase():
    """Backwards or repeated stamps raise ValueError and leave the policy as it was."""
    policy = KeyframePolicy()
    policy.push(stamp(10), frame())
    with pytest.raises(ValueError, match='goes back'):
        policy.push(stamp(9), frame())
    with pytest.raises(ValueError, match='repeats'):
        policy.push(stamp(10), frame())
    policy.push(stamp(11), frame())
    assert policy.pending == 1  # the rejected frames were not taken


def test_flush_emits_the_pending_best_and_resets():
    """flush confirms the pending best; afterwards a new sequence starts at index 0."""
    policy = KeyframePolicy(min_gap_frames=2, max_gap_frames=50, window_frames=10,
                            min_gap_s=0.0, novelty_threshold=1.0)
    decisions = push_all(policy, [frame(t) for t in (0.5, 0.4, 0.6, 0.9, 0.7)], flush=False)
    assert [d.index for d in decisions] == [0]
    [last] = policy.flush()
    assert (last.index, last.reason, last.decided_at) == (3, 'window_best', 4)
    assert policy.pending == 0 and policy.last_keyframe is None and policy.reference is None
    [restart] = policy.push(0, frame())
    assert (restart.index, restart.reason) == (0, 'first')
    assert policy.flush() == []


def test_flush_without_any_keyframe_still_gives_one():
    """A short sequence entirely below the floor yields its best frame as the first."""
    policy = KeyframePolicy(quality_floor=0.9)
    decisions = push_all(policy, [frame(t, quality=0.1) for t in (0.2, 0.7, 0.3)])
    assert [(d.index, d.reason) for d in decisions] == [(1, 'first')]
    assert KeyframePolicy().flush() == []


def test_run_matches_push_and_checks_lengths():
    """run() is push over the sequence plus flush."""
    scores = [frame(0.3 + 0.1 * (i % 4)) for i in range(50)]
    stamps = [stamp(i) for i in range(50)]
    payloads = [f'frame{i}' for i in range(50)]
    policy = KeyframePolicy(max_gap_frames=20)
    by_run = policy.run(stamps, scores, payloads)
    assert by_run == push_all(KeyframePolicy(max_gap_frames=20), scores, stamps)
    with pytest.raises(ValueError, match='differ'):
        policy.run(stamps[:-1], scores)


@pytest.mark.parametrize('kwargs, name', [
    ({'min_gap_frames': 0}, 'min_gap_frames'),
    ({'min_gap_frames': 10, 'max_gap_frames': 5}, 'maximum gap'),
    ({'min_gap_s': 2.0, 'max_gap_s': 1.0}, 'maximum gap'),
    ({'max_gap_s': 0.0}, 'max_gap_s'),
    ({'window_frames': -1}, 'window_frames'),
    ({'window_frames': 2.5}, 'window_frames'),
    ({'novelty_threshold': 0.0}, 'novelty_threshold'),
    ({'quality_floor': 1.5}, 'quality_floor'),
    ({'quality_floor': 'high'}, 'quality_floor'),
    ({'novelty_metric': 'cosine'}, 'novelty_metric'),
])
def test_invalid_policy_settings_are_named(kwargs, name):
    """Out-of-range settings raise ValueError naming the setting."""
    with pytest.raises(ValueError, match=name):
        KeyframePolicy(**kwargs)


def test_policy_rebases_novelty_on_its_own_keyframes():
    """Scores with histograms get novelty against the policy's last keyframe, kept current."""
    scorer = KeyframeScorer(load_keyframe_config())
    sky, building, road, pole = 0, 1, 3, 2
    views = {}
    for name, top, bottom in (('a', sky, building), ('b', sky, road), ('c', pole, road)):
        labels = np.full((60, 80), bottom, np.uint8)
        labels[:30] = top
        views[name] = labels
    hist = {k: scorer.score(v).histograms for k, v in views.items()}
    assert histogram_novelty(hist['b'], hist['a']) == pytest.approx(0.5)

    def run(sequence, **settings):
        policy = KeyframePolicy(min_gap_frames=2, max_gap_frames=50, min_gap_s=0.0,
                                **settings)
        decisions = []
        for i, name in enumerate(sequence):
            # Scored against nothing (novelty 1.0): the policy must measure novelty itself.
            decisions += policy.push(stamp(i), scorer.score(views[name]), name)
            if decisions:
                assert np.array_equal(policy.reference, hist[decisions[-1].payload])
        return decisions + policy.flush()

    # A view disjoint from the keyframe's triggers; the same view does not.
    decisions = run('aaaacccc', window_frames=20, novelty_threshold=0.9)
    assert [(d.index, d.reason) for d in decisions] == [
        (0, 'first'), (4, 'novelty'), (6, 'window_best')]
    assert [d.score.novelty for d in decisions] == [1.0, 1.0, 0.0]
    # Frame 4 was pushed (novelty 0.5 against a) before frame 2 (b) became the keyframe: it is
    # re-based to novelty 0 against b, and its total drops accordingly.
    decisions = run('abbbbbb', window_frames=2, novelty_threshold=1.0)
    assert [(d.index, d.reason) for d in decisions] == [
        (0, 'first'), (2, 'window_best'), (4, 'window_best'), (6, 'window_best')]
    assert [d.score.novelty for d in decisions] == pytest.approx([1.0, 0.5, 0.0, 0.0])
    assert decisions[1].score.total - decisions[2].score.total == pytest.approx(
        scorer.weights.novelty * 0.5 / sum(vars(scorer.weights).values()))


def test_uniform_selection():
    """k evenly spaced distinct frames starting at 0."""
    assert uniform_selection(10, 3) == [0, 3, 6]
    assert uniform_selection(5, 5) == [0, 1, 2, 3, 4]
    assert uniform_selection(100, 1) == [0]
    for k in (0, 11):
        with pytest.raises(ValueError, match='k'):
            uniform_selection(10, k)


def test_max_interval_selection():
    """A keyframe every max_frames frames, earlier when novelty reaches the threshold."""
    flat = [frame(novelty=0.0)] * 25
    assert max_interval_selection(flat, max_frames=10) == [0, 10, 20]
    spiky = [frame(novelty=0.8 if i == 4 else 0.0) for i in range(25)]
    assert max_interval_selection(spiky, 10, min_frames=2, novelty_threshold=0.5) == [
        0, 4, 14, 24]
    assert max_interval_selection(spiky, 10, min_frames=5, novelty_threshold=0.5) == [
        0, 10, 20]
    with pytest.raises(ValueError, match='max_frames'):
        max_interval_selection(flat, 0)


def _camvid_sequence(root, count=30):
    """The first ``count`` val frames of the first sequence, sorted by frame number."""
    pairs = [line.split() for line in (root / 'val.txt').read_text().splitlines() if line]
    by_sequence = {}
    for image, label in pairs:
        sequence, number = re.match(r'(.+)_f?(\d+)\.(?:png|jpg)$',
                                    image.split('/')[-1]).groups()
        by_sequence.setdefault(sequence, []).append((int(number), image, label))
    frames = sorted(by_sequence[sorted(by_sequence)[0]])[:count]
    assert len(frames) == count, f'fewer than {count} val frames in one CamVid sequence'
    return frames


def test_camvid_sequence_end_to_end(samples):
    """Scorer and policy on 30 real CamVid frames: sane terms, gaps within bounds."""
    config = dict(load_keyframe_config(), min_gap_frames=3, max_gap_frames=8,
                  min_gap_s=0.1, max_gap_s=1.0, window_frames=3, min_shared_features=0)
    scorer = KeyframeScorer(config)
    policy = KeyframePolicy.from_config(config)
    frames = _camvid_sequence(samples)
    stamps = [number * SECOND // 30 for number, _, _ in frames]  # CamVid runs at 30 Hz
    decisions, scores = [], []
    for i, (stamp_ns, (number, image_path, label_path)) in enumerate(zip(stamps, frames)):
        labels = cv2.imread(str(samples / label_path), cv2.IMREAD_UNCHANGED)
        image = cv2.cvtColor(cv2.imread(str(samples / image_path)), cv2.COLOR_BGR2RGB)
        score = scorer.score(labels, image=image, reference=policy.reference)
        scores.append(score)
        decisions += policy.push(stamp_ns, score, payload=f'frame{i}')
    decisions += policy.flush()
    for score in scores:
        for term, value in score.as_dict().items():
            if term != 'laplacian_var':
                assert 0.0 <= value <= 1.0, (term, value)
        assert score.laplacian_var > 0 and score.sharpness > 0.3  # CamVid frames are sharp
    assert 0.1 < np.mean([s.semantic for s in scores]) < 0.9
    assert len(decisions) >= 3
    check_gaps(policy, decisions, stamps)
    assert max_interval_selection(scores, 8) == list(range(0, 30, 8))


def test_initial_keyframes_take_the_first_frames_then_the_overlap_rule_goes_on():
    """initial_keyframes N: frames 0..N-1 are keyframes at once ('first', then 'initial'), the
    minimum gap still holds, and the overlap rule decides the rest as without them."""
    shared = {}

    def overlap(a, b):  # frames share 100 - 10 per frame of distance
        return shared.setdefault((a, b), 100 - 10 * abs(a - b))

    stamps = [i * 66_666_667 for i in range(30)]
    scores = [frame() for _ in stamps]
    plain = KeyframePolicy(min_gap_frames=1, max_gap_frames=900, min_gap_s=0.0, max_gap_s=30.0,
                           window_frames=0, min_shared_features=55, overlap=overlap)
    burst = KeyframePolicy(min_gap_frames=1, max_gap_frames=900, min_gap_s=0.0, max_gap_s=30.0,
                           window_frames=0, min_shared_features=55, overlap=overlap,
                           initial_keyframes=5)
    base = [d.index for d in plain.run(stamps, scores, features=list(range(30)))]
    decisions = burst.run(stamps, scores, features=list(range(30)))
    assert [d.reason for d in decisions[:5]] == ['first'] + ['initial'] * 4
    assert [d.index for d in decisions[:5]] == [0, 1, 2, 3, 4]
    assert base[:2] == [0, 4]  # frames 4 apart share 60, 5 apart 50
    assert [d.index for d in decisions[5:]] == [i + 4 for i in base[1:] if i + 4 < 30]
    gapped = KeyframePolicy(min_gap_frames=2, max_gap_frames=900, min_gap_s=0.0,
                            max_gap_s=30.0, window_frames=0, min_shared_features=55,
                            overlap=overlap, initial_keyframes=5)
    assert [d.index for d in gapped.run(stamps, scores, features=list(range(30)))][:3] == \
        [0, 2, 4]
    with pytest.raises(ValueError, match='initial_keyframes must be an integer >= 0'):
        KeyframePolicy(initial_keyframes=-1)
