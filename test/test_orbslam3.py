"""The real ORB-SLAM3 (optional ``[slam]`` extra) on the bundled frames: it loads the package's
vocabulary and settings, maps a paced run, localises against it; ``semseg slam`` end to end.

The bundled frames are 48 frames of CamVid 0016E5 at 15 Hz (3.2 s), fed at that pace.
"""

import json
import os
from pathlib import Path
import subprocess
import sys

import cv2
import numpy as np
import pytest

pytest.importorskip('pyorbslam3', reason="ORB-SLAM3 is optional: pip install '.[slam]'")

from semseg_ros.core.resources import config_dir, samples_dir  # noqa: E402
from semseg_ros.slam import orbslam3  # noqa: E402
from semseg_ros.slam.settings import Intrinsics  # noqa: E402
from semseg_ros.slam.vocabulary import build_vocabulary, image_descriptors  # noqa: E402
from semseg_ros.slam.vocabulary import write_vocabulary  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
IMAGES = sorted((samples_dir() / 'camvid_0016E5' / 'images').glob('*.jpg'))
RATE = 15.0


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    """A vocabulary built from the bundled frames (depth 5) and the CamVid settings at 15 Hz."""
    folder = tmp_path_factory.mktemp('orbslam3')
    vocabulary = write_vocabulary(build_vocabulary(image_descriptors(IMAGES), depth=5),
                                  folder / 'voc.txt')
    camera = Intrinsics.from_yaml(config_dir() / 'camera_info' / 'camvid_480x360.yaml')
    return vocabulary, camera.write_settings(folder / 'settings.yaml', RATE)


def _frames():
    return [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in IMAGES]


def test_orbslam3_loads_the_built_vocabulary_and_the_settings(files):
    """A fresh system takes a frame (not initialised from one frame); an empty map is not saved
    (ORB-SLAM3 would crash) and shutting down twice is harmless."""
    with orbslam3.OrbSlam3(*files) as slam:
        outcome = slam.track(_frames()[0], 0.0)
        assert outcome['state'] == 'NOT_INITIALIZED' and not outcome['tracked']
        assert outcome['pose_wc'] is None
        assert slam.keyframe_stamps() == []
        slam.shutdown()
    assert orbslam3.version() == '0.1.1'


def test_a_paced_run_maps_the_sample_frames_and_localises_against_the_map(files):
    """Fed at 15 Hz, ORB-SLAM3 initialises, tracks, makes keyframes out of the fed frames, and
    localises frames against its map afterwards. Runs differ (threads): the measures are
    bounded, not pinned."""
    frames = _frames()
    stamps = [i / RATE for i in range(len(frames))]
    result = orbslam3.paced_run(*files, frames, stamps, list(range(len(frames))),
                                localise=frames)
    assert len(result['states']) == len(frames)
    assert set(result['states']) <= set(orbslam3.STATES)
    assert result['late_s'] < 0.5, 'frames were not fed at their pace'
    assert result['initialised_at'] is not None, result['states']
    assert 2 <= result['tracked'] <= len(frames) - result['initialised_at']
    assert result['points'] > 20
    assert len(result['keyframe_stamps']) >= 2
    for stamp in result['keyframe_stamps']:
        assert min(abs(stamp - s) for s in stamps) < 1e-3, stamp
    assert 0.0 < result['localised'] <= 1.0


def test_too_few_frames_never_initialise_and_nothing_is_saved(files):
    """Two frames 1.5 s apart give ORB-SLAM3 nothing to initialise from: no keyframe, nothing
    localised, no crash (the empty map is never saved)."""
    frames = _frames()
    result = orbslam3.paced_run(*files, [frames[0], frames[-1]], [0.0, 1.5], [0, 47],
                                localise=frames[:5], settle_s=0.2)
    assert result['initialised_at'] is None and result['tracked'] == 0
    assert result['keyframe_stamps'] == [] and result['localised'] == 0.0


def test_semseg_slam_end_to_end_on_the_sample_frames(samples, tmp_path):
    """report.json has every method (frames fed, one repeat each), the selections match
    ORB-SLAM3's own keyframe count, report.md and the contact sheet are written."""
    env = dict(os.environ, SEMSEG_ROS_CACHE=str(tmp_path / 'cache'))
    env.pop('PYORBSLAM3_VOCAB', None)
    out = tmp_path / 'out'
    result = subprocess.run(
        [sys.executable, '-m', 'semseg_ros.cli', 'slam', '--data-root', str(samples),
         '--split', 'val', '--out', str(out), '--labels', 'ground-truth', '--repeats', '1',
         '--settle', '0.5'], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / 'report.json').read_text())
    methods = report['methods']
    assert set(methods) == {'all_frames', 'semantic', 'uniform', 'max_interval', 'orbslam'}
    names = {p.name for p in IMAGES}
    assert methods['all_frames']['frames'] == [p.name for p in IMAGES]
    own = methods['all_frames']['repeats'][0]['keyframe_indices']
    assert methods['orbslam']['indices'] == own
    for name, method in methods.items():
        assert set(method['frames']) <= names
        assert len(method['repeats']) == 1
        repeat = method['repeats'][0]
        assert set(repeat) >= {'initialised_at', 'tracked', 'localised'}
        assert 0 <= repeat['tracked'] <= len(method['frames'])
        assert 0.0 <= repeat['localised'] <= 1.0
        if name in ('uniform', 'orbslam') or (method['params'] or {}).get('exact'):
            assert len(method['frames']) == len(own), name
    assert report['vocabulary'].startswith(str(tmp_path / 'cache'))
    assert '| semantic (this package) |' in (out / 'report.md').read_text()
    sheet = cv2.imread(str(out / 'contact_sheet.png'))
    assert sheet is not None and sheet.shape[0] > 100
    assert len(list((out / 'logs').glob('*.log'))) == 5


def test_semseg_slam_refuses_a_camera_of_another_size(samples, tmp_path):
    """A calibration for another image size is refused before ORB-SLAM3 starts, naming it."""
    camera = tmp_path / 'vga.yaml'
    camera.write_text('image_width: 640\nimage_height: 480\ncamera_matrix:\n  data: '
                      '[500, 0, 320, 0, 500, 240, 0, 0, 1]\n')
    result = subprocess.run(
        [sys.executable, '-m', 'semseg_ros.cli', 'slam', '--data-root', str(samples),
         '--out', str(tmp_path / 'out'), '--labels', 'ground-truth', '--camera-info',
         str(camera)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert 'vga.yaml: the camera is 640x480, the frames 480x360' in result.stderr
    assert not (tmp_path / 'out' / 'report.md').exists()


def test_semseg_slam_vocabulary_writes_a_vocabulary_orbslam3_loads(samples, tmp_path):
    """`semseg slam vocabulary` builds from a split's frames; ORB-SLAM3 loads the file."""
    out = tmp_path / 'voc.txt'
    result = subprocess.run(
        [sys.executable, '-m', 'semseg_ros.cli', 'slam', 'vocabulary', '--data-root',
         str(samples), '--split', 'val', '--out', str(out)], cwd=REPO, capture_output=True,
        text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'words, k=10, depth 5' in result.stdout
    camera = Intrinsics.from_yaml(config_dir() / 'camera_info' / 'camvid_480x360.yaml')
    settings = camera.write_settings(tmp_path / 'settings.yaml', RATE)
    with orbslam3.OrbSlam3(out, settings) as slam:
        assert slam.track(np.zeros((360, 480, 3), np.uint8), 0.0)['state'] == 'NOT_INITIALIZED'
    missing = subprocess.run(
        [sys.executable, '-m', 'semseg_ros.cli', 'slam', 'vocabulary', '--data-root',
         str(samples), '--split', 'nosuch', '--out', str(out)], cwd=REPO,
        capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2 and 'nosuch.txt not found' in missing.stderr


def test_a_failed_orbslam3_run_is_recorded_as_failed_with_its_log(files, tmp_path):
    """A run whose process fails (here: no vocabulary) counts as not initialised, nothing
    tracked, with the error naming its log; the evaluation goes on."""
    from semseg_ros.slam.evaluate import Job, Runner
    done = []
    runner = Runner(tmp_path, tmp_path / 'missing_voc.txt', files[1], IMAGES[:3],
                    [0.0, 1 / RATE, 2 / RATE], None, 0.1, lambda: done.append(1))
    result = runner.run(Job('uniform', [0, 1, 2]), 0)
    assert result['initialised_at'] is None and result['tracked'] == 0
    assert result['localised'] == 0.0 and result['keyframes'] == 0
    log = tmp_path / 'logs' / 'uniform_1.log'
    assert str(log) in result['error'] and 'missing_voc.txt' in log.read_text()
    assert done == [1]
