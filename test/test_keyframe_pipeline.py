"""Segmentation node -> keyframe node end to end over real DDS, as the launch file wires them.

Both ways the launch file starts them: one process (``semseg_ros.nodes.pipeline``, one
executor) and two processes with the launch file's remappings. The segmentation
node runs an untrained MiniNet-v2-cpu at 128x64 (the wiring is under test, not the labels);
real CamVid frames go in, and the keyframe node's outputs are checked against the core on the
label masks the segmentation node published.
"""

from pathlib import Path
import signal
import time

import cv2
from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
import pytest
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from ros_testing import NodeProcess, Probe, stamp_ns, stop_all
from semseg_ros.keyframes.config import load_keyframe_config
from semseg_ros.keyframes.scoring import KeyframeScorer
from semseg_ros.messages.conversions import image_to_mono8, rgb_to_image_fields

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / 'semseg_ros' / 'data' / 'samples' / 'camvid_0016E5' / 'images'
CAMERA = '/e2e_camera/image'
FRAMES = 12
START_TIMEOUT = 90.0  # torch import and DDS discovery on two shared cores
WAIT_S = 30.0
RELIABLE = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                      reliability=ReliabilityPolicy.RELIABLE)
SEGMENTATION_PARAMETERS = ['-p', 'weights:=none', '-p', 'backend:=torch', '-p', 'threads:=1',
                           '-p', 'input_width:=128', '-p', 'input_height:=64']
KEYFRAME_PARAMETERS = ['-p', 'image_reliability:=reliable']


def _single_process(tmp_path):
    """The pipeline: both nodes in one process, wired inside."""
    arguments = ['-r', f'image:={CAMERA}', *SEGMENTATION_PARAMETERS, *KEYFRAME_PARAMETERS]
    return [NodeProcess(tmp_path, 'pipeline', arguments, 'semseg_ros.nodes.pipeline')]


def _two_processes(tmp_path):
    """The two executables with the launch file's remappings."""
    return [
        NodeProcess(tmp_path, 'segmentation', ['-r', f'image:={CAMERA}',
                                               *SEGMENTATION_PARAMETERS]),
        NodeProcess(tmp_path, 'keyframes', [
            '-r', f'image:={CAMERA}', '-r', 'label_mask:=segmentation_node/label_mask',
            '-r', 'confidence:=segmentation_node/confidence', *KEYFRAME_PARAMETERS],
            'semseg_ros.nodes.keyframe_node'),
    ]


# The outputs the probe records, by short name.
OUTPUT_TOPICS = {'label_mask': (Image, '/segmentation_node/label_mask'),
                 'scores': (DiagnosticArray, '/keyframe_node/scores'),
                 'dynamic_mask': (Image, '/keyframe_node/dynamic_mask'),
                 'keyframe': (Header, '/keyframe_node/keyframe')}


class PipelineProbe(Probe):
    """The shared probe with a camera publisher and subscriptions to both nodes' outputs."""

    def __init__(self):
        super().__init__('e2e_probe')
        self.camera = self.node.create_publisher(Image, CAMERA, RELIABLE)
        for kind, topic in OUTPUT_TOPICS.values():
            self.subscribe(kind, topic, RELIABLE)

    def send(self, stamp, image):
        """Publish a camera frame with that stamp."""
        message = Image()
        message.header.stamp.sec, message.header.stamp.nanosec = divmod(stamp, 10 ** 9)
        message.header.frame_id = 'e2e_camera'
        (message.encoding, message.height, message.width, message.step,
         message.data) = rgb_to_image_fields(image)
        self.camera.publish(message)

    def received(self, name):
        """Return stamp -> message of an output (keyframe: stamp -> header)."""
        with self._condition:
            messages = [m for _, m in self.messages[OUTPUT_TOPICS[name][1]]]
        return {stamp_ns(m if name == 'keyframe' else m.header): m for m in messages}

    def has(self, name, stamp):
        """Whether a message of that stamp arrived on an output."""
        return stamp in self.received(name)


def _wait(condition, timeout, what, processes):
    deadline = time.monotonic() + timeout
    while not condition():
        dead = [p for p in processes if p.process.poll() is not None]
        if dead:
            raise AssertionError(f'a node exited ({dead[0].process.returncode}) while waiting '
                                 f'for {what}:\n{dead[0].log()}')
        if time.monotonic() > deadline:
            raise AssertionError(f'timed out waiting for {what}')
        time.sleep(0.01)


@pytest.fixture(scope='module')
def frames():
    """FRAMES real CamVid frames at 160x120, with stamps 1/15 s apart."""
    paths = sorted(SAMPLE.glob('*.jpg'))[:FRAMES]
    images = [cv2.resize(cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB), (160, 120),
                         interpolation=cv2.INTER_AREA) for p in paths]
    return [(1000 * 10 ** 9 + i * 10 ** 9 // 15, image) for i, image in enumerate(images)]


@pytest.mark.parametrize('start', [_single_process, _two_processes],
                         ids=['single_process', 'two_processes'])
def test_camera_to_keyframes(start, frames, tmp_path):
    """Camera frames in: label masks, scores, dynamic masks and keyframes out, same stamps."""
    probe = PipelineProbe()
    processes = start(tmp_path)
    try:
        _wait(lambda: probe.camera.get_subscription_count() >= 2, START_TIMEOUT,
              'both nodes to subscribe to the camera', processes)
        # Warm-up frames until the node has matched the probe's subscriptions (it computes the
        # dynamic mask only for subscribers); then the frames under test, one at a time (the
        # segmentation node keeps only the newest frame).
        sent = []
        warm_up = frames[0][0] - 10 * 10 ** 9  # warm-up frames 1/15 s apart before them
        deadline = time.monotonic() + START_TIMEOUT
        while not any(probe.has('dynamic_mask', s) and probe.has('scores', s) for s in sent):
            assert time.monotonic() < deadline and len(sent) < 150, 'no warm-up frame came back'
            sent.append(warm_up + len(sent) * 10 ** 9 // 15)
            probe.send(sent[-1], frames[0][1])
            time.sleep(0.2)
        _wait(lambda: probe.has('scores', sent[-1]), WAIT_S, 'the last warm-up score',
              processes)
        for stamp, image in frames:
            probe.send(stamp, image)
            sent.append(stamp)
            _wait(lambda: probe.has('scores', stamp) and probe.has('dynamic_mask', stamp),
                  WAIT_S, f'the score and dynamic mask of frame {stamp}', processes)
        stamps = [s for s, _ in frames]
        scorer = KeyframeScorer(load_keyframe_config())
        for stamp in stamps:
            _wait(lambda: probe.has('label_mask', stamp), WAIT_S, 'the label mask', processes)
            label = probe.received('label_mask')[stamp]
            labels = image_to_mono8(label.encoding, label.height, label.width, label.step,
                                    label.data)
            assert labels.shape == (120, 160)
            dynamic = probe.received('dynamic_mask')[stamp]
            assert dynamic.header.frame_id == 'e2e_camera'
            mask = np.frombuffer(dynamic.data, np.uint8).reshape(120, 160)
            np.testing.assert_array_equal(mask, scorer.dynamic_mask(labels))
        config = load_keyframe_config()
        keyframes = sorted(probe.received('keyframe'))
        assert set(probe.received('scores')) <= set(sent)
        assert set(stamps) <= set(probe.received('scores'))
        assert keyframes and set(keyframes) <= set(sent)
        assert all(np.diff([sent.index(k) for k in keyframes]) >= config['min_gap_frames'])
    finally:
        try:
            stop_all(processes, [signal.SIGINT] * len(processes))
        finally:
            probe.close()
