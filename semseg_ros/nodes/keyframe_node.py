r"""The keyframe node: label masks (and images, confidence) in; scores and keyframe decisions out.

Thin rclpy glue around :mod:`semseg_ros.keyframes` (scoring and the online policy) and
:class:`semseg_ros.messages.stamp_sync.StampMatcher` (matching the inputs by identical header
stamps). Inputs, relative names (remap them):

* ``label_mask`` (sensor_msgs/Image, mono8 or 8UC1 class ids): the segmentation node's
  ``~/label_mask``. Always.
* ``image`` (sensor_msgs/Image, any encoding of :mod:`semseg_ros.messages.conversions`, the label
  mask's size): the camera. With ``use_image`` (default): image-quality terms and
  ``~/keyframe_image``.
* ``confidence`` (sensor_msgs/Image, mono8): the segmentation node's ``~/confidence``. With
  ``use_confidence``: confidence-weighted semantic coverage.

Outputs, each with the header of the frame it is about:

* ``~/scores`` (diagnostic_msgs/DiagnosticArray): one status per frame whose key/values are
  the score terms (``total``, ``quality``, ``semantic``, ``novelty``...).
* ``~/keyframe`` (std_msgs/Header): the header of each frame chosen as keyframe; a decision may
  come up to ``window_frames`` frames after the frame it names.
* ``~/keyframe_image`` (sensor_msgs/Image): the chosen frames themselves (with ``use_image``).
* ``~/dynamic_mask`` (sensor_msgs/Image, mono8 0/255): pixels of moving classes, grown by
  ``dynamic_dilation_px``; computed only while subscribed.
* ``/diagnostics``: frames, keyframes, drops by reason and unmatched messages, each period.

Run::

    ros2 run semseg_ros keyframe_node --ros-args -r label_mask:=/segmentation_node/label_mask \\
        -r image:=/camera/image_raw
"""

import re
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from semseg_ros.core.classes import load_class_set
from semseg_ros.core.serving import LogThrottle
from semseg_ros.keyframes.config import (KEYFRAME_OPTIONS, load_keyframe_config,
                                         validate_keyframe_config)
from semseg_ros.keyframes.policy import KeyframeDecision, KeyframePolicy
from semseg_ros.keyframes.scoring import KeyframeScorer
from semseg_ros.messages import conversions
from semseg_ros.messages.stamp_sync import REJECT_REASONS, StampMatcher
from semseg_ros.nodes.diagnostics import publish_status
from semseg_ros.nodes.params import check_changes, declare, NodeConfigError, Option
from semseg_ros.nodes.spinning import run_nodes

NODE_NAME = 'keyframe_node'
RELIABILITIES = ('best_effort', 'reliable')
# Why an input was dropped: field problems, the stamp matcher's reasons, or an error raised.
DROP_REASONS = ('bad_encoding', 'bad_size', 'bad_ids', 'bad_image') + REJECT_REASONS + (
    'failed',)
LOG_THROTTLE_S = 5.0
# How often the node checks whether the input went quiet (idle_flush_s).
IDLE_CHECK_PERIOD_S = 0.2


# The node's own parameters: name -> (default, spec).
NODE_PARAMETERS: Dict[str, Tuple[Any, Option]] = {
    'config_file': ('', Option(
        'Keyframe configuration YAML giving the defaults of every keyframe parameter '
        '(config/keyframes.yaml format); empty: the shipped file. Parameters set on the node '
        'override it.')),
    'use_image': (True, Option(
        'Subscribe to `image` (the camera, same size as the label mask): image-quality terms '
        'and ~/keyframe_image. false: label masks only (quality counts as 1).')),
    'use_confidence': (False, Option(
        "Subscribe to `confidence` (the segmentation node's ~/confidence, mono8) for "
        'confidence-weighted semantic coverage.')),
    'image_reliability': ('best_effort', Option(
        'Reliability of the image subscription; best_effort also receives from reliable '
        'publishers.', choices=RELIABILITIES)),
    'sync_queue_size': (30, Option(
        'Messages per input kept waiting for their partners (the other inputs with the same '
        'stamp); the oldest beyond it is dropped as unmatched.', limits=(1, 1000))),
    'sync_max_age_s': (2.0, Option(
        'A waiting message is dropped as unmatched once the newest input stamp is this many '
        'seconds later; older arrivals are dropped as late.', limits=(0.0, 60.0))),
    'stamp_jump_reset_s': (5.0, Option(
        'Stamps jumping back by more than this (a bag restarted, a simulation reset) start a '
        'new keyframe sequence; smaller steps back are dropped as bad input. 0: never reset.',
        read_only=False, limits=(0.0, 1e6))),
    'idle_flush_s': (1.0, Option(
        'When no frame has arrived for this many seconds (the stream stopped or paused), the '
        'pending best candidate is published as a keyframe instead of waiting for frames '
        'that may never come; the next frame starts a new sequence. 0: never.',
        read_only=False, limits=(0.0, 3600.0))),
    'diagnostics_period': (1.0, Option('Seconds between /diagnostics messages.',
                                       limits=(0.1, 60.0))),
}

# Keyframe configuration keys (config/keyframes.yaml), declared in keyframes/config.py; class
# weights come as one parameter per class.
KEYFRAME_PARAMETERS: Dict[str, Option] = KEYFRAME_OPTIONS


def node_parameters() -> Dict[str, Tuple[Any, Option]]:
    """Return the node's parameters, name -> (default, spec), with the shipped defaults.

    The keyframe keys take their defaults from ``config/keyframes.yaml``; the per-class
    ``class_weights.<Class>`` parameters, declared once the class set is known, are not listed.
    """
    defaults = load_keyframe_config()
    return {**NODE_PARAMETERS,
            **{name: (defaults[name], spec) for name, spec in KEYFRAME_PARAMETERS.items()}}


def class_weight_parameter(class_name: str) -> str:
    """Return the parameter name of a class's weight: ``class_weights.<Name>``.

    Characters other than letters, digits and ``_`` (Cityscapes' ``traffic light``) become
    ``_``.
    """
    return 'class_weights.' + re.sub(r'[^A-Za-z0-9_]', '_', class_name)


def stamp_ns(header) -> int:
    """Return a header's stamp in nanoseconds."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def score_message(header, status_name: str, values: Sequence[Tuple[str, Any]]
                  ) -> DiagnosticArray:
    """Build a ``~/scores`` message: one OK status with the terms as key/values."""
    status = DiagnosticStatus(
        level=DiagnosticStatus.OK, name=status_name, hardware_id=header.frame_id,
        message='keyframe score terms',
        values=[KeyValue(key=key, value=f'{value:.6g}' if isinstance(value, float) else str(value))
                for key, value in values])
    return DiagnosticArray(header=header, status=[status])


class KeyframeNode(Node):
    """Score every matched frame, choose keyframes online and publish them.

    Raises:
        NodeConfigError: A parameter is invalid; the reason was logged as one fatal line.
    """

    def __init__(self, node_name: str = NODE_NAME, **kwargs):
        super().__init__(node_name, **kwargs)
        self._lock = threading.Lock()
        try:
            self.config = self._declare_parameters()
        except NodeConfigError as error:
            self.get_logger().fatal(str(error))
            raise
        self.scorer = KeyframeScorer(self.config, self.class_set)
        self.policy = KeyframePolicy.from_config(self.config)
        self.use_image = self._param('use_image')
        self.use_confidence = self._param('use_confidence')
        if self.policy.uses_overlap and not self.use_image:
            message = ('invalid parameters: min_shared_features > 0 (visual-overlap keyframes) '
                       'needs the camera image: set use_image true, or min_shared_features 0')
            self.get_logger().fatal(message)
            raise NodeConfigError(message)
        streams = ['label_mask'] + ['image'] * self.use_image \
            + ['confidence'] * self.use_confidence
        self.matcher = StampMatcher(streams, max_pending=self._param('sync_queue_size'),
                                    max_age_ns=round(self._param('sync_max_age_s') * 1e9))
        self.counts = dict.fromkeys(('labels_received', 'frames', 'keyframes', 'sequences'), 0)
        self.counts.update({f'dropped_{r}': 0 for r in DROP_REASONS})
        self._last_counts = dict(self.counts)
        self._throttle = LogThrottle(period_s=LOG_THROTTLE_S)
        self._last_keyframe: Optional[KeyframeDecision] = None
        self._index = 0  # frame index in the current sequence, as the policy counts
        self._score_status_name = f'{self.get_fully_qualified_name()}: keyframe score'

        masks_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                               reliability=ReliabilityPolicy.RELIABLE)
        image_qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=10,
            reliability=(ReliabilityPolicy.RELIABLE
                         if self._param('image_reliability') == 'reliable'
                         else ReliabilityPolicy.BEST_EFFORT))
        self._input_subs = {
            'label_mask': self.create_subscription(Image, 'label_mask', self._on_label_mask,
                                                   masks_qos)}
        if self.use_image:
            self._input_subs['image'] = self.create_subscription(Image, 'image', self._on_image,
                                                                 image_qos)
        if self.use_confidence:
            self._input_subs['confidence'] = self.create_subscription(
                Image, 'confidence', self._on_confidence, masks_qos)
        self.inputs = [self.resolve_topic_name(name) for name in self._input_subs]

        output_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                                reliability=ReliabilityPolicy.RELIABLE)
        self._scores_pub = self.create_publisher(DiagnosticArray, '~/scores', output_qos)
        self._keyframe_pub = self.create_publisher(Header, '~/keyframe', output_qos)
        self._keyframe_image_pub = (self.create_publisher(Image, '~/keyframe_image', output_qos)
                                    if self.use_image else None)
        self._dynamic_pub = self.create_publisher(Image, '~/dynamic_mask', output_qos)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.create_timer(self._param('diagnostics_period'), self._publish_diagnostics)
        # Same (mutually exclusive) callback group as the subscriptions: no race with them.
        self._last_frame_time = None
        self.create_timer(IDLE_CHECK_PERIOD_S, self._flush_if_idle)
        self.add_on_set_parameters_callback(self._check_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        self.get_logger().info(
            f'choosing keyframes from {", ".join(self.inputs)} (class set '
            f'{self.class_set.name}, gaps {self.config["min_gap_frames"]}-'
            f'{self.config["max_gap_frames"]} frames and {self.config["min_gap_s"]:g}-'
            f'{self.config["max_gap_s"]:g} s, window {self.config["window_frames"]} frames)')

    # Parameters ----------------------------------------------------------------------------

    def _param(self, name: str) -> Any:
        return self.get_parameter(name).value

    def _declare(self, name: str, default: Any, spec: Option) -> Any:
        self._specs[name] = (default, spec)
        return declare(self, name, default, spec)

    def _declare_parameters(self) -> Dict[str, Any]:
        """Declare every parameter; return the validated keyframe configuration."""
        self._specs: Dict[str, Tuple[Any, Option]] = {}
        for name, (default, spec) in NODE_PARAMETERS.items():
            self._declare(name, default, spec)
        config_file = self._param('config_file')
        try:
            defaults = load_keyframe_config(config_file or None)
        except ValueError as error:
            raise NodeConfigError(f'invalid parameter config_file: {error}') from error
        for name, spec in KEYFRAME_PARAMETERS.items():
            self._declare(name, defaults[name], spec)
        try:
            self.class_set = load_class_set(self._param('class_set'))
        except ValueError as error:
            raise NodeConfigError(f'invalid parameter class_set: {error}') from error
        self._class_parameters = {}
        for name in self.class_set.names:
            parameter = class_weight_parameter(name)
            default = defaults['class_weights'].get(name, defaults['default_class_weight'])
            self._declare(parameter, float(default), Option(
                f'Semantic weight of class {name} (0: useless to SLAM, 1: most useful).',
                read_only=False, limits=(0.0, 1.0)))
            self._class_parameters[parameter] = name
        try:
            return self._validated({})
        except ValueError as error:
            raise NodeConfigError(str(error)) from error

    def _validated(self, changes: Dict[str, Any]) -> Dict[str, Any]:
        """Return the keyframe configuration of the current parameters plus ``changes``."""
        def value(name):
            return changes[name] if name in changes else self._param(name)

        raw = {name: value(name) for name in KEYFRAME_PARAMETERS}
        raw['dynamic_classes'] = list(raw['dynamic_classes'])  # an empty one is a byte array
        raw['class_weights'] = {cls: value(p) for p, cls in self._class_parameters.items()}
        config = validate_keyframe_config(
            raw, source=f'parameters of {self.get_fully_qualified_name()}')
        return config

    def _check_parameters(self, parameters) -> SetParametersResult:
        """Refuse a change that makes the configuration invalid (reason: the validator's)."""
        result = check_changes(parameters, self._specs)
        if not result.successful:
            return result
        changes = {p.name: p.value for p in parameters}
        try:
            self._validated(changes)
        except ValueError as error:
            return SetParametersResult(successful=False, reason=str(error))
        return SetParametersResult(successful=True)

    def _apply_parameters(self, parameters) -> None:
        """Rebuild the scorer after a change of scoring parameters."""
        names = {p.name for p in parameters}
        if names & (set(KEYFRAME_PARAMETERS) | set(self._class_parameters)):
            config = self._validated({})
            scorer = KeyframeScorer(config, self.class_set)
            with self._lock:
                self.config, self.scorer = config, scorer
            self.get_logger().info(f'scoring parameters changed: {", ".join(sorted(names))}')

    # Inputs --------------------------------------------------------------------------------

    def _on_label_mask(self, msg: Image) -> None:
        self.counts['labels_received'] += 1
        self._receive('label_mask', msg, mono8=True)

    def _on_image(self, msg: Image) -> None:
        self._receive('image', msg, mono8=False)

    def _on_confidence(self, msg: Image) -> None:
        self._receive('confidence', msg, mono8=True)

    def _receive(self, stream: str, msg: Image, mono8: bool) -> None:
        """Check cheap fields, then hand the message to the matcher; process a completed set."""
        try:
            self._receive_checked(stream, msg, mono8)
        except Exception as error:  # noqa: B902 - no exception may escape a callback
            self._drop('failed', f'processing the {stream} message stamped '
                       f'{stamp_ns(msg.header)} ns failed: {type(error).__name__}: {error}')

    def _receive_checked(self, stream: str, msg: Image, mono8: bool) -> None:
        stamp = stamp_ns(msg.header)
        item: Any = msg
        if mono8:
            try:
                item = (msg, conversions.image_to_mono8(msg.encoding, msg.height, msg.width,
                                                        msg.step, msg.data))
            except conversions.ImageConversionError as error:
                self._drop('bad_encoding', f'dropped a {stream} message from '
                           f'{self.resolve_topic_name(stream)}: {error}')
                return
        self._reset_on_jump(stream, stamp)
        result = self.matcher.add(stream, stamp, item)
        if result.rejected is not None:
            self._drop(result.rejected, f'dropped a {stream} message stamped {stamp} ns: '
                       f'{result.rejected.replace("_", " ")} (compared with '
                       f'{result.previous_ns} ns); stamps must increase on every input')
        elif result.matched is not None:
            self._process(result.matched)

    def _reset_on_jump(self, stream: str, stamp: int) -> None:
        """Start a new sequence when a stamp jumps back by more than stamp_jump_reset_s."""
        last = self.matcher.last_stamp(stream)
        limit = self._param('stamp_jump_reset_s')
        if last is None or limit <= 0 or last - stamp <= limit * 1e9:
            return
        for decision in self.policy.flush():  # the old sequence's pending keyframe
            self._publish_keyframe(decision)
        self.matcher.reset()
        self._index = 0
        self.counts['sequences'] += 1
        self.get_logger().warning(
            f'{stream} stamps jumped back by {(last - stamp) / 1e9:.3f} s (more than '
            f'stamp_jump_reset_s): starting a new keyframe sequence')

    # Processing ----------------------------------------------------------------------------

    def _process(self, matched: Dict[str, Any]) -> None:
        """Score a matched frame, push it to the policy and publish what it settles."""
        label_msg, labels = matched['label_mask']
        header = label_msg.header
        image = confidence = None
        if 'image' in matched:
            image_msg = matched['image']
            try:
                image = conversions.image_to_rgb(image_msg.encoding, image_msg.height,
                                                 image_msg.width, image_msg.step,
                                                 image_msg.data, bool(image_msg.is_bigendian))
            except conversions.ImageConversionError as error:
                self._drop('bad_image', f'dropped the frame at {stamp_ns(header)} ns: its '
                           f'image cannot be read: {error}')
                return
        if 'confidence' in matched:
            confidence = matched['confidence'][1]
        for name, array in (('image', image), ('confidence', confidence)):
            if array is not None and array.shape[:2] != labels.shape:
                self._drop('bad_size', f'dropped the frame at {stamp_ns(header)} ns: the label '
                           f'mask is {labels.shape[1]}x{labels.shape[0]} but the {name} is '
                           f'{array.shape[1]}x{array.shape[0]}; publish masks at the '
                           "camera's size (segmentation node: output_resolution input)")
                return
        with self._lock:
            scorer = self.scorer
        try:
            scorer.check_labels(labels)
        except ValueError as error:
            self._drop('bad_ids', f'dropped the label mask at {stamp_ns(header)} ns: {error}')
            return
        score = scorer.score(labels, image, confidence, reference=self.policy.reference)
        publish_mask = self._dynamic_pub.get_subscription_count() > 0
        mask = (scorer.dynamic_mask(labels) if publish_mask or self.policy.uses_overlap
                else None)
        features = None
        if self.policy.uses_overlap:
            features = self.policy.matcher.extract(image).outside(mask)
        decisions = self.policy.push(stamp_ns(header), score, (header, matched.get('image')),
                                     features)
        self.counts['frames'] += 1
        self._last_frame_time = time.monotonic()
        values = list(score.as_dict().items()) + [('frame_index', self._index)]
        self._index += 1
        self._scores_pub.publish(score_message(header, self._score_status_name, values))
        if publish_mask:
            message = Image(header=header)
            (message.encoding, message.height, message.width, message.step,
             message.data) = conversions.mono8_to_image_fields(mask)
            self._dynamic_pub.publish(message)
        for decision in decisions:
            self._publish_keyframe(decision)

    def _flush_if_idle(self) -> None:
        """Publish the pending candidate once the input has been quiet for idle_flush_s."""
        limit = self._param('idle_flush_s')
        if (limit <= 0 or self._last_frame_time is None or not self.policy.pending
                or time.monotonic() - self._last_frame_time < limit):
            return
        for decision in self.policy.flush():
            self._publish_keyframe(decision)
        self._index = 0
        self.counts['sequences'] += 1

    def _publish_keyframe(self, decision: KeyframeDecision) -> None:
        header, image_msg = decision.payload
        self._keyframe_pub.publish(header)
        if self._keyframe_image_pub is not None and image_msg is not None:
            self._keyframe_image_pub.publish(image_msg)
        self.counts['keyframes'] += 1
        self._last_keyframe = decision
        self.get_logger().debug(
            f'keyframe at {decision.stamp_ns} ns ({decision.reason}, score '
            f'{decision.score.total:.3f}, {decision.decided_at - decision.index} frames late)')

    def _drop(self, reason: str, detail: str) -> None:
        """Count a dropped message and log why, at most once per reason every few seconds."""
        self.counts[f'dropped_{reason}'] += 1
        text = self._throttle.check(detail, key=reason)
        if text is not None:
            self.get_logger().warning(text)

    # Diagnostics ---------------------------------------------------------------------------

    def diagnostics_values(self) -> List[Tuple[str, Any]]:
        """Return the counters and state reported on /diagnostics, as (key, value) pairs."""
        values = list(self.counts.items())
        values += [(k, v) for k, v in self.matcher.counts().items()
                   if k.startswith(('unmatched_', 'pending'))]
        last = self._last_keyframe
        values += [('pending_candidates', self.policy.pending),
                   ('last_keyframe_stamp_ns', '' if last is None else last.stamp_ns),
                   ('last_keyframe_reason', '' if last is None else last.reason),
                   ('inputs', ', '.join(self.inputs))]
        # DDS matching of each input: whether its messages can arrive at all.
        values += [(f'matched_publishers/{name}', subscription.get_publisher_count())
                   for name, subscription in self._input_subs.items()]
        return values

    def _publish_diagnostics(self) -> None:
        new = {k: v - self._last_counts.get(k, 0) for k, v in self.counts.items()}
        self._last_counts = dict(self.counts)
        dropped = sum(v for k, v in new.items() if k.startswith('dropped_'))
        summary = (f'{new["frames"]} frames scored, {new["keyframes"]} keyframes since the last '
                   'report')
        level, message = DiagnosticStatus.OK, summary
        if dropped:
            level, message = DiagnosticStatus.WARN, f'{dropped} inputs dropped; {summary}'
        elif not new['labels_received']:
            level, message = DiagnosticStatus.WARN, f'no label masks on {self.inputs[0]}'
        publish_status(self, self._diagnostics_pub, 'keyframe selection', level, message,
                       self.diagnostics_values())


def main(args=None) -> int:
    """Run the node until Ctrl-C or SIGTERM; return the exit code (2: bad configuration)."""
    return run_nodes([KeyframeNode], SingleThreadedExecutor, (NodeConfigError,), args)


if __name__ == '__main__':
    sys.exit(main())
