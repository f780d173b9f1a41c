"""The keyframe node with real rclpy over real DDS, fed real CamVid labels and images.

The node runs in this process beside a probe node on a SingleThreadedExecutor (fast and
deterministic to inspect); its start-up failures and shutdown are checked on the installed
entry point, as a subprocess. Expected scores and keyframes come from the core
(KeyframeScorer, KeyframePolicy) on the same frames.
"""

from pathlib import Path
import signal
import threading
import time

import cv2
from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from ros_testing import NodeProcess, spin_until_shutdown, stamp_ns, stop_all
from semseg_ros.keyframes.config import load_keyframe_config
from semseg_ros.keyframes.policy import KeyframePolicy
from semseg_ros.keyframes.scoring import KeyframeScorer
from semseg_ros.messages.conversions import mono8_to_image_fields, rgb_to_image_fields
from semseg_ros.nodes.keyframe_node import (class_weight_parameter, KEYFRAME_PARAMETERS,
                                            KeyframeNode)

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / 'semseg_ros' / 'data' / 'samples' / 'camvid_0016E5'
FRAMES = 36
# The score-window rule (visual overlap off) with gaps for a 15-30 Hz camera.
WINDOW_RULE = {'min_shared_features': 0, 'min_gap_frames': 5, 'max_gap_frames': 60,
               'min_gap_s': 0.2, 'max_gap_s': 4.0, 'window_frames': 10}
WAIT_S = 20.0
RELIABLE = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                      reliability=ReliabilityPolicy.RELIABLE)

KEYFRAME_NODE = 'semseg_ros.nodes.keyframe_node'


@pytest.fixture(scope='module')
def sequence():
    """The first FRAMES frames of the bundled 0016E5 sequence: (stamp ns, RGB, labels)."""
    frames = []
    for label_path in sorted((SAMPLE / 'labels').glob('*.png'))[:FRAMES]:
        bgr = cv2.imread(str(SAMPLE / 'images' / (label_path.stem + '.jpg')))
        labels = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)
        number = int(label_path.stem.split('_')[1])
        frames.append((round(number / 30 * 1e9), cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), labels))
    assert len(frames) == FRAMES
    return frames


def _header(stamp: int, frame_id: str = 'camera') -> Header:
    header = Header(frame_id=frame_id)
    header.stamp.sec, header.stamp.nanosec = divmod(stamp, 1_000_000_000)
    return header


def label_message(stamp: int, labels: np.ndarray, encoding: str = 'mono8') -> Image:
    """A label mask message (the encoding may be set to a wrong one on purpose)."""
    message = Image(header=_header(stamp))
    message.encoding, message.height, message.width, message.step, message.data = \
        mono8_to_image_fields(labels)
    message.encoding = encoding
    return message


def image_message(stamp: int, rgb: np.ndarray) -> Image:
    """A camera image message (rgb8)."""
    message = Image(header=_header(stamp))
    message.encoding, message.height, message.width, message.step, message.data = \
        rgb_to_image_fields(rgb, 'rgb8')
    return message


class Harness:
    """A keyframe node and a probe node on one executor, in their own rclpy context."""

    def __init__(self, name: str, **parameters):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        overrides = [Parameter(k, value=v) for k, v in {
            'image_reliability': 'reliable', 'diagnostics_period': 0.2,
            # Off unless a test turns it on: a slow test run must not flush a sequence.
            'idle_flush_s': 0.0, **parameters}.items()]
        self.node = KeyframeNode(name, context=self.context, parameter_overrides=overrides)
        self.probe = rclpy.create_node(f'{name}_probe', context=self.context)
        self.lock = threading.Lock()
        self.received = {'scores': [], 'keyframe': [], 'keyframe_image': [],
                         'dynamic_mask': [], 'diagnostics': []}
        self.label_pub = self.probe.create_publisher(Image, 'label_mask', RELIABLE)
        self.image_pub = self.probe.create_publisher(Image, 'image', RELIABLE)
        for topic, kind in (('scores', DiagnosticArray), ('keyframe', Header),
                            ('keyframe_image', Image), ('dynamic_mask', Image)):
            self.probe.create_subscription(kind, f'/{name}/{topic}', self._keep(topic),
                                           RELIABLE)
        self.probe.create_subscription(DiagnosticArray, '/diagnostics',
                                       self._keep('diagnostics'), 10)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.probe)
        self.thread = threading.Thread(
            target=spin_until_shutdown, args=(self.executor,), daemon=True)
        self.thread.start()
        publishers = [self.label_pub] + [self.image_pub] * self.node.use_image
        try:
            self.wait_for(lambda: all(p.get_subscription_count() for p in publishers)
                          and self.node._dynamic_pub.get_subscription_count() > 0
                          and self.node._scores_pub.get_subscription_count() > 0,
                          'discovery between the probe and the node')
        except AssertionError:
            self.close()
            raise

    def _keep(self, topic):
        def keep(message):
            with self.lock:
                self.received[topic].append(message)
        return keep

    def messages(self, topic):
        """Return a copy of what arrived on a topic so far."""
        with self.lock:
            return list(self.received[topic])

    def wait_for(self, condition, what: str) -> None:
        """Wait until condition() holds; fail naming what did not happen."""
        deadline = time.monotonic() + WAIT_S
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f'timed out waiting for {what}')
            time.sleep(0.005)

    def score_stamps(self):
        """Return the stamps of the received score messages, in arrival order."""
        return [stamp_ns(m.header) for m in self.messages('scores')]

    def send_frame(self, stamp: int, rgb: np.ndarray, labels: np.ndarray) -> None:
        """Publish a matching image and label mask and wait for the frame's score."""
        self.image_pub.publish(image_message(stamp, rgb))
        self.label_pub.publish(label_message(stamp, labels))
        self.wait_for(lambda: stamp in self.score_stamps(), f'the score of frame {stamp}')

    def diagnostics(self):
        """Return the key/values of the newest /diagnostics status of the node."""
        statuses = [s for m in self.messages('diagnostics') for s in m.status
                    if s.name.startswith(self.node.get_fully_qualified_name())]
        return {kv.key: kv.value for kv in statuses[-1].values} if statuses else {}

    def wait_for_diagnostics(self, **expected) -> dict:
        """Wait for a /diagnostics report with these counter values; return it."""
        self.wait_for(lambda: all(self.diagnostics().get(k) == str(v)
                                  for k, v in expected.items()),
                      f'diagnostics {expected} (last: {self.diagnostics()})')
        return self.diagnostics()

    def close(self) -> None:
        """Stop spinning and tear the context down."""
        self.executor.shutdown()
        self.node.destroy_node()
        self.probe.destroy_node()
        rclpy.shutdown(context=self.context)
        self.thread.join(timeout=5.0)


@pytest.fixture
def harness(request):
    """A fresh node (named after the test) with its probe; closed afterwards."""
    name = 'kf_' + request.node.name.removeprefix('test_')[:40]
    created = []

    def make(**parameters):
        created.append(Harness(name, **parameters))
        return created[-1]

    yield make
    for item in created:
        item.close()


def test_scores_keyframes_and_dynamic_masks_match_the_core(harness, sequence):
    """Every frame gets its score; keyframes and masks equal the core's on the same input."""
    # A high overlap requirement, so that the 2.4 s of frames need several keyframes.
    run = harness(min_shared_features=300)
    for stamp, rgb, labels in sequence:
        run.send_frame(stamp, rgb, labels)

    config = dict(load_keyframe_config(), min_shared_features=300)
    scorer, policy = KeyframeScorer(config), KeyframePolicy.from_config(config)
    expected_scores, expected_keyframes = {}, []
    for stamp, rgb, labels in sequence:
        score = scorer.score(labels, rgb, reference=policy.reference)
        expected_scores[stamp] = score
        static = policy.matcher.extract(rgb).outside(scorer.dynamic_mask(labels))
        expected_keyframes += [d.stamp_ns for d in policy.push(stamp, score, features=static)]

    stamps = [s for s, _, _ in sequence]
    assert run.score_stamps() == stamps
    for message in run.messages('scores'):
        status = message.status[0]
        values = {kv.key: float(kv.value) for kv in status.values}
        expected = expected_scores[stamp_ns(message.header)].as_dict()
        assert set(expected) <= set(values)
        for key, value in expected.items():
            assert values[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
        assert message.header.frame_id == 'camera' and status.hardware_id == 'camera'

    run.wait_for(lambda: len(run.messages('keyframe')) == len(expected_keyframes),
                 'every keyframe decision')
    keyframes = [stamp_ns(h) for h in run.messages('keyframe')]
    assert keyframes == expected_keyframes and len(keyframes) >= 2
    indices = [stamps.index(s) for s in keyframes]
    gaps_frames = np.diff(indices)
    gaps_s = np.diff(keyframes) / 1e9
    assert gaps_frames.min() >= config['min_gap_frames']
    assert gaps_frames.max() <= config['max_gap_frames']
    assert gaps_s.min() >= config['min_gap_s'] and gaps_s.max() <= config['max_gap_s']

    run.wait_for(lambda: len(run.messages('keyframe_image')) == len(keyframes),
                 'every keyframe image')
    by_stamp = {s: rgb for s, rgb, _ in sequence}
    for message in run.messages('keyframe_image'):
        sent = by_stamp[stamp_ns(message.header)]
        assert (message.encoding, message.height, message.width) == ('rgb8', *sent.shape[:2])
        assert message.data.tobytes() == sent.tobytes()

    run.wait_for(lambda: len(run.messages('dynamic_mask')) == FRAMES, 'every dynamic mask')
    labels_by_stamp = {s: labels for s, _, labels in sequence}
    moving = 0
    for message in run.messages('dynamic_mask'):
        labels = labels_by_stamp[stamp_ns(message.header)]
        mask = np.frombuffer(message.data, np.uint8).reshape(message.height, message.width)
        assert message.encoding == 'mono8'
        np.testing.assert_array_equal(mask, scorer.dynamic_mask(labels))
        moving += int(mask.any())
    assert moving > 0, 'the sequence has cars and cyclists: some masks must be non-empty'

    report = run.wait_for_diagnostics(frames=FRAMES, keyframes=len(keyframes))
    assert report['dropped_bad_ids'] == '0' and report['unmatched_image'] == '0'
    # Both inputs report their DDS matching with the test's publishers.
    assert report['matched_publishers/label_mask'] == '1'
    assert report['matched_publishers/image'] == '1'


def test_a_quiet_stream_publishes_its_pending_keyframe(harness, sequence):
    """With idle_flush_s, the best pending candidate is not kept waiting for frames forever."""
    # Well above the time one frame takes to score on a loaded CI machine, so the flush can
    # only come once the stream has really stopped.
    run = harness(idle_flush_s=2.0, **WINDOW_RULE)
    config = dict(load_keyframe_config(), **WINDOW_RULE)
    scorer, policy = KeyframeScorer(config), KeyframePolicy.from_config(config)
    head = sequence[:config['min_gap_frames'] + 3]  # past the min gap, inside the window
    decided = []
    for stamp, rgb, labels in head:
        run.send_frame(stamp, rgb, labels)
        decided += policy.push(stamp, scorer.score(labels, rgb, reference=policy.reference))
    pending = [d.stamp_ns for d in decided + policy.flush()]
    assert len(pending) > len(decided), 'the test needs a pending candidate at the end'
    run.wait_for(lambda: len(run.messages('keyframe')) == len(pending),
                 'the pending keyframe after the stream went quiet')
    assert [stamp_ns(h) for h in run.messages('keyframe')] == pending
    run.wait_for_diagnostics(keyframes=len(pending), sequences=1)


def test_bad_inputs_are_dropped_counted_and_survived(harness, sequence):
    """Wrong encoding, wrong size, ids outside the class set and stamps going back."""
    run = harness()
    (t0, rgb0, labels0), (t1, rgb1, labels1), (t2, rgb2, labels2) = sequence[:3]
    run.send_frame(t0, rgb0, labels0)

    # A colour encoding where class ids are expected.
    run.image_pub.publish(image_message(t1, rgb1))
    run.label_pub.publish(label_message(t1, labels1, encoding='rgb8'))
    run.wait_for_diagnostics(dropped_bad_encoding=1)
    # A label mask of another size than its image.
    small = cv2.resize(labels1, (240, 180), interpolation=cv2.INTER_NEAREST)
    t_small = t1 + 1000
    run.image_pub.publish(image_message(t_small, rgb1))
    run.label_pub.publish(label_message(t_small, small))
    run.wait_for_diagnostics(dropped_bad_size=1)
    # Ids outside the 11 CamVid classes and void (11).
    bad_ids = labels1.copy()
    bad_ids[10:20, 10:20] = 200
    t_ids = t1 + 2000
    run.image_pub.publish(image_message(t_ids, rgb1))
    run.label_pub.publish(label_message(t_ids, bad_ids))
    run.wait_for_diagnostics(dropped_bad_ids=1)
    # Stamps going back (by less than stamp_jump_reset_s) on both inputs.
    run.image_pub.publish(image_message(t0 - 1000, rgb0))
    run.label_pub.publish(label_message(t0 - 1000, labels0))
    run.wait_for_diagnostics(dropped_stamp_backwards=2)

    # The node keeps serving: the next good frame is scored, exactly as the core scores it.
    run.send_frame(t2, rgb2, labels2)
    assert run.score_stamps() == [t0, t2]
    config = load_keyframe_config()
    scorer, policy = KeyframeScorer(config), KeyframePolicy.from_config(config)
    policy.push(t0, scorer.score(labels0, rgb0), features=policy.matcher.extract(rgb0))
    expected = scorer.score(labels2, rgb2, reference=policy.reference)
    values = {kv.key: float(kv.value) for kv in run.messages('scores')[-1].status[0].values}
    assert values['total'] == pytest.approx(expected.total, rel=1e-5)
    assert values['frame_index'] == 1
    # The image whose label mask had the wrong encoding never matched.
    report = run.wait_for_diagnostics(frames=2, unmatched_image=1)
    assert report['dropped_failed'] == '0'


def test_unmatched_and_late_messages_are_counted(harness, sequence):
    """Frames the segmentation skipped expire unmatched; a lagging input is late."""
    run = harness(sync_max_age_s=0.5)
    (t0, rgb0, labels0), (t1, rgb1, _), (t2, rgb2, _), (t3, rgb3, labels3) = sequence[:4]
    run.send_frame(t0, rgb0, labels0)
    for stamp, rgb in ((t1, rgb1), (t2, rgb2)):  # no label masks for these two
        run.image_pub.publish(image_message(stamp, rgb))
    run.send_frame(t3, rgb3, labels3)
    run.wait_for_diagnostics(unmatched_image=2, frames=2)
    # A label mask older than sync_max_age_s before the newest image is late.
    far = t3 + 2 * 10 ** 9
    run.image_pub.publish(image_message(far, rgb0))
    run.wait_for(lambda: run.node.matcher.pending == 1, 'the far image to wait')
    run.label_pub.publish(label_message(t3 + 1000, labels0))
    run.wait_for_diagnostics(dropped_late=1)


def test_labels_only_mode_and_a_stamp_jump_restart(harness, sequence):
    """use_image false scores label masks alone; a big jump back starts a new sequence."""
    run = harness(use_image=False, stamp_jump_reset_s=1.0, **WINDOW_RULE)
    assert run.node.inputs == [run.node.resolve_topic_name('label_mask')]
    for stamp, _, labels in sequence[:6]:
        run.label_pub.publish(label_message(stamp, labels))
        run.wait_for(lambda: stamp in run.score_stamps(), 'a labels-only score')
    values = {kv.key for kv in run.messages('scores')[0].status[0].values}
    assert 'sharpness' not in values and 'quality' in values
    restart = sequence[0][0] - 10 ** 10  # a bag played again from an earlier time
    run.label_pub.publish(label_message(restart, sequence[0][2]))
    run.wait_for(lambda: restart in run.score_stamps(), 'the first score after the jump')
    report = run.wait_for_diagnostics(sequences=1, dropped_stamp_backwards=0)
    assert int(report['keyframes']) >= 2  # one per sequence at least (each first frame)


def test_confidence_weights_the_semantic_term(harness, sequence):
    """With use_confidence, the three inputs are matched and the score uses the confidence."""
    run = harness(use_confidence=True)
    confidence_pub = run.probe.create_publisher(Image, 'confidence', RELIABLE)
    run.wait_for(lambda: confidence_pub.get_subscription_count() > 0, 'confidence discovery')
    stamp, rgb, labels = sequence[0]
    confidence = np.full(labels.shape, 255, np.uint8)
    confidence[:, : labels.shape[1] // 2] = 64  # the left half is uncertain
    run.image_pub.publish(image_message(stamp, rgb))
    confidence_pub.publish(label_message(stamp, confidence))
    run.wait_for(lambda: run.node.matcher.pending == 2, 'the image and confidence to wait')
    assert not run.score_stamps()  # the label mask completes the set
    run.label_pub.publish(label_message(stamp, labels))
    run.wait_for(lambda: stamp in run.score_stamps(), 'the score')
    scorer = KeyframeScorer(load_keyframe_config())
    expected = scorer.score(labels, rgb, confidence)
    values = {kv.key: float(kv.value) for kv in run.messages('scores')[0].status[0].values}
    assert values['semantic'] == pytest.approx(expected.semantic, rel=1e-5)
    assert values['semantic'] < scorer.score(labels, rgb).semantic


def test_scoring_parameters_change_at_run_time_and_invalid_ones_are_refused(harness):
    """A valid weight change is applied; an invalid one is refused with the reason."""
    run = harness(use_image=False, min_shared_features=0)
    result = run.node.set_parameters([Parameter('weight_semantic', value=0.9)])[0]
    assert result.successful and run.node.scorer.weights.semantic == 0.9
    result = run.node.set_parameters([Parameter('dark_level', value=251)])[0]
    assert not result.successful and 'dark_level' in result.reason
    result = run.node.set_parameters([Parameter('min_gap_frames', value=2)])[0]
    assert not result.successful and 'read-only' in result.reason
    weight = class_weight_parameter('Building')
    result = run.node.set_parameters([Parameter(weight, value=0.1)])[0]
    assert result.successful and run.node.config['class_weights']['Building'] == 0.1


def test_every_configuration_key_is_a_described_parameter(harness):
    """Each key of config/keyframes.yaml is declared, described, with the shipped default."""
    run = harness()
    config = load_keyframe_config()
    for key in KEYFRAME_PARAMETERS:
        descriptor = run.node.describe_parameter(key)
        assert len(descriptor.description) > 15, key
        value = run.node.get_parameter(key).value
        assert (list(value) if key == 'dynamic_classes' else value) == config[key], key
    for name, weight in config['class_weights'].items():
        assert run.node.get_parameter(class_weight_parameter(name)).value == weight
    assert class_weight_parameter('traffic light') == 'class_weights.traffic_light'
    assert run.node.describe_parameter('window_frames').read_only


@pytest.mark.parametrize('ros_args, named', [
    (('-p', 'dark_level:=252'), 'dark_level (252) must be below bright_level'),
    (('-p', 'window_frames:=-3'), 'invalid parameter window_frames'),
    (('-p', 'dynamic_classes:=[Car, Dragon]'), "unknown class name(s) 'Dragon'"),
    (('-p', 'image_reliability:=sometimes'), 'invalid parameter image_reliability'),
    # Integers given for real-valued parameters are range-checked by the node, not by rclpy.
    (('-p', 'idle_flush_s:=-5'), 'invalid parameter idle_flush_s: -5 is outside [0, 3600]'),
    (('-p', 'sync_max_age_s:=soon'), "invalid parameter sync_max_age_s: 'soon' is not a number"),
    # The visual-overlap rule matches camera images.
    (('-p', 'use_image:=false'), 'min_shared_features > 0 (visual-overlap keyframes) needs'),
])
def test_bad_parameters_exit_2_with_one_fatal_line(ros_args, named, tmp_path):
    """A bad value stops the node at start-up: exit code 2, the reason, no traceback."""
    node = NodeProcess(tmp_path, 'keyframe_node', ros_args, KEYFRAME_NODE)
    code = node.wait_exit()
    output = node.log()
    assert code == 2, output
    assert named in output and 'Traceback' not in output
    assert sum('FATAL' in line for line in output.splitlines()) == 1, output


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM])
def test_clean_shutdown_on_signals(sig, tmp_path):
    """SIGINT and SIGTERM end the node with exit code 0 and no traceback."""
    node = NodeProcess(tmp_path, 'keyframe_node', ['-r', '__node:=kf_signal_test'],
                       KEYFRAME_NODE)
    node.wait_for_log('choosing keyframes')
    stop_all([node], [sig])
