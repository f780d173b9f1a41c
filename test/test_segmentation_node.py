"""The segmentation node over real DDS: the node runs as a subprocess, a probe node talks to it.

Real CamVid frames go in through every kind of input; the outputs are checked against the
core run in this process on the same weights (a small weights file the tests save). The node
runs a 128x64 network input and one thread so the whole module stays fast on two cores.
"""

import array
import json
from pathlib import Path
import signal
import time

import cv2
import numpy as np
import pytest
from rclpy.qos import (DurabilityPolicy, qos_profile_sensor_data, QoSProfile,
                       ReliabilityPolicy)
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import String
import torch
import yaml

from ros_testing import (image_msg, NAV2_REMAPPINGS, next_stamp, NodeProcess, Probe,
                         RELEASED_LABEL_INFO_HASH, send, stop_all, WAIT, wait_ready)
from semseg_ros.core.backends import resolve_backend
from semseg_ros.core.classes import load_class_set, mark_unlabeled, UNLABELED_ID
from semseg_ros.core.segmenter import Segmenter, SegmenterConfig
from semseg_ros.core.serving import render_overlay
from semseg_ros.core.weights import save_weights
from semseg_ros.messages import conversions
from semseg_ros.models import create_model, list_models, model_info
from semseg_ros.nodes.segmentation_node import (node_parameters, NodeConfigError,
                                                SegmentationNode)

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / 'config'
MODEL = 'mininet_v2_cpu'
NET_SIZE = (128, 64)  # network input (width, height): small, so every frame is quick
OUTPUTS = ('label_mask', 'color_mask', 'overlay', 'confidence')
RAW_NODE = '/segmentation_node'
RAW_TOPIC = '/test_camera/image'
COMPRESSED_NODE = '/robot/segmentation_node'
COMPRESSED_BASE = '/robot_camera/image'
THRESHOLD_NODE = '/thresholded'
THRESHOLD_TOPIC = '/thresholded_camera/image'
CLASSES = load_class_set('camvid')


def as_array(msg: Image) -> np.ndarray:
    """Return a mono8 or rgb8 output message as a numpy array (rows unpadded)."""
    channels = {'mono8': 1, 'rgb8': 3}[msg.encoding]
    assert msg.step == msg.width * channels
    pixels = np.frombuffer(msg.data, np.uint8)
    assert pixels.size == msg.step * msg.height
    return pixels.reshape(msg.height, msg.width, channels).squeeze(2) if channels == 1 \
        else pixels.reshape(msg.height, msg.width, 3)


# Fixtures --------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def tmp_dir(tmp_path_factory):
    """A scratch folder for weights, logs and the ONNX cache."""
    return tmp_path_factory.mktemp('segmentation_node')


@pytest.fixture(scope='module')
def weights_file(tmp_dir):
    """A weights file of a seeded (untrained) network, so node and test run the same one."""
    torch.manual_seed(0)
    network = create_model(MODEL, num_classes=CLASSES.num_classes)
    return save_weights(tmp_dir / f'{MODEL}_test.pt', network, MODEL, CLASSES.num_classes,
                        'camvid')


@pytest.fixture(scope='module')
def segmenter(weights_file):
    """The core, in this process, with the node's configuration: the reference outputs."""
    torch.set_num_threads(1)
    return Segmenter(SegmenterConfig(model=MODEL, weights=str(weights_file), backend='torch',
                                     input_width=NET_SIZE[0], input_height=NET_SIZE[1],
                                     threads=1))


@pytest.fixture(scope='module')
def frame(samples):
    """The first shipped CamVid validation frame, RGB, shrunk from 480x360 to 320x240.

    Fast DDS moves samples up to its 0.5 MB shared-memory segment in one piece; larger
    best-effort samples go out as UDP fragments that a loaded machine loses (see
    config/fastdds_large_images.xml), which is not what these tests are about.
    """
    path = samples / (samples / 'val.txt').read_text().split()[0]
    rgb = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return cv2.resize(rgb, (320, 240), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope='module')
def threshold(segmenter, frame):
    """A threshold that leaves some of the frame's pixels unlabelled and some labelled."""
    confidence = segmenter.segment(frame, with_confidence=True).confidence
    # Half-way between two confidence levels: no pixel lies on it, so a level of rounding
    # noise between this process and the node moves few pixels across.
    return (float(np.median(confidence)) + 0.5) / 255.0


@pytest.fixture(scope='module')
def probe():
    """The probe node, for the whole module."""
    probe = Probe('segmentation_test_probe')
    yield probe
    probe.close()


def common_args(weights_file):
    """Parameters every test node shares: the test weights, torch, a small input."""
    return ['-p', f'weights:={weights_file}', '-p', 'backend:=torch',
            '-p', f'input_width:={NET_SIZE[0]}', '-p', f'input_height:={NET_SIZE[1]}',
            '-p', 'threads:=1']


def config_node_args(config: str, weights_file) -> list:
    """Arguments of a node started from a config file, renamed after it."""
    name = config.removesuffix('.yaml')
    args = ['--params-file', str(CONFIG_DIR / config), '-r', f'__node:={name}',
            '-r', f'image:=/{name}/image', '-p', 'threads:=1']
    if config == 'cpu_robot.yaml':
        return args  # as on a robot: the shipped weights and their pre-built int8 graph
    # GPU configs: their networks are trained separately; a small input keeps start-up quick.
    return args + ['-p', 'weights:=none', '-p', 'input_width:=160', '-p', 'input_height:=120']


@pytest.fixture(scope='module')
def node_processes(tmp_dir, weights_file, threshold):
    """Start every node subprocess of the module at once: start-up dominates the run time.

    The raw-image and compressed-image nodes serve most tests; the config nodes, a node with a
    bad parameter, one with a confidence threshold and one without vision_msgs are checked by
    their own tests.
    """
    hidden = tmp_dir / 'no_vision_msgs' / 'vision_msgs'
    hidden.mkdir(parents=True)
    (hidden / '__init__.py').write_text(
        "raise ImportError(\"No module named 'vision_msgs' (hidden by the test)\")\n")
    nodes = {
        'raw': NodeProcess(tmp_dir, 'raw_node', [
            *common_args(weights_file), '-p', 'publish_confidence:=true',
            '-r', f'image:={RAW_TOPIC}']),
        'compressed': NodeProcess(tmp_dir, 'compressed_node', [
            *common_args(weights_file), '-p', 'input_transport:=compressed',
            '-p', 'qos_reliability:=reliable', '-p', 'output_resolution:=network',
            '-r', '__ns:=/robot', '-r', f'image:={COMPRESSED_BASE}']),
        'bad_model': NodeProcess(tmp_dir, 'bad_model', [
            '-r', '__node:=bad_model', '-p', 'model:=segformer']),
        'thresholded': NodeProcess(tmp_dir, 'thresholded', [  # as the Nav2 recipe runs it
            *common_args(weights_file), '-p', f'threshold:={threshold}',
            '-p', 'publish_confidence:=true', '-r', f'__node:={THRESHOLD_NODE[1:]}',
            '-r', f'image:={THRESHOLD_TOPIC}',
            *(arg for pair in NAV2_REMAPPINGS.items() for arg in ('-r', ':='.join(pair)))]),
        'no_vision_msgs': NodeProcess(tmp_dir, 'no_vision_msgs', [
            *common_args(weights_file), '-r', '__node:=no_vision_msgs'],
            python_path=[hidden.parent]),
    }
    for config in CONFIGS:
        nodes[config] = NodeProcess(tmp_dir, config.removesuffix('.yaml'),
                                    config_node_args(config, weights_file))
    yield nodes
    stop_all([nodes['raw'], nodes['compressed']], [signal.SIGINT, signal.SIGTERM])
    for node in nodes.values():  # those a deselected test did not stop
        node.signal(signal.SIGTERM)
        node.wait_exit()


@pytest.fixture(scope='module')
def raw_node(probe, node_processes):
    """The raw-image node, ready, with the probe listening to all its outputs."""
    node = node_processes['raw']
    wait_ready(probe, node, RAW_NODE)
    for name in OUTPUTS:
        probe.subscribe(Image, f'{RAW_NODE}/{name}')
    return node


@pytest.fixture(scope='module')
def camera(probe, raw_node):
    """A sensor-data (best-effort) camera publisher matched with the raw node."""
    return probe.publisher(Image, RAW_TOPIC, qos_profile_sensor_data)


@pytest.fixture(scope='module')
def compressed_node(probe, node_processes):
    """The compressed-image node (namespace /robot, reliable QoS, network resolution)."""
    node = node_processes['compressed']
    wait_ready(probe, node, COMPRESSED_NODE)
    for name in ('label_mask', 'color_mask'):
        probe.subscribe(Image, f'{COMPRESSED_NODE}/{name}')
    return node


# Outputs ---------------------------------------------------------------------------------

def check_masks(outputs, msg, rgb, segmenter, size, alpha=0.5):
    """Assert the outputs of one frame: encodings, size, header, labels, palette, overlay."""
    width, height = size
    for name, out in outputs.items():
        assert out.header.stamp == msg.header.stamp, name
        assert out.header.frame_id == msg.header.frame_id, name
        assert (out.width, out.height) == (width, height), name
        assert out.encoding == ('rgb8' if name in ('color_mask', 'overlay') else 'mono8'), name
    labels = as_array(outputs['label_mask'])
    assert labels.max() < CLASSES.num_classes
    resolution = 'input' if (width, height) == (rgb.shape[1], rgb.shape[0]) else 'network'
    expected = segmenter.segment(rgb, resolution, with_confidence=True)
    # Same weights and input; only float rounding on another thread count may differ.
    assert np.mean(labels == expected.labels) > 0.98
    if 'color_mask' in outputs:
        colors = as_array(outputs['color_mask'])
        np.testing.assert_array_equal(colors, CLASSES.lookup_table()[labels])
    if 'overlay' in outputs:
        blend = render_overlay(rgb, CLASSES.lookup_table()[labels], alpha)
        assert np.abs(as_array(outputs['overlay']).astype(int) - blend).max() <= 1
    if 'confidence' in outputs:
        confidence = as_array(outputs['confidence'])
        assert confidence.min() >= 255 // CLASSES.num_classes - 1
        assert np.mean(np.abs(confidence.astype(int) - expected.confidence) <= 2) > 0.98


def padded(fields, extra: int):
    """Return rgb8 fields with ``extra`` bytes of padding at the end of every row."""
    encoding, height, width, step, data = fields
    rows = np.frombuffer(data, np.uint8).reshape(height, step)
    out = np.zeros((height, step + extra), np.uint8)
    out[:, :step] = rows
    return encoding, height, width, step + extra, array.array('B', out.tobytes())


@pytest.mark.parametrize('encoding', ['rgb8', 'rgb8_padded', 'bgr8', 'bgra8', 'mono8',
                                      'yuv422', 'yuv422_yuy2', 'bayer_rggb8', 'bayer_grbg8'])
def test_every_encoding_gives_all_outputs(probe, raw_node, camera, frame, segmenter, encoding):
    """Label, colour, overlay and confidence masks at input size, with the input's header."""
    if encoding == 'rgb8_padded':
        fields = padded(conversions.rgb_to_image_fields(frame, 'rgb8'), 64)
    else:
        fields = conversions.rgb_to_image_fields(frame, encoding)
    msg = image_msg(fields, frame_id=f'camera_{encoding}')
    outputs = send(probe, camera, msg, RAW_NODE, OUTPUTS)
    # The reference runs on what the conversion makes of the same message.
    rgb = conversions.image_to_rgb(*fields)
    check_masks(outputs, msg, rgb, segmenter, (frame.shape[1], frame.shape[0]))


def test_reliable_camera_publisher_works(probe, raw_node, frame, segmenter):
    """The best-effort subscription also receives from a reliable publisher."""
    reliable = probe.publisher(Image, RAW_TOPIC, QoSProfile(
        depth=1, reliability=ReliabilityPolicy.RELIABLE))
    msg = image_msg(conversions.rgb_to_image_fields(frame, 'rgb8'))
    outputs = send(probe, reliable, msg, RAW_NODE, ('label_mask',))
    check_masks(outputs, msg, frame, segmenter, (frame.shape[1], frame.shape[0]))
    probe.node.destroy_publisher(reliable)


def test_class_info_reaches_a_late_subscriber(probe, raw_node):
    """class_info is latched: a subscriber created long after start-up gets it."""
    topic = f'{RAW_NODE}/class_info'
    received = []
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    subscription = probe.node.create_subscription(String, topic, received.append, latched)
    probe.wait_for(lambda: received, WAIT, 'late class_info')
    probe.node.destroy_subscription(subscription)
    info = json.loads(received[0].data)
    assert info['model'] == MODEL
    assert info['name'] == 'camvid'
    assert [c['name'] for c in info['classes']] == list(CLASSES.names)
    assert [c['color'] for c in info['classes']] == CLASSES.colors.tolist()
    assert info['ignore_index'] == CLASSES.ignore_index


def test_label_info_is_the_standard_type_latched(probe, node_processes, threshold):
    """~/label_info: vision_msgs/LabelInfo of the released type, transient-local, ids and names.

    The subscriber uses the generated vision_msgs and joins late; the publisher's endpoint
    advertises the released package's RIHS01 type hash, so no look-alike type would pass.
    """
    vision_msgs = pytest.importorskip('vision_msgs.msg',
                                      reason='vision_msgs is not installed (make generates it)')
    wait_ready(probe, node_processes['thresholded'], THRESHOLD_NODE)
    topic = NAV2_REMAPPINGS['~/label_info']  # remapped as in the Nav2 recipe
    received = []
    latched = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)  # as Nav2's layer asks
    subscription = probe.node.create_subscription(vision_msgs.LabelInfo, topic,
                                                  received.append, latched)
    probe.wait_for(lambda: received, WAIT, 'late label_info')
    probe.node.destroy_subscription(subscription)
    [info] = received
    assert [(c.class_id, c.class_name) for c in info.class_map] == \
        list(enumerate(CLASSES.names))
    assert info.threshold == pytest.approx(threshold)
    assert info.header.stamp.sec > 0
    [endpoint] = probe.node.get_publishers_info_by_topic(topic)
    assert endpoint.topic_type == 'vision_msgs/msg/LabelInfo'
    assert str(endpoint.topic_type_hash) == RELEASED_LABEL_INFO_HASH
    assert endpoint.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL
    assert endpoint.qos_profile.reliability == ReliabilityPolicy.RELIABLE
    assert probe.diagnostics(THRESHOLD_NODE, time.monotonic())['label_info'] == 'published'


def test_threshold_marks_unconfident_pixels_unlabelled(probe, node_processes, frame,
                                                       segmenter, threshold):
    """Under the threshold ~/label_mask holds 255 (LabelInfo's unlabelled), drawn in void.

    Mask and confidence arrive under the Nav2 recipe's names, with the camera's header.
    """
    wait_ready(probe, node_processes['thresholded'], THRESHOLD_NODE)
    for name in ('~/label_mask', '~/confidence'):  # best effort, as Nav2's layer subscribes
        probe.subscribe(Image, NAV2_REMAPPINGS[name], qos_profile_sensor_data)
    probe.subscribe(Image, f'{THRESHOLD_NODE}/color_mask')
    camera = probe.publisher(Image, THRESHOLD_TOPIC, qos_profile_sensor_data)
    msg = image_msg(conversions.rgb_to_image_fields(frame, 'rgb8'))
    outputs = send(probe, camera, msg, '/segmentation', ('mask', 'confidence'))
    probe.node.destroy_publisher(camera)
    labels = as_array(outputs['mask'])
    assert outputs['confidence'].header == outputs['mask'].header == msg.header
    expected = segmenter.segment(frame, with_confidence=True)
    reference = mark_unlabeled(expected.labels, expected.confidence, threshold)
    assert 0.2 < np.mean(reference == UNLABELED_ID) < 0.8
    # Pixels at the threshold may go either way with another thread count's rounding.
    assert np.mean(labels == reference) > 0.95
    assert set(np.unique(labels)) <= set(range(CLASSES.num_classes)) | {UNLABELED_ID}
    color = probe.wait_for(lambda: probe.stamped(f'{THRESHOLD_NODE}/color_mask',
                                                 msg.header.stamp), WAIT, 'color_mask')[0]
    np.testing.assert_array_equal(as_array(color), CLASSES.lookup_table()[labels])


def test_starts_without_vision_msgs_with_a_warning(probe, node_processes):
    """Where vision_msgs is missing the node warns, serves, and still latches class_info."""
    node = node_processes['no_vision_msgs']
    info = wait_ready(probe, node, '/no_vision_msgs')
    assert [c['name'] for c in info['classes']] == list(CLASSES.names)
    log = node.wait_for_log('is not published')
    assert '~/label_info (vision_msgs/LabelInfo) is not published: No module named ' \
        "'vision_msgs'" in log
    assert not probe.node.get_publishers_info_by_topic('/no_vision_msgs/label_info')
    values = probe.diagnostics('/no_vision_msgs', time.monotonic())
    assert values['label_info'] == 'not published: vision_msgs missing'
    node.signal(signal.SIGINT)
    assert node.wait_exit() == 0


def test_dynamic_parameters(probe, raw_node, camera, frame, segmenter):
    """output_resolution and overlay_alpha change at run time; invalid values are refused."""
    results = probe.set_parameters(RAW_NODE, output_resolution='network', overlay_alpha=0.25)
    assert all(r.successful for r in results), results
    try:
        msg = image_msg(conversions.rgb_to_image_fields(frame, 'rgb8'))
        outputs = send(probe, camera, msg, RAW_NODE, OUTPUTS)
        stride = model_info(MODEL).output_stride
        check_masks(outputs, msg, frame, segmenter,
                    (NET_SIZE[0] // stride, NET_SIZE[1] // stride), alpha=0.25)
    finally:
        results = probe.set_parameters(RAW_NODE, output_resolution='input', overlay_alpha=0.5)
        assert all(r.successful for r in results), results
    refused = probe.set_parameters(RAW_NODE, output_resolution='half')[0]
    assert not refused.successful and 'input, network' in refused.reason
    refused = probe.set_parameters(RAW_NODE, overlay_alpha=1.5)[0]
    assert not refused.successful
    # Real-valued parameters take integers (dynamic typing), so the node checks the range.
    refused = probe.set_parameters(RAW_NODE, overlay_alpha=2)[0]
    assert not refused.successful and 'overlay_alpha: 2 is outside [0, 1]' in refused.reason
    refused = probe.set_parameters(RAW_NODE, overlay_alpha='opaque')[0]
    assert not refused.successful and "'opaque' is not a number" in refused.reason
    refused = probe.set_parameters(RAW_NODE, model='mininet_v2')[0]
    assert not refused.successful and 'read-only' in refused.reason


def test_only_subscribed_outputs_are_computed(probe, raw_node, camera, frame):
    """Outputs without subscribers are not computed; with none at all, nothing is done."""
    fields = conversions.rgb_to_image_fields(frame, 'rgb8')

    def publish_frame():
        camera.publish(image_msg(fields))

    def outputs_become(expected):
        return probe.diagnostics(RAW_NODE, time.monotonic(),
                                 lambda v: v['outputs'] == expected, timeout=30,
                                 tick=publish_frame)

    listening = [s for s in probe.node.subscriptions if s.topic_name.startswith(RAW_NODE + '/')
                 and not s.topic_name.endswith('class_info')]
    for subscription in listening:
        probe.node.destroy_subscription(subscription)
    try:
        idle_before = int(probe.diagnostics(RAW_NODE, time.monotonic())['frames_idle'])
        probe.diagnostics(RAW_NODE, time.monotonic(),
                          lambda v: int(v['frames_idle']) > idle_before, timeout=30,
                          tick=publish_frame)
        only_labels = probe.subscribe(Image, f'{RAW_NODE}/label_mask')
        values = outputs_become('label_mask')
        # The node reports the DDS matching behind that choice.
        assert values['matched_subscribers/label_mask'] == '1'
        assert values['matched_subscribers/color_mask'] == '0'
        assert int(values['matched_publishers/image']) >= 1
        probe.node.destroy_subscription(only_labels)
    finally:
        for name in OUTPUTS:
            probe.subscribe(Image, f'{RAW_NODE}/{name}')
    outputs_become(', '.join(OUTPUTS))
    # Confidence still has a subscriber but is switched off: it is not computed.
    assert all(r.successful for r in probe.set_parameters(RAW_NODE, publish_confidence=False))
    try:
        outputs_become('label_mask, color_mask, overlay')
    finally:
        results = probe.set_parameters(RAW_NODE, publish_confidence=True)
        assert all(r.successful for r in results)


# Bad input -------------------------------------------------------------------------------

def bad_frames(frame):
    """(label, message, text the node's error names) for each kind of unreadable frame."""
    # Small frames: only the last one may exceed the test's max_image_pixels.
    encoding, height, width, step, data = conversions.rgb_to_image_fields(
        frame[:96, :96].copy(), 'rgb8')
    return [
        ('unsupported encoding', image_msg(('32FC1', height, width, width * 4, data)),
         '32FC1'),
        ('short data', image_msg((encoding, height, width, step, data[:step * 10])),
         'expected at least step*height'),
        ('step too small', image_msg((encoding, height, width, width, data)), 'step'),
        ('zero width', image_msg((encoding, height, 0, 0, array.array('B'))),
         'must be at least 1'),
        ('too many pixels', image_msg(conversions.rgb_to_image_fields(
            np.zeros((2, 2048 * 4, 3), np.uint8))), 'max_pixels'),
    ]


def test_bad_frames_are_dropped_and_the_next_one_served(probe, raw_node, camera, frame,
                                                        segmenter):
    """Each bad frame: an error naming the problem, counted, and the next frame is served."""
    assert all(r.successful for r in probe.set_parameters(RAW_NODE, max_image_pixels=10000))
    try:
        before = probe.diagnostics(RAW_NODE, time.monotonic())
        for label, bad, text in bad_frames(frame):
            errors_before = raw_node.log().count('dropped a frame')
            deadline = time.monotonic() + WAIT
            while raw_node.log().count('dropped a frame') == errors_before:
                assert time.monotonic() < deadline, f'{label}: no error logged\n{raw_node.log()}'
                camera.publish(bad)
                time.sleep(0.3)
            report = raw_node.log().split('dropped a frame')[-1].splitlines()[0]
            assert text in report, f'{label}: {report}'
            good = image_msg(conversions.rgb_to_image_fields(frame[:96, :96].copy(), 'rgb8'))
            outputs = send(probe, camera, good, RAW_NODE, ('label_mask',))
            check_masks(outputs, good, frame[:96, :96].copy(), segmenter, (96, 96))
            assert not probe.stamped(f'{RAW_NODE}/label_mask', bad.header.stamp), label
        after = probe.diagnostics(RAW_NODE, time.monotonic(), lambda v: int(
            v['frames_bad']) >= int(before['frames_bad']) + 5)
        assert after['frames_failed'] == before['frames_failed']
    finally:
        assert all(r.successful for r in probe.set_parameters(
            RAW_NODE, max_image_pixels=4096 * 4096))
    assert raw_node.process.poll() is None, 'the node died'


def test_a_burst_is_dropped_not_queued(probe, raw_node, frame):
    """Frames faster than inference are dropped and counted; outputs stop with the burst."""
    reliable = probe.publisher(Image, RAW_TOPIC, QoSProfile(
        depth=1, reliability=ReliabilityPolicy.RELIABLE))
    before = probe.diagnostics(RAW_NODE, time.monotonic())
    fields = conversions.rgb_to_image_fields(frame, 'rgb8')
    burst = [image_msg(fields, frame_id='burst') for _ in range(60)]
    for msg in burst:
        reliable.publish(msg)
        # 500 Hz: far faster than the node serves a frame, yet spaced enough that the node's
        # depth-1 subscription hands most frames to the node (which counts what it replaces)
        # instead of DDS overwriting them unseen in its own reader queue.
        time.sleep(0.002)
    last = burst[-1]
    # The newest frame is never dropped: its masks arrive.
    probe.wait_for(lambda: probe.stamped(f'{RAW_NODE}/label_mask', last.header.stamp),
                   WAIT, 'label mask of the last frame of the burst')
    after_last = time.monotonic()
    time.sleep(1.5)
    topic = f'{RAW_NODE}/label_mask'
    stamps = {(m.header.stamp.sec, m.header.stamp.nanosec) for m in burst}
    served = [(t, m) for t, m in probe.messages[topic] if m.header.frame_id == 'burst'
              and (m.header.stamp.sec, m.header.stamp.nanosec) in stamps]
    assert len(served) < len(burst)
    # Nothing was queued behind the newest frame: its mask is the last of the burst to come.
    assert (served[-1][1].header.stamp.sec, served[-1][1].header.stamp.nanosec) == \
        (last.header.stamp.sec, last.header.stamp.nanosec), 'outputs kept coming after the burst'
    after = probe.diagnostics(RAW_NODE, after_last + 0.5)
    dropped = int(after['frames_dropped']) - int(before['frames_dropped'])
    assert dropped > 0
    assert dropped <= len(burst) - len(served)
    probe.node.destroy_publisher(reliable)


def test_diagnostics_report_rates_latency_and_runtime(probe, raw_node, camera, frame):
    """/diagnostics carries rates, counters, latency, stage times, backend and model."""
    fields = conversions.rgb_to_image_fields(frame, 'rgb8')
    values = probe.diagnostics(RAW_NODE, time.monotonic(),
                               lambda v: float(v['processed_rate_hz']) > 0,
                               tick=lambda: camera.publish(image_msg(fields)))
    for key in ('input_rate_hz', 'frames_received', 'frames_processed', 'frames_dropped',
                'frames_bad', 'latency_median_ms', 'latency_p95_ms', 'conversion_ms',
                'preprocess_ms', 'inference_ms', 'postprocess_ms', 'publish_ms'):
        assert float(values[key]) >= 0, key
    assert float(values['latency_p95_ms']) >= float(values['latency_median_ms']) > 0
    assert values['model'] == MODEL and values['backend'] == 'torch'
    assert values['providers'] == 'cpu' and values['input_size'] == '128x64'
    assert int(values['matched_publishers/image']) >= 1
    assert all(int(values[f'matched_subscribers/{name}']) >= 1 for name in OUTPUTS)
    assert values['level'] in (b'\x00', 0)


# Compressed input ------------------------------------------------------------------------

@pytest.mark.parametrize('codec,format_field', [
    ('jpeg', None), ('png', None), ('jpeg', 'jpeg'), ('png', 'png')])
def test_compressed_input(probe, compressed_node, frame, segmenter, codec, format_field):
    """jpeg and png, image_transport format strings and plain ones, at network size."""
    fmt, data = conversions.encode_compressed(frame, codec)
    msg = CompressedImage(format=format_field or fmt, data=array.array('B', data))
    msg.header.stamp, msg.header.frame_id = next_stamp(), f'camera_{codec}'
    camera = probe.publisher(CompressedImage, COMPRESSED_BASE + '/compressed',
                             QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
    outputs = send(probe, camera, msg, COMPRESSED_NODE, ('label_mask', 'color_mask'))
    stride = model_info(MODEL).output_stride
    rgb = conversions.compressed_to_rgb(msg.format, msg.data)
    check_masks(outputs, msg, rgb, segmenter, (NET_SIZE[0] // stride, NET_SIZE[1] // stride))
    probe.node.destroy_publisher(camera)


def test_corrupt_compressed_payload_is_survived(probe, compressed_node, frame, segmenter):
    """A truncated jpeg is dropped with an error; the next frame is served."""
    fmt, data = conversions.encode_compressed(frame, 'jpeg')
    camera = probe.publisher(CompressedImage, COMPRESSED_BASE + '/compressed',
                             QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
    for corrupt in (data[:200], b'\x00' * 64):
        bad = CompressedImage(format=fmt, data=array.array('B', corrupt))
        bad.header.stamp = next_stamp()
        errors = compressed_node.log().count('dropped a frame')
        camera.publish(bad)
        deadline = time.monotonic() + WAIT
        while compressed_node.log().count('dropped a frame') == errors:
            assert time.monotonic() < deadline, compressed_node.log()
            time.sleep(0.1)
        good = CompressedImage(format=fmt, data=array.array('B', data))
        good.header.stamp = next_stamp()
        send(probe, camera, good, COMPRESSED_NODE, ('label_mask',))
        assert not probe.stamped(f'{COMPRESSED_NODE}/label_mask', bad.header.stamp)
    probe.node.destroy_publisher(camera)


# Configuration ---------------------------------------------------------------------------

CONFIGS = ['cpu_robot.yaml', 'jetson_enet.yaml', 'jetson_rdsnet.yaml', 'gpu_mininet_v2.yaml']


@pytest.mark.parametrize('config', CONFIGS)
def test_config_files_hold_valid_parameters(config):
    """Every key is a node parameter of the right type and, for enumerations, a valid value."""
    specs = node_parameters()
    content = yaml.safe_load((CONFIG_DIR / config).read_text())
    parameters = content['/**']['ros__parameters']
    for name, value in parameters.items():
        assert name in specs, f'{config}: unknown parameter {name}'
        default, spec = specs[name]
        assert type(value) is type(default), f'{config}: {name}: {value!r}'
        if spec.choices and name != 'model':
            assert value in spec.choices, f'{config}: {name}: {value!r}'
    # The fastest backend each target has: auto on the CPU (OpenVINO's int8 where installed,
    # else ONNX Runtime), ONNX Runtime with TensorRT on a Jetson, PyTorch's CUDA build where a
    # GPU is free.
    expected = {'cpu_robot.yaml': 'auto', 'gpu_mininet_v2.yaml': 'torch'}
    assert parameters['backend'] == expected.get(config, 'onnxruntime')
    if config != 'cpu_robot.yaml':
        assert parameters['device'] == 'cuda' and parameters['fp16'] is True


def test_config_files_start_the_node(probe, node_processes):
    """The four configs load with --params-file; the GPU ones fall back to the CPU here.

    Also the signals: SIGTERM and SIGINT end the nodes with exit code 0, no traceback.
    """
    nodes = {config.removesuffix('.yaml'): node_processes[config] for config in CONFIGS}
    try:
        logs = {name: node.wait_for_log('segmenting ') for name, node in nodes.items()}
        # backend auto: OpenVINO's int8 where it is installed, else ONNX Runtime's.
        runtime = ('openvino [openvino ' if resolve_backend('auto', 'cpu', 'int8') == 'openvino'
                   else 'onnxruntime [CPUExecutionProvider')
        assert f'on {runtime}' in logs['cpu_robot'], logs['cpu_robot']
        assert '] at 512x256 int8, weights ' in logs['cpu_robot'], logs['cpu_robot']
        for name in ('jetson_enet', 'jetson_rdsnet'):
            assert 'running on the CPU' in logs[name], logs[name]
            assert '[CPUExecutionProvider]' in logs[name], logs[name]
        assert logs['gpu_mininet_v2'].count('running on the CPU') == 1, logs['gpu_mininet_v2']
        assert 'with mininet_v2 on torch [cpu] at 160x120' in logs['gpu_mininet_v2'], \
            logs['gpu_mininet_v2']
        # The CPU robot's node serves a frame through its int8 graph.
        probe.subscribe(Image, '/cpu_robot/label_mask')
        camera = probe.publisher(Image, '/cpu_robot/image', qos_profile_sensor_data)
        msg = image_msg(conversions.rgb_to_image_fields(np.full((120, 160, 3), 90, np.uint8)))
        outputs = send(probe, camera, msg, '/cpu_robot', ('label_mask',), timeout=60)
        assert (outputs['label_mask'].width, outputs['label_mask'].height) == (160, 120)
        probe.node.destroy_publisher(camera)
    finally:
        stop_all(list(nodes.values()),
                 [signal.SIGTERM, signal.SIGINT, signal.SIGTERM, signal.SIGINT])


def test_bad_parameter_exits_with_one_fatal_line(node_processes):
    """From the command line: exit code 2, one fatal line listing the models, no traceback."""
    node = node_processes['bad_model']
    code = node.wait_exit()
    log = node.log()
    assert code == 2, log
    fatal = [line for line in log.splitlines() if '[FATAL]' in line]
    assert len(fatal) == 1, log
    assert "invalid parameter model: 'segformer'; valid values: " + ', '.join(
        list_models()) in fatal[0]
    assert 'Traceback' not in log, log


@pytest.fixture(scope='module')
def other_model_weights(tmp_dir):
    """Weights of mininet_v2: valid, but not for mininet_v2_cpu."""
    network = create_model('mininet_v2', num_classes=CLASSES.num_classes)
    return save_weights(tmp_dir / 'mininet_v2_test.pt', network, 'mininet_v2',
                        CLASSES.num_classes, 'camvid')


BAD_PARAMETERS = [
    ('model:=segformer', 'valid values: ' + ', '.join(list_models())),
    ('backend:=tensorflow', 'valid values: torch, onnxruntime'),
    ('device:=tpu', 'valid values: cpu, cuda'),
    ('input_transport:=theora', 'valid values: raw, compressed'),
    ('qos_reliability:=sometimes', 'valid values: best_effort, reliable'),
    ('output_resolution:=half', 'valid values: input, network'),
    ('class_set:=pascal', "unknown class set 'pascal'; shipped class sets: camvid"),
    ('weights:=/nonexistent/weights.pt', 'weights file not found: /nonexistent/weights.pt'),
    ('weights:=OTHER_MODEL', "weights are for model 'mininet_v2', expected 'mininet_v2_cpu'"),
    ('input_width:=100', 'multiples of 8'),
    ('overlay_alpha:=1.5', 'overlay_alpha out of range'),
    ('overlay_alpha:=2', 'invalid parameter overlay_alpha: 2 is outside [0, 1]'),
    ('overlay_alpha:=opaque', "invalid parameter overlay_alpha: 'opaque' is not a number"),
    ('threads:=-1', 'threads out of range'),
    ('precision:=int4', 'valid values: fp32, int8'),
    ('precision:=int8', 'precision int8 runs only on the onnxruntime or openvino backend'),
]


@pytest.mark.parametrize('argument,expected', BAD_PARAMETERS,
                         ids=[argument for argument, _ in BAD_PARAMETERS])
def test_bad_parameter_is_refused_with_a_clear_message(probe, other_model_weights, argument,
                                                       expected):
    """Each invalid value stops the node with a message naming it (and the valid values)."""
    argument = argument.replace('OTHER_MODEL', str(other_model_weights))
    name = argument.split(':=')[0]
    with pytest.raises(NodeConfigError) as refused:
        SegmentationNode(f'refused_{name}', context=probe.context, cli_args=[
            '--ros-args', '-p', 'weights:=none', '-p', 'backend:=torch', '-p', argument])
    assert expected in str(refused.value)


def test_missing_shipped_weights_are_named(probe, monkeypatch, tmp_path):
    """The default weights: shipped, for a model that has none, says what to do."""
    from semseg_ros.core import resources
    monkeypatch.setattr(resources, 'weights_dir', lambda: tmp_path)  # a package without any
    with pytest.raises(NodeConfigError) as refused:
        SegmentationNode('refused_shipped', context=probe.context, cli_args=[
            '--ros-args', '-p', 'model:=enet', '-p', 'backend:=torch'])
    assert 'no shipped weights for enet' in str(refused.value)
    assert 'semseg train' in str(refused.value)
