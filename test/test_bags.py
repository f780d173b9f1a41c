"""The bag tools: make -> process round trip, evaluation figures, live replay, bad bags.

Bags are real rosbag2 bags built from the bundled CamVid sequence; they are read back with
rosbags and with rclpy's own deserializer, the live replay runs the real segmentation node
over DDS.
"""

import json
import os
from pathlib import Path
import shutil
import struct
import sys

import cv2
from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
import pytest
from rclpy.serialization import deserialize_message
from rosbags.interfaces import QosDurability, QosReliability
from rosbags.rosbag2 import Reader
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header
import torch
import yaml

from ros_testing import RELEASED_LABEL_INFO_HASH
from semseg_ros.bags.evaluate import evaluate_recording, OutputTopics, TruthMatcher
from semseg_ros.bags.make import collect_frames, make_bag, SequenceError
from semseg_ros.bags.messages import (decode_labels, decode_rgb, header, labels_message,
                                      rgb_message, scores_message)
from semseg_ros.bags.process import process_bag
from semseg_ros.bags.storage import (BagError, BagWriter, DIAGNOSTIC_ARRAY, HEADER, IMAGE,
                                     LABEL_INFO, typestore)
from semseg_ros.cli import main as semseg
from semseg_ros.core.classes import colorize, load_class_set
from semseg_ros.core.metrics import ConfusionMatrix
from semseg_ros.core.segmenter import Segmenter, SegmenterConfig
from semseg_ros.core.weights import save_weights
from semseg_ros.models import create_model

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / 'semseg_ros' / 'data' / 'samples' / 'camvid_0016E5'
FRAMES = 8
RATE = 15.0
START_NS = 1_700_000_000_123_456_789
MODEL = 'mininet_v2_cpu'
SIZE = (256, 128)
TOPICS = OutputTopics()


def stamps_expected():
    """Stamps make_bag gives the test frames."""
    return [START_NS + int(round(i * 1e9 / RATE)) for i in range(FRAMES)]


def read_all(path):
    """Return topic -> [(bag timestamp, raw bytes, message type)] of a bag, read by rosbags."""
    topics = {}
    with Reader(path) as reader:
        for connection, timestamp, raw in reader.messages():
            topics.setdefault(connection.topic, []).append(
                (timestamp, bytes(raw), connection.msgtype))
    return topics


def message(raw, msgtype):
    """Deserialize with rosbags."""
    return typestore().deserialize_cdr(raw, msgtype)


def stamp_of(msg):
    """Header stamp of an rclpy or rosbags message in nanoseconds."""
    head = getattr(msg, 'header', msg)
    return head.stamp.sec * 1_000_000_000 + head.stamp.nanosec


@pytest.fixture(scope='module')
def frames():
    """The first frames of the bundled sequence, with labels."""
    return collect_frames(SAMPLE / 'images', SAMPLE / 'labels')[:FRAMES]


@pytest.fixture(scope='module')
def sample_bag(tmp_path_factory, frames):
    """An MCAP bag of the frames (rgb8) and their labels at 15 Hz."""
    path = tmp_path_factory.mktemp('bags') / 'sample'
    make_bag(frames, path, RATE, start_ns=START_NS, progress=False)
    return path


@pytest.fixture(scope='module')
def weights(tmp_path_factory):
    """Weights of a seeded, untrained network (deterministic outputs)."""
    torch.manual_seed(0)
    network = create_model(MODEL, num_classes=11)
    return save_weights(tmp_path_factory.mktemp('weights') / f'{MODEL}_test.pt', network, MODEL,
                        11, 'camvid')


@pytest.fixture(scope='module')
def segmenter(weights):
    """The test network on ONNX Runtime at a small input size."""
    return Segmenter(SegmenterConfig(model=MODEL, weights=str(weights), input_width=SIZE[0],
                                     input_height=SIZE[1], threads=1))


@pytest.fixture(scope='module')
def processed(tmp_path_factory, sample_bag, segmenter):
    """The sample bag processed with keyframes: (output bag, report)."""
    out = tmp_path_factory.mktemp('processed') / 'out'
    report = process_bag(sample_bag, out, segmenter, keyframes=True, progress=False)
    return out, report


def test_make_writes_a_standard_bag(sample_bag, frames):
    """Types, stamps, frame ids, pixels and labels; rosbags and rclpy both read it back."""
    metadata = yaml.safe_load((sample_bag / 'metadata.yaml').read_text())
    info = metadata['rosbag2_bagfile_information']
    assert info['storage_identifier'] == 'mcap'
    assert info['relative_file_paths'] == ['sample.mcap']
    assert {t['topic_metadata']['name']: (t['topic_metadata']['type'], t['message_count'])
            for t in info['topics_with_message_count']} == {
        '/camera/image_raw': (IMAGE, FRAMES), '/camera/labels': (IMAGE, FRAMES)}
    topics = read_all(sample_bag)
    for topic in ('/camera/image_raw', '/camera/labels'):
        assert [t for t, _, _ in topics[topic]] == stamps_expected()
    for index, frame in enumerate(frames):
        timestamp, raw, _ = topics['/camera/image_raw'][index]
        image = message(raw, IMAGE)
        assert stamp_of(image) == timestamp and image.header.frame_id == 'camera'
        assert image.encoding == 'rgb8' and image.step == 3 * image.width
        expected = cv2.cvtColor(cv2.imread(str(frame.image)), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(decode_rgb(image, IMAGE), expected)
        labels = message(topics['/camera/labels'][index][1], IMAGE)
        assert stamp_of(labels) == timestamp and labels.encoding == 'mono8'
        np.testing.assert_array_equal(decode_labels(labels),
                                      cv2.imread(str(frame.label), cv2.IMREAD_UNCHANGED))
        ros_image = deserialize_message(raw, Image)  # rclpy's own CDR decoder
        assert (ros_image.encoding, ros_image.height, ros_image.width) == \
            ('rgb8', expected.shape[0], expected.shape[1])
        assert stamp_of(ros_image) == timestamp
        assert bytes(ros_image.data) == expected.tobytes()


def test_make_orders_by_frame_number_and_reads_lists(tmp_path, frames):
    """Folders sort by the numbers in file names; list files keep their order and labels."""
    folder = tmp_path / 'seq'
    folder.mkdir()
    for name in ('f10.jpg', 'f2.jpg', 'f1.jpg', 'notes.txt'):
        shutil.copy(frames[0].image, folder / name)
    assert [f.image.name for f in collect_frames(folder)] == ['f1.jpg', 'f2.jpg', 'f10.jpg']
    listing = tmp_path / 'list.txt'
    listing.write_text(f'# two frames\n{frames[1].image} {frames[1].label}\n'
                       f'{frames[0].image} {frames[0].label}\n')
    assert collect_frames(listing) == [frames[1], frames[0]]
    with pytest.raises(SequenceError, match='no label for f1.jpg'):
        collect_frames(folder, labels=SAMPLE / 'labels')


def test_make_compressed_sqlite3_and_other_encodings(tmp_path, frames):
    """jpeg goes to <topic>/compressed as CompressedImage; sqlite3 storage; bgr8 exact."""
    jpeg = tmp_path / 'jpeg'
    make_bag(frames[:2], jpeg, 10.0, encoding='jpeg', storage='sqlite3', start_ns=START_NS,
             progress=False)
    assert (jpeg / 'jpeg.db3').is_file()
    topics = read_all(jpeg)
    assert set(topics) == {'/camera/image_raw/compressed', '/camera/labels'}
    _, raw, msgtype = topics['/camera/image_raw/compressed'][1]
    assert msgtype == 'sensor_msgs/msg/CompressedImage'
    compressed = deserialize_message(raw, CompressedImage)
    assert compressed.format == 'rgb8; jpeg compressed bgr8'
    assert stamp_of(compressed) == START_NS + 100_000_000
    expected = cv2.cvtColor(cv2.imread(str(frames[1].image)), cv2.COLOR_BGR2RGB)
    decoded = decode_rgb(message(raw, msgtype), msgtype)
    assert np.abs(decoded.astype(int) - expected).mean() < 3.0
    bgr = tmp_path / 'bgr'
    make_bag(frames[:1], bgr, 10.0, encoding='bgr8', progress=False)
    image = message(read_all(bgr)['/camera/image_raw'][0][1], IMAGE)
    assert image.encoding == 'bgr8'
    np.testing.assert_array_equal(
        decode_rgb(image, IMAGE), cv2.cvtColor(cv2.imread(str(frames[0].image)),
                                               cv2.COLOR_BGR2RGB))


def test_process_round_trip(processed, sample_bag, segmenter, frames):
    """Every frame segmented, stamped like its source; colours, scores, keyframes, mIoU."""
    out, report = processed
    topics = read_all(out)
    stamps = stamps_expected()
    assert report.frames == FRAMES and report.bad_frames == 0 and report.fps > 0
    for topic in ('/camera/image_raw', '/camera/labels'):  # inputs copied byte for byte
        assert topics[topic] == read_all(sample_bag)[topic]
    palette = load_class_set('camvid')
    confusion = ConfusionMatrix(11, 11)
    for index, frame in enumerate(frames):
        timestamp, raw, msgtype = topics[TOPICS.label_mask][index]
        assert timestamp == stamps[index] and msgtype == IMAGE
        ros_mask = deserialize_message(raw, Image)
        assert ros_mask.encoding == 'mono8' and stamp_of(ros_mask) == stamps[index]
        assert ros_mask.header.frame_id == 'camera'
        labels = decode_labels(message(raw, IMAGE))
        rgb = cv2.cvtColor(cv2.imread(str(frame.image)), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(labels, segmenter.segment(rgb).labels)
        assert labels.shape == rgb.shape[:2] and labels.max() < 11
        color = message(topics[TOPICS.color_mask][index][1], IMAGE)
        assert color.encoding == 'rgb8' and stamp_of(color) == stamps[index]
        np.testing.assert_array_equal(decode_rgb(color, IMAGE), colorize(labels, palette))
        scores = deserialize_message(topics[TOPICS.scores][index][1], DiagnosticArray)
        assert stamp_of(scores) == stamps[index]
        terms = {kv.key: float(kv.value) for kv in scores.status[0].values}
        assert {'total', 'quality', 'semantic', 'novelty', 'dynamic'} <= set(terms)
        assert terms['frame_index'] == index
        assert all(0.0 <= v <= 1.0 for k, v in terms.items()
                   if k not in ('laplacian_var', 'frame_index'))
        confusion.update(labels, cv2.imread(str(frame.label), cv2.IMREAD_UNCHANGED))
    keyframes = [deserialize_message(raw, Header) for _, raw, _ in topics[TOPICS.keyframe]]
    assert keyframes and [stamp_of(k) for k in keyframes] == \
        [stamps[k['index']] for k in report.keyframes]
    assert report.keyframes[0]['reason'] == 'first'
    assert report.accuracy['frames'] == FRAMES
    assert report.accuracy['miou'] == pytest.approx(confusion.miou())
    assert 0.0 <= report.accuracy['miou'] <= 1.0


def test_process_writes_label_info_once_latched(processed):
    """One vision_msgs/LabelInfo before the first mask, offered latched, readable by rclpy."""
    vision_msgs = pytest.importorskip('vision_msgs.msg',
                                      reason='vision_msgs is not installed (make generates it)')
    out, _ = processed
    topics = read_all(out)
    [(timestamp, raw, msgtype)] = topics[TOPICS.label_info]
    first_mask = topics[TOPICS.label_mask][0]
    assert msgtype == LABEL_INFO and timestamp == first_mask[0]
    info = deserialize_message(raw, vision_msgs.LabelInfo)  # the real type's deserializer
    assert stamp_of(info) == stamp_of(deserialize_message(first_mask[1], Image))
    assert [(c.class_id, c.class_name) for c in info.class_map] == \
        list(enumerate(load_class_set('camvid').names))
    assert info.threshold == 0.0
    with Reader(out) as reader:
        [connection] = [c for c in reader.connections if c.topic == TOPICS.label_info]
        [qos] = connection.ext.offered_qos_profiles
    assert connection.digest == RELEASED_LABEL_INFO_HASH  # the bag's type_description_hash
    assert qos.durability == QosDurability.TRANSIENT_LOCAL
    assert qos.reliability == QosReliability.RELIABLE and qos.depth == 1


def test_bag_label_info_is_the_released_and_the_generated_type():
    """rosbags' LabelInfo hashes as the released package's and as the one make generates."""
    assert typestore().hash_rihs01(LABEL_INFO) == RELEASED_LABEL_INFO_HASH
    # What rosidl's type description generator computed for the installed package: in .venv
    # (make), or under a ROS installation's prefixes.
    prefixes = os.environ.get('AMENT_PREFIX_PATH', sys.prefix).split(os.pathsep)
    found = [path for prefix in prefixes
             if (path := Path(prefix) / 'share/vision_msgs/msg/LabelInfo.json').is_file()]
    if not found:
        pytest.skip('vision_msgs is not installed (make generates it)')
    generated = json.loads(found[0].read_text())
    assert {h['type_name']: h['hash_string'] for h in generated['type_hashes']} == {
        name: typestore().hash_rihs01(name) for name in
        ('vision_msgs/msg/LabelInfo', 'vision_msgs/msg/VisionClass', 'std_msgs/msg/Header',
         'builtin_interfaces/msg/Time')}


def test_unlabelled_predictions_are_scored_as_misses():
    """A node with a threshold writes 255 (unlabelled): evaluation counts it as a miss."""
    matcher = TruthMatcher(load_class_set('camvid'))
    truth = np.zeros((4, 4), np.uint8)
    truth[2:] = 3  # Road
    prediction = truth.copy()
    prediction[3:] = 255
    matcher.truth(1, truth)
    matcher.prediction(1, prediction)
    result = matcher.result()
    assert result['iou']['Sky'] == 1.0 and result['iou']['Road'] == pytest.approx(0.5)
    assert result['pixel_accuracy'] == pytest.approx(0.75)


def test_process_is_deterministic_and_can_skip_inputs(tmp_path, processed, sample_bag,
                                                      segmenter):
    """A second run gives the same masks byte for byte; --no-copy-input writes results only."""
    out = tmp_path / 'again'
    report = process_bag(sample_bag, out, segmenter, copy_input=False, progress=False)
    topics = read_all(out)
    assert set(topics) == {TOPICS.label_mask, TOPICS.color_mask, TOPICS.label_info}
    assert topics[TOPICS.label_mask] == read_all(processed[0])[TOPICS.label_mask]
    assert report.accuracy['miou'] == pytest.approx(processed[1].accuracy['miou'])


def _synthetic_recording(path, truth_path):
    """A recording with known timing: 10 frames 100 ms apart; frame 3 dropped by the node,
    frame 7's label mask lost in transport; label-mask latency 10 + i ms; keyframes 0 and 5."""
    rng = np.random.default_rng(1)
    t0 = 1_800_000_000_000_000_000
    truths = [rng.integers(0, 11, (6, 8), dtype=np.uint8) for _ in range(10)]
    with BagWriter(path) as bag, BagWriter(truth_path) as truth_bag:
        images = bag.add_topic('/camera/image_raw', IMAGE)
        masks = bag.add_topic(TOPICS.label_mask, IMAGE)
        colors = bag.add_topic(TOPICS.color_mask, IMAGE)
        scores = bag.add_topic(TOPICS.scores, DIAGNOSTIC_ARRAY)
        keyframe = bag.add_topic(TOPICS.keyframe, HEADER)
        gt = truth_bag.add_topic('/camera/labels', IMAGE)
        for i, labels in enumerate(truths):
            stamp = 5_000_000_000 + i * 100_000_000
            sent = t0 + i * 100_000_000
            bag.write_message(images, sent, rgb_message(np.zeros((6, 8, 3), np.uint8), stamp,
                                                        'cam')[1])
            truth_bag.write_message(gt, stamp, labels_message(labels, stamp, 'cam'))
            if i == 3:
                continue
            prediction = labels if i != 9 else np.where(labels == 2, 4, labels)
            if i != 7:
                bag.write_message(masks, sent + (10 + i) * 1_000_000,
                                  labels_message(prediction, stamp, 'cam'))
            bag.write_message(colors, sent + (12 + i) * 1_000_000,
                              labels_message(prediction, stamp, 'cam'))
            bag.write_message(scores, sent + 20_000_000,
                              scores_message(stamp, 'cam', {'total': i / 10}))
            if i in (0, 5):
                bag.write_message(keyframe, sent + 150_000_000, header(stamp, 'cam'))
    return truths


def test_evaluate_recording_figures(tmp_path):
    """Counts, drops, losses, latency, FPS, keyframes and mIoU of a recording with known
    timing and content."""
    recording, truth = tmp_path / 'rec', tmp_path / 'truth'
    truths = _synthetic_recording(recording, truth)
    report = evaluate_recording(recording, ground_truth=truth)
    assert (report.frames_published, report.frames_processed, report.frames_dropped) == \
        (10, 9, 1)
    assert report.outputs_lost == {TOPICS.label_mask: 1, TOPICS.color_mask: 0}
    with_masks = [i for i in range(10) if i not in (3, 7)]
    latencies = [10.0 + i for i in with_masks]
    assert report.latency['count'] == 8
    assert report.latency['median_ms'] == pytest.approx(np.median(latencies))
    assert report.latency['p95_ms'] == pytest.approx(np.percentile(latencies, 95))
    assert report.input_fps == pytest.approx(10.0)
    # First outputs of the 9 processed frames: from 0 + 10 ms to 900 + 19 ms, 8 intervals.
    assert report.achieved_fps == pytest.approx(8 / 0.909)
    assert [(k['index'], k['total']) for k in report.keyframes] == [(0, 0.0), (5, 0.5)]
    assert report.keyframes[1]['decided_after_ms'] == pytest.approx(150.0)
    confusion = ConfusionMatrix(11, 11)
    for i in with_masks:
        confusion.update(truths[i] if i != 9 else np.where(truths[i] == 2, 4, truths[i]),
                         truths[i])
    assert report.accuracy['frames'] == 8
    assert report.accuracy['miou'] == pytest.approx(confusion.miou())
    assert report.accuracy['miou'] < 1.0
    assert 'frames: 10 published, 9 processed, 1 dropped' in report.summary_lines()


def test_failed_writes_leave_nothing(tmp_path, sample_bag):
    """An exception inside BagWriter removes the partial bag; an old bag survives it."""
    out = tmp_path / 'out'
    with pytest.raises(RuntimeError):
        with BagWriter(out) as bag:
            bag.write_message(bag.add_topic('/x', HEADER), 1, header(1, 'a'))
            raise RuntimeError('interrupted')
    assert list(tmp_path.iterdir()) == []
    old = tmp_path / 'old'
    shutil.copytree(sample_bag, old)
    with pytest.raises(RuntimeError):
        with BagWriter(old, overwrite=True) as bag:
            raise RuntimeError('interrupted')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['old']
    assert read_all(old) == read_all(sample_bag)
    with pytest.raises(BagError, match='exists already'):
        BagWriter(old)


def _mcap_chunks(path):
    """Offsets of the chunk records of an MCAP file (opcode 0x06)."""
    data = path.read_bytes()
    position, chunks = 8, []
    while position + 9 <= len(data):
        opcode, length = data[position], struct.unpack_from('<Q', data, position + 1)[0]
        if opcode == 0x06:
            chunks.append(position)
        if opcode == 0x0F:  # footer
            break
        position += 9 + length
    return chunks


def test_bad_bags_give_clear_errors_and_exit_2(tmp_path, sample_bag, processed, weights,
                                               capsys):
    """Missing path, not a bag, missing topic, wrong type, truncated and corrupt files."""
    def run(*argv):
        code = semseg(['bag', *[str(a) for a in argv]])
        return code, capsys.readouterr().err

    out = tmp_path / 'out'
    code, err = run('process', tmp_path / 'nothing', '--out', out)
    assert code == 2 and 'nothing: not a rosbag2 bag: no such file or folder' in err
    (tmp_path / 'folder').mkdir()
    code, err = run('process', tmp_path / 'folder', '--out', out)
    assert code == 2 and 'a folder without metadata.yaml' in err
    code, err = run('process', sample_bag, '--topic', '/camera/rgb', '--out', out)
    assert code == 2 and "no topic '/camera/rgb'" in err
    assert '/camera/image_raw (sensor_msgs/msg/Image, 8 msgs)' in err
    code, err = run('process', processed[0], '--topic', TOPICS.keyframe, '--out', out)
    assert code == 2 and f'topic {TOPICS.keyframe} carries std_msgs/msg/Header, expected ' \
        'sensor_msgs/msg/Image or sensor_msgs/msg/CompressedImage' in err
    code, err = run('process', sample_bag, '--overwrite', '--out', sample_bag)
    assert code == 2 and 'the output bag must not be the input bag' in err
    code, err = run('evaluate', sample_bag)
    assert code == 2 and f"no topic '{TOPICS.label_mask}'" in err

    truncated = tmp_path / 'truncated'
    shutil.copytree(sample_bag, truncated)
    storage = truncated / 'sample.mcap'
    storage.write_bytes(storage.read_bytes()[:storage.stat().st_size // 2])
    code, err = run('process', truncated, '--out', out)
    assert code == 2 and 'corrupt, truncated or unsupported bag' in err

    # A damaged chunk in the middle: opening works, reading fails part-way.
    corrupt = tmp_path / 'corrupt'
    shutil.copytree(sample_bag, corrupt)
    storage = corrupt / 'sample.mcap'
    data = bytearray(storage.read_bytes())
    chunk = _mcap_chunks(storage)[2]
    data[chunk + 9 + 24:chunk + 9 + 64] = b'\xff' * 40  # crc, compression and records length
    storage.write_bytes(bytes(data))
    code, err = run('process', corrupt, '--weights', weights, '--size', '256x128',
                    '--threads', '1', '--out', out)
    assert code == 2 and 'corrupt or truncated bag: reading failed after' in err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith('.out')]

    code, err = run('make', '--images', tmp_path / 'none', '--rate', 15, '--out', out)
    assert code == 2 and 'none: no such folder or list file' in err
    code, err = run('make', '--images', SAMPLE / 'images', '--rate', 0, '--out', out)
    assert code == 2 and 'rate must be a positive number' in err
    code, err = run('make', '--images', SAMPLE / 'images', '--rate', 15, '--out', sample_bag)
    assert code == 2 and 'exists already' in err
    small = tmp_path / 'small'
    small.mkdir()
    cv2.imwrite(str(small / '0016E5_07959.png'), np.zeros((10, 10), np.uint8))
    listing = tmp_path / 'list.txt'
    listing.write_text(f'{SAMPLE / "images" / "0016E5_07959.jpg"} {small / "0016E5_07959.png"}')
    code, err = run('make', '--images', listing, '--rate', 15, '--out', out)
    assert code == 2 and 'labels are 10x10, the image is 480x360' in err
    assert not out.exists()


@pytest.mark.dds
def test_replay_through_a_running_segmentation_node(tmp_path, sample_bag, weights, capsys):
    """`semseg bag replay --no-launch-nodes` into a segmentation node already running (a
    subprocess talking DDS): sensible figures, and a recording that rclpy reads.

    (test_demo covers the replay that launches both nodes itself.)
    """
    from semseg_ros.live.bag_replayer import NodeProcess
    node = NodeProcess('segmentation_node', 'semseg_ros.nodes.segmentation_node', [
        '-r', 'image:=/camera/image_raw', '-p', f'weights:={weights}',
        '-p', f'input_width:={SIZE[0]}', '-p', f'input_height:={SIZE[1]}', '-p', 'threads:=1'],
        tmp_path / 'node.log')
    recording, figures = tmp_path / 'recording', tmp_path / 'report.json'
    try:
        code = semseg(['bag', 'replay', str(sample_bag), '--no-launch-nodes', '--wait', '60',
                       '--out', str(recording), '--report', str(figures)])
        node.check()  # still serving
    finally:
        node.stop()
    output = capsys.readouterr()
    assert code == 0, output.err[-3000:]
    assert 'frames: 8 published' in output.out
    report = json.loads(figures.read_text())
    assert report['frames_published'] == FRAMES
    assert 0 < report['frames_processed'] <= FRAMES
    assert report['frames_dropped'] == FRAMES - report['frames_processed']
    assert report['latency']['count'] > 0 and report['latency']['median_ms'] > 0
    assert report['latency']['p95_ms'] >= report['latency']['median_ms']
    assert 0.0 <= report['accuracy']['miou'] <= 1.0 and report['accuracy']['frames'] > 0
    assert report['unmatched_outputs'] == 0 and report['info']['launched'] == []
    topics = read_all(recording)
    published = [deserialize_message(raw, Image) for _, raw, _ in topics['/camera/image_raw']]
    assert [stamp_of(m) for m in published] == stamps_expected()
    masks = [deserialize_message(raw, Image) for _, raw, _ in topics[TOPICS.label_mask]]
    assert masks and all(m.encoding == 'mono8' and stamp_of(m) in stamps_expected()
                         for m in masks)
