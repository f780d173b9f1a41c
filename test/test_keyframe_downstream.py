"""Downstream keyframe measures on the shipped samples, the overlap policy, and their report."""

import json
from pathlib import Path
import random

import cv2
import pytest

from semseg_ros.cli import main as semseg_main
from semseg_ros.keyframes.downstream import downstream_measures, DownstreamOptions, PairCache
from semseg_ros.keyframes.matching import OrbMatcher
from semseg_ros.keyframes.offline import METHODS
from semseg_ros.keyframes.policy import KeyframePolicy
from semseg_ros.keyframes.scoring import FrameScore

SAMPLES = Path(__file__).resolve().parents[1] / 'semseg_ros' / 'data' / 'samples'
SEQUENCE = SAMPLES / 'camvid_0016E5'
OTHER = SAMPLES / 'camvid_train_calib'  # frames of 0001TP, 0006R0 and far-away 0016E5
N = DownstreamOptions().min_inliers


def read_rgb(path):
    """Read an image file as RGB."""
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope='module')
def features():
    """ORB features of the sample sequence (in order) and of the other sequences' frames."""
    matcher = OrbMatcher()
    sequence = [matcher.extract(read_rgb(p)) for p in sorted((SEQUENCE / 'images').glob('*'))]
    other = [matcher.extract(read_rgb(p)) for p in sorted(OTHER.glob('*.jpg'))]
    assert len(sequence) >= 40 and len(other) >= 10
    return matcher, sequence, other


def test_a_frame_matches_itself_and_its_neighbour(features):
    """Self-matches keep nearly every feature; frames 1/15 s apart share far more than N."""
    matcher, sequence, _ = features
    for frame in sequence[::10]:
        assert len(frame) > 500
        assert matcher.inliers(frame, frame) >= 0.9 * len(frame)
    for first, second in zip(sequence[::10], sequence[1::10]):
        assert matcher.inliers(first, second) >= 4 * N


def test_shuffled_frames_of_other_sequences_do_not_match(features):
    """Each sample frame against a random frame of other places: far fewer than N inliers."""
    matcher, sequence, other = features
    rng = random.Random(0)
    counts = [matcher.inliers(frame, rng.choice(other)) for frame in sequence]
    assert max(counts) < N, counts


def test_measures_on_a_real_and_a_shuffled_sequence(features):
    """The sample sequence is fully recalled and connected; shuffled strangers are not."""
    matcher, sequence, other = features
    options = DownstreamOptions()
    every_fifth = list(range(0, len(sequence), 5))
    real = downstream_measures([(PairCache(matcher, sequence), every_fifth)], options)
    assert real['recall'] == 1.0 and real['continuity'] == 1.0
    assert real['keyframes'] == len(every_fifth)
    assert real['map_features'] == sum(len(sequence[i]) for i in every_fifth)

    # Alternate the sequence's frames with other places, keyframes on the other places: only
    # the keyframes are recalled (themselves), and no two of them match.
    mixed = [f for pair in zip(sequence[:len(other)], other) for f in pair]
    strangers = list(range(1, len(mixed), 2))
    measures = downstream_measures([(PairCache(matcher, mixed), strangers)], options)
    assert measures['recall'] == pytest.approx(len(strangers) / len(mixed))
    assert measures['continuity'] == 0.0


def shared_by_distance(window):
    """An overlap function: frames (given as indices) share 100 - 10 x their distance."""
    return lambda a, b: max(0, 100 - 10 * abs(a - b)) if abs(a - b) <= window else 0


def test_overlap_rule_takes_the_last_frame_that_still_overlaps():
    """With 50 shared required and 10 lost per frame, keyframes fall every 5 frames."""
    policy = KeyframePolicy(min_gap_frames=1, max_gap_frames=1000, min_gap_s=0.0,
                            max_gap_s=1000.0, window_frames=0, min_shared_features=50,
                            overlap=shared_by_distance(100))
    scores = [FrameScore(total=0.5, quality=1.0, novelty=0.0)] * 23
    decisions = policy.run([i * 10**8 for i in range(23)], scores, features=range(23))
    assert [d.index for d in decisions] == [0, 5, 10, 15, 20]
    assert {d.reason for d in decisions[1:]} == {'overlap'}
    assert all(d.decided_at == d.index + 1 for d in decisions[1:])  # one frame late


def test_overlap_window_prefers_the_best_score_and_features_are_required():
    """window_frames 2: the best total among the last 3 overlapping frames wins."""
    policy = KeyframePolicy(min_gap_frames=1, max_gap_frames=1000, min_gap_s=0.0,
                            max_gap_s=1000.0, window_frames=2, min_shared_features=50,
                            overlap=shared_by_distance(100))
    totals = [0.5, 0.1, 0.1, 0.9, 0.2, 0.3, 0.1, 0.1, 0.1, 0.1]
    scores = [FrameScore(total=t, quality=1.0, novelty=0.0) for t in totals]
    decisions = policy.run([i * 10**8 for i in range(10)], scores, features=range(10))
    assert [d.index for d in decisions][:2] == [0, 3]  # 3 beats 4 and 5; 6 shares 40 < 50
    with pytest.raises(ValueError, match='needs the frame.s features'):
        policy.push(10**10, scores[0])


def test_report_has_the_downstream_measures_of_every_method(tmp_path, capsys):
    """`semseg keyframes` on the shipped sample sequence: table, JSON and plot, all methods."""
    images = sorted((SEQUENCE / 'images').glob('*.jpg'))
    (tmp_path / 'samples.txt').write_text(''.join(
        f'{p} {SEQUENCE / "labels" / (p.stem + ".png")}\n' for p in images))
    out = tmp_path / 'out'
    # A high overlap requirement: the 3.2 s sample then needs several keyframes.
    code = semseg_main(['keyframes', '--data-root', str(tmp_path), '--split', 'samples',
                        '--labels', 'ground-truth', '--fps', '30', '--set',
                        'min_shared_features=300', '--sweep', '200,400', '--out', str(out)])
    assert code == 0
    summary = json.loads((out / 'report.json').read_text())
    assert set(summary['methods']) == set(METHODS)
    counts = set()
    for method, values in summary['methods'].items():
        measures = values['downstream']
        assert 0.0 <= measures['recall'] <= 1.0 and 0.0 <= measures['continuity'] <= 1.0
        assert measures['map_features'] > 0
        counts.add(measures['keyframes'])
    assert len(counts) == 1 and counts.pop() >= 2
    assert [p['min_shared_features'] for p in summary['sweep']] == [200, 400]
    assert summary['downstream_options'] == {'min_inliers': N, 'orb_features': 1000,
                                             'neighbours': 2}
    report = (out / 'report.md').read_text()
    for title in ('semantic (this package)', 'uniform sampling', 'ORB-SLAM2-like max interval',
                  'visual overlap, no semantics'):
        assert report.count(title) >= 2, title  # the downstream table and the sweep
    assert 'relocalisation recall' in report
    plot = cv2.imread(str(out / 'recall_vs_keyframes.png'))
    assert plot is not None and plot.shape[1] > 600
