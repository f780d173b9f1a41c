"""``semseg keyframes`` end to end on real CamVid frames, and its bad-input handling."""

import csv
import json

import cv2
import numpy as np
import pytest

from semseg_ros.cli import main as semseg_main
from semseg_ros.commands.keyframes import main
from semseg_ros.keyframes.config import load_keyframe_config
from semseg_ros.keyframes.offline import (matched_max_interval, OfflineError, order_sequences,
                                          read_split)
from semseg_ros.keyframes.scoring import FrameScore, KeyframeScorer

FRAMES = 40


@pytest.fixture(scope='module')
def ground_truth_run(samples, tmp_path_factory):
    """One run on the first 40 val frames with ground-truth labels: (out folder, exit code)."""
    out = tmp_path_factory.mktemp('keyframes_gt')
    code = semseg_main(['keyframes', '--data-root', str(samples), '--split', 'val',
                        '--labels', 'ground-truth', '--max-frames', str(FRAMES),
                        '--sheet-overlay', '0.4', '--out', str(out)])
    return out, code


def test_every_output_is_written(ground_truth_run, capsys):
    """Report, JSON, both CSVs, the TUM list and the contact sheet exist and agree."""
    out, code = ground_truth_run
    assert code == 0
    summary = json.loads((out / 'report.json').read_text())
    assert summary['frames'] == FRAMES and summary['equal_counts']
    counts = {m['keyframes'] for m in summary['methods'].values()}
    assert len(counts) == 1
    count = counts.pop()
    assert 1 <= count < FRAMES
    report = (out / 'report.md').read_text()
    for title in ('semantic (this package)', 'uniform sampling', 'ORB-SLAM2-like'):
        assert title in report
    assert not list(out.glob('*.part*')), 'a temporary file was left behind'

    with open(out / 'keyframes.csv', newline='') as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == count
    assert list(rows[0])[:4] == ['index', 'stamp', 'score', 'reason']
    with open(out / 'frames.csv', newline='') as f:
        frames = list(csv.DictReader(f))
    assert len(frames) == FRAMES
    assert sum(int(r['keyframe']) for r in frames) == count

    tum = (out / 'keyframes_0016E5.txt').read_text().splitlines()
    assert len(tum) == 3 + count and all(line.startswith('#') for line in tum[:3])
    stamps = [float(line.split()[0]) for line in tum[3:]]
    assert stamps == sorted(stamps) == [float(r['stamp']) for r in rows]
    assert [line.split()[1] for line in tum[3:]] == [r['image'] for r in rows]

    sheet = cv2.imread(str(out / 'contact_sheet.png'))
    assert sheet is not None and sheet.shape[1] >= 240 * min(count, 6)


def test_selections_respect_the_policy_and_the_scores_are_real(ground_truth_run, samples):
    """Semantic keyframes keep the configured gaps, and their terms match a fresh scoring."""
    out, _ = ground_truth_run
    config = load_keyframe_config()
    summary = json.loads((out / 'report.json').read_text())
    sequence = summary['sequences'][0]
    semantic = sequence['selections']['semantic']
    gaps = np.diff(semantic)
    assert np.all(gaps >= config['min_gap_frames']) and np.all(gaps <= config['max_gap_frames'])
    assert sequence['selections']['uniform'] == [i * FRAMES // len(semantic)
                                                 for i in range(len(semantic))]
    with open(out / 'keyframes.csv', newline='') as f:
        row = list(csv.DictReader(f))[-1]
    image = cv2.cvtColor(cv2.imread(str(samples / row['image'])), cv2.COLOR_BGR2RGB)
    label_path = samples / row['image'].replace('val/', 'valannot/').replace('.jpg', '.png')
    labels = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)
    score = KeyframeScorer(config).score(labels, image)
    for term in ('semantic', 'dynamic', 'sharpness', 'quality'):
        assert float(row[term]) == pytest.approx(getattr(score, term), abs=1e-4)


def test_untrained_network_path(samples, tmp_path):
    """--labels predicted runs the network (untrained weights: only the path is checked)."""
    code = main(['--data-root', str(samples), '--split', 'val', '--model', 'mininet_v2_cpu',
                 '--weights', 'none', '--backend', 'torch', '--threads', '1',
                 '--size', '128x96', '--max-frames', '6', '--out', str(tmp_path)])
    assert code == 0
    summary = json.loads((tmp_path / 'report.json').read_text())
    assert summary['labels'] == 'predicted' and summary['weights'] == 'none'
    assert summary['frames'] == 6 and (tmp_path / 'contact_sheet.png').is_file()


def test_bad_data_root_and_split_exit_2(tmp_path, capsys, samples):
    """A missing data root or split list is named on stderr, with exit code 2."""
    missing = tmp_path / 'no_such_dataset'
    assert main(['--data-root', str(missing), '--labels', 'ground-truth',
                 '--out', str(tmp_path / 'out')]) == 2
    assert str(missing) in capsys.readouterr().err
    assert main(['--data-root', str(samples), '--split', 'nope', '--labels', 'ground-truth',
                 '--out', str(tmp_path / 'out')]) == 2
    err = capsys.readouterr().err
    assert 'nope.txt' in err and 'val' in err
    assert main(['--data-root', str(samples), '--labels', 'ground-truth', '--set',
                 'min_gap_frames=0', '--out', str(tmp_path / 'out')]) == 2
    assert 'min_gap_frames must be an integer in [1' in capsys.readouterr().err
    assert not (tmp_path / 'out' / 'report.md').exists()


def test_split_reader_orders_sequences_and_names_bad_lines(tmp_path):
    """Frames are grouped by sequence and sorted by number; odd names are refused clearly."""
    (tmp_path / 'mixed.txt').write_text(
        'val/B_f00030.png a/B_f00030.png\nval/A_0009.png a/A_0009.png\n'
        'val/B_f00000.png a/B_f00000.png\nval/A_0003.png a/A_0003.png\n'
        'val/A_0005.png a/A_0005.png\n')
    ordered = order_sequences(read_split(tmp_path, 'mixed'))
    assert {k: [e.frame for e in v] for k, v in ordered.items()} == {'A': [3, 5, 9],
                                                                     'B': [0, 30]}
    assert [e.frame for e in order_sequences(read_split(tmp_path, 'mixed'), every=2)['A']] \
        == [3, 9]
    limited = order_sequences(read_split(tmp_path, 'mixed'), max_frames=4)
    assert [len(v) for v in limited.values()] == [3, 1]
    (tmp_path / 'bad.txt').write_text('val/frame.png label.png\n')
    with pytest.raises(OfflineError, match=r'bad.txt:1: cannot read a sequence'):
        read_split(tmp_path, 'bad')


def test_max_interval_baseline_reaches_the_requested_count():
    """The ORB-SLAM2-like rule is tuned to give exactly the count asked for."""
    novelty = [0.0, 0.1, 0.9, 0.2, 0.1, 0.1, 0.95, 0.1, 0.1, 0.1, 0.1, 0.1]
    scores = [FrameScore(total=0.5, novelty=n) for n in novelty]
    for count in (1, 2, 3, 4, 6):
        chosen, params = matched_max_interval(scores, count, interval=5, metric='intersection')
        assert len(chosen) == count and params['exact'] and chosen[0] == 0
