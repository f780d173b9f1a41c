"""ORB-SLAM3's inputs without ORB-SLAM3: the DBoW2 vocabulary, the settings, painted-out frames.

That ORB-SLAM3 loads and uses them is tested with the real ORB-SLAM3 in test_orbslam3.py.
"""

import cv2
import numpy as np
import pytest

from semseg_ros.core.resources import config_dir, samples_dir
from semseg_ros.keyframes.scoring import dynamic_mask
from semseg_ros.slam import vocabulary as voc
from semseg_ros.slam.masking import paint_out
from semseg_ros.slam.settings import Intrinsics, SettingsError

SAMPLES = samples_dir() / 'camvid_0016E5'
CAMVID_CAMERA = config_dir() / 'camera_info' / 'camvid_480x360.yaml'


def _images(count):
    return sorted((SAMPLES / 'images').glob('*.jpg'))[:count]


def _parse(text):
    """Parse DBoW2's text format as ORB-SLAM's loadFromTextFile does; return (header, nodes)."""
    lines = text.split('\n')
    header = [int(v) for v in lines[0].split()]
    nodes = []
    for number, line in enumerate(lines[1:], 1):
        fields = line.split()
        assert len(fields) == 2 + 32 + 1, f'line {number}: {len(fields)} fields'
        parent, leaf = int(fields[0]), int(fields[1])
        assert 0 <= parent < number, f'line {number}: parent {parent} not before the node'
        descriptor = [int(v) for v in fields[2:34]]
        assert all(0 <= v <= 255 for v in descriptor)
        nodes.append((parent, leaf, descriptor, float(fields[34])))
    return header, nodes


def test_hamming_and_majority_are_dbow2s():
    """Distances count differing bits; the centre sets a bit where at least half the rows do."""
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (7, 32), dtype=np.uint8)
    b = rng.integers(0, 256, (3, 32), dtype=np.uint8)
    expected = np.unpackbits(a[:, None, :] ^ b[None, :, :], axis=2).sum(axis=2)
    assert np.array_equal(voc.hamming(a, b), expected)
    rows = np.array([[0b11000000] + [0] * 31, [0b10000000] + [0] * 31,
                     [0b01000000] + [0] * 31, [0] * 32], np.uint8)
    assert voc.majority(rows)[0, 0] == 0b11000000  # 2 of 4 rows: half, rounded up, is enough
    assert voc.majority(rows[:3])[0, 0] == 0b11000000
    assert voc.majority(rows[1:])[0, 0] == 0


def test_a_vocabulary_is_a_tree_in_dbow2_text_format(tmp_path):
    """Header k L 0 0 (L1 scoring, TF-IDF); parents before children; every descriptor lands in
    a word; idf weights; no trailing newline (ORB-SLAM would read an empty node)."""
    per_image = voc.image_descriptors(_images(6), features=300)
    tree = voc.build_vocabulary(per_image, k=4, depth=5)
    path = voc.write_vocabulary(tree, tmp_path / 'voc.txt')
    text = path.read_text()
    assert not text.endswith('\n')
    header, nodes = _parse(text)
    assert header == [4, 5, 0, 0]
    children = {}
    for number, (parent, _, _, _) in enumerate(nodes, 1):
        children.setdefault(parent, []).append(number)
    assert all(len(c) <= 4 for c in children.values())
    for number, (parent, leaf, _, weight) in enumerate(nodes, 1):
        assert bool(leaf) == (number not in children), f'node {number}'
        assert weight >= 0 and (leaf or weight == 0)
        depth, node = 1, parent
        while node:
            depth, node = depth + 1, nodes[node - 1][0]
        assert depth <= 5
    assert sum(leaf for _, leaf, _, _ in nodes) == tree.words > 500  # of 4**5 = 1024 at most
    # A word in every image has idf ln(6/6) = 0, one in a single image ln(6).
    weights = {round(w, 4) for _, leaf, _, w in nodes if leaf}
    assert round(np.log(6), 4) in weights


def test_depth_below_five_and_no_features_are_refused(tmp_path):
    """ORB-SLAM3 groups features four levels up: a shallower tree would match nothing."""
    with pytest.raises(voc.VocabularyError, match='depth must be 5'):
        voc.build_vocabulary([np.zeros((50, 32), np.uint8)], depth=4)
    with pytest.raises(voc.VocabularyError, match='too few ORB features'):
        voc.build_vocabulary([np.zeros((0, 32), np.uint8)], depth=5)
    bad = tmp_path / 'bad.jpg'
    bad.write_bytes(b'not an image')
    with pytest.raises(voc.VocabularyError, match='bad.jpg: cannot read'):
        voc.image_descriptors([bad])


def test_vocabulary_for_prefers_given_then_env_then_builds_once(tmp_path, monkeypatch):
    """A given file wins, then $PYORBSLAM3_VOCAB; else one is built into the cache and reused."""
    monkeypatch.setenv('SEMSEG_ROS_CACHE', str(tmp_path / 'cache'))
    monkeypatch.delenv(voc.VOCABULARY_ENV, raising=False)
    given = tmp_path / 'ORBvoc.txt'
    given.write_text('10 6 0 0')
    assert voc.vocabulary_for([], given=given) == given
    with pytest.raises(voc.VocabularyError, match='missing.txt: vocabulary file not found'):
        voc.vocabulary_for([], given=tmp_path / 'missing.txt')
    monkeypatch.setenv(voc.VOCABULARY_ENV, str(given))
    assert voc.vocabulary_for(_images(2)) == given
    monkeypatch.delenv(voc.VOCABULARY_ENV)
    built = voc.vocabulary_for(_images(3), features=200)
    assert built.parent == tmp_path / 'cache' / 'vocabularies' and built.is_file()
    stamp = built.stat().st_mtime_ns
    assert voc.vocabulary_for(_images(3), features=200) == built
    assert built.stat().st_mtime_ns == stamp  # not rebuilt
    assert voc.vocabulary_for(_images(4), features=200) != built  # other frames, other file
    with pytest.raises(voc.VocabularyError, match='no frames'):
        voc.vocabulary_for([])


def test_settings_from_a_camera_calibration_yaml():
    """The shipped CamVid calibration gives ORB-SLAM3's keys with its values."""
    camera = Intrinsics.from_yaml(CAMVID_CAMERA)
    assert (camera.width, camera.height, camera.fx, camera.cx, camera.cy) == \
        (480, 360, 450.0, 240.0, 180.0)
    text = camera.settings_text(fps=15, features=1200)
    for line in ('File.version: "1.0"', 'Camera.type: "PinHole"', 'Camera1.fx: 450.000000',
                 'Camera1.cy: 180.000000', 'Camera.width: 480', 'Camera.height: 360',
                 'Camera.fps: 15', 'Camera.RGB: 1', 'ORBextractor.nFeatures: 1200',
                 'Viewer.ViewpointF: 500.0'):
        assert line in text.splitlines(), line
    assert text.startswith('%YAML:1.0\n')
    fields = camera.camera_info_fields()
    assert Intrinsics.from_camera_info(fields['width'], fields['height'], fields['k'],
                                       fields['d']) == camera


def test_settings_keep_distortion_and_refuse_bad_cameras(tmp_path):
    """k1 k2 p1 p2 k3 are written; bad values and files are refused, naming the problem."""
    camera = Intrinsics.from_camera_info(640, 480, [500, 0, 320, 0, 505, 240, 0, 0, 1],
                                         [-0.1, 0.02, 0.001, -0.002, 0.003])
    text = camera.settings_text(fps=30)
    assert 'Camera1.k1: -0.100000000' in text and 'Camera1.k3: 0.003000000' in text
    assert 'Camera1.fy: 505.000000' in text
    with pytest.raises(SettingsError, match='focal lengths must be positive'):
        Intrinsics(640, 480, 0.0, 500, 320, 240)
    with pytest.raises(SettingsError, match='outside the 640x480 image'):
        Intrinsics(640, 480, 500, 500, 700, 240)
    with pytest.raises(SettingsError, match='9 values'):
        Intrinsics.from_camera_info(640, 480, [1, 2, 3])
    broken = tmp_path / 'camera.yaml'
    broken.write_text('image_width: 640\nimage_height: 480\n')
    with pytest.raises(SettingsError, match=r"camera.yaml: missing key 'camera_matrix'"):
        Intrinsics.from_yaml(broken)
    with pytest.raises(SettingsError, match='nothing.yaml: cannot read camera info'):
        Intrinsics.from_yaml(tmp_path / 'nothing.yaml')
    written = camera.write_settings(tmp_path / 'settings.yaml', fps=30)
    assert written.read_text() == text
    storage = cv2.FileStorage(str(written), cv2.FILE_STORAGE_READ)  # ORB-SLAM3's reader
    assert storage.getNode('Camera1.fx').real() == 500.0
    assert storage.getNode('Camera.width').real() == 640
    assert storage.getNode('File.version').string() == '1.0'


def test_painting_out_removes_the_features_of_the_masked_pixels_only():
    """ORB finds (almost) nothing where cars were; elsewhere the frame is unchanged."""
    image = cv2.imread(str(_images(1)[0]))
    labels = cv2.imread(str(SAMPLES / 'labels' / (_images(1)[0].stem + '.png')),
                        cv2.IMREAD_UNCHANGED)
    mask = dynamic_mask(labels, [8, 9, 10], 5)  # Car, Pedestrian, Bicyclist in CamVid
    assert 0.01 < (mask > 0).mean() < 0.5
    painted = paint_out(image, mask)
    orb = cv2.ORB_create(2000)
    inside = [orb.detect(img, mask) for img in (image, painted)]
    assert len(inside[0]) > 50 and len(inside[1]) <= len(inside[0]) // 10
    far = cv2.dilate(mask, np.ones((15, 15), np.uint8)) == 0
    assert np.array_equal(painted[far], image[far])
    assert np.array_equal(paint_out(image, np.zeros_like(mask)), image)
    with pytest.raises(ValueError, match='mask is 10x10, the image 480x360'):
        paint_out(image, np.zeros((10, 10), np.uint8))


def test_poses_become_unit_quaternions_of_the_same_rotation():
    """The quaternion rebuilds the matrix's rotation (every branch of the conversion), qw >= 0,
    and the position is the translation; a non-4x4 matrix is refused."""
    from semseg_ros.slam.poses import matrix_to_pose
    rng = np.random.default_rng(3)
    vectors = [np.array([0.0, 0.0, np.pi / 2]), np.array([np.pi, 0, 0]), np.array([0, np.pi, 0]),
               np.array([0, 0, np.pi])] + [rng.normal(size=3) for _ in range(20)]
    for vector in vectors:
        matrix = np.eye(4)
        matrix[:3, :3] = cv2.Rodrigues(vector)[0]
        matrix[:3, 3] = rng.normal(size=3)
        position, (x, y, z, w) = matrix_to_pose(matrix)
        assert np.allclose(position, matrix[:3, 3])
        assert abs(x * x + y * y + z * z + w * w - 1) < 1e-9 and w >= 0
        rebuilt = np.array([
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
        assert np.allclose(rebuilt, matrix[:3, :3], atol=1e-9), vector
    _, quaternion = matrix_to_pose(np.eye(4))
    assert quaternion == (0.0, 0.0, 0.0, 1.0)
    with pytest.raises(ValueError, match='finite 4x4'):
        matrix_to_pose(np.eye(3))


def test_selections_match_orbslam3s_count_or_take_the_policy_as_it_is(samples):
    """'orbslam': every selection has ORB-SLAM3's keyframe count (the semantic policy's
    threshold searched for it); 'policy': the configuration as it is, baselines at its count.
    The mapping profile starts with its initial keyframes."""
    import argparse
    from tqdm import tqdm
    from semseg_ros.keyframes import offline
    from semseg_ros.keyframes.matching import OrbMatcher
    from semseg_ros.keyframes.scoring import KeyframeScorer
    from semseg_ros.slam.evaluate import _selections, median_repeat, stamps_to_indices
    config = offline.keyframe_configuration(config_dir() / 'keyframes_mapping.yaml', [])
    frames = offline.order_sequences(offline.read_split(samples, 'val'))['0016E5']
    labeller = offline.FrameLabeller(argparse.Namespace(labels='ground-truth'), 'camvid')
    matcher = OrbMatcher(n_features=config['orb_features'])
    with tqdm(disable=True) as bar:
        records = offline.score_sequence(samples, frames, KeyframeScorer(config), labeller,
                                         30.0, 32, 0.0, bar, (matcher, matcher))
    own = [0, 5, 9, 12, 17, 20, 25, 30, 38, 44]  # ORB-SLAM3's keyframes, say
    chosen, params = _selections(records, config, own, 'orbslam')
    assert chosen['orbslam'] == own
    assert len(chosen['uniform']) == len(chosen['max_interval']) == len(own)
    assert len(chosen['semantic']) == len(own) or not params['semantic']['exact']
    assert chosen['semantic'][:config['initial_keyframes']] == list(range(7))
    policy_chosen, policy_params = _selections(records, config, own, 'policy')
    count = len(policy_chosen['semantic'])
    assert policy_params['semantic'] == {'min_shared_features': 250, 'exact': True}
    assert len(policy_chosen['uniform']) == len(policy_chosen['max_interval']) == count
    assert policy_chosen['semantic'][:7] == list(range(7)) and count > 7
    # ORB-SLAM3's keyframe stamps map to frame indices; the median repeat by keyframe count.
    stamps = [i / 15 for i in range(10)]
    assert stamps_to_indices([0.0, 0.1999, 0.2, 0.6], stamps) == [0, 3, 9]
    repeats = [{'keyframe_indices': [0] * n} for n in (5, 2, 9, 4)]
    assert median_repeat(repeats) == 3  # counts 2 4 5 9: the lower median, 4
