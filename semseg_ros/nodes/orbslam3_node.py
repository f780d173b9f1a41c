r"""The ORB-SLAM3 node (optional ``[slam]`` extra, GPL-3.0): monocular ORB-SLAM3 on an image topic.

Thin rclpy glue around :mod:`semseg_ros.slam.orbslam3` (pyorbslam3). Inputs, relative names
(remap them; ``slam_keyframes.launch.py slam:=true`` feeds it the keyframe node's
``~/keyframe_image``):

* ``image`` (sensor_msgs/Image, any encoding of :mod:`semseg_ros.messages.conversions`): the
  frames to map, at their own pace (ORB-SLAM3 gets each one's header stamp).
* ``camera_info`` (sensor_msgs/CameraInfo): the camera's intrinsics (``k``, plumb-bob ``d``),
  written into ORB-SLAM3's settings when the first image comes; ``settings_file`` is the
  fallback when none has arrived by then.
* ``label_mask`` (sensor_msgs/Image, mono8 class ids; with ``mask_dynamic``): the
  segmentation node's ``~/label_mask``; the dynamic classes are painted out of the matching
  image (same stamp) before ORB-SLAM3 sees it.

Outputs, stamped with the frame's header stamp, in ``frame_id`` (ORB-SLAM3's world: the
camera of its first keyframe, optical axes, monocular scale):

* ``~/pose`` (geometry_msgs/PoseStamped): the camera in the world, for each tracked frame.
* ``~/path`` (nav_msgs/Path): the poses since ORB-SLAM3 (re)started its map.
* ``/diagnostics``: ORB-SLAM3's tracking state, frames tracked, keyframes, map resets and
  drops by reason.

A frame that cannot be used (wrong encoding, another size than the first, stamp going back)
is dropped, counted and logged (throttled); ORB-SLAM3 losing track or resetting its map is
reported, and the path starts again. Ctrl-C shuts ORB-SLAM3 down before the node goes.

Run::

    ros2 run semseg_ros orbslam3_node --ros-args -r image:=/keyframe_node/keyframe_image \\
        -r camera_info:=/camera/camera_info -p vocabulary:=/path/to/ORBvoc.txt
"""

from pathlib import Path
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Tuple

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Path as PathMsg
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image

from semseg_ros.core.resources import samples_dir
from semseg_ros.core.serving import LogThrottle
from semseg_ros.keyframes.config import load_keyframe_config
from semseg_ros.keyframes.scoring import KeyframeScorer
from semseg_ros.messages import conversions
from semseg_ros.messages.stamp_sync import StampMatcher
from semseg_ros.nodes.diagnostics import publish_status
from semseg_ros.nodes.params import declare, NodeConfigError, Option
from semseg_ros.nodes.spinning import run_nodes
from semseg_ros.slam.masking import paint_out
from semseg_ros.slam.orbslam3 import OrbSlam3
from semseg_ros.slam.poses import matrix_to_pose
from semseg_ros.slam.settings import Intrinsics, SettingsError
from semseg_ros.slam.vocabulary import vocabulary_for, VocabularyError

NODE_NAME = 'orbslam3_node'
RELIABILITIES = ('best_effort', 'reliable')
DROP_REASONS = ('bad_encoding', 'bad_size', 'no_camera', 'stamp_back', 'unmatched', 'failed')
# ORB-SLAM3 states after which a map that was tracked has been dropped or replaced.
RESTART_STATES = ('NO_IMAGES_YET', 'NOT_INITIALIZED')
LOG_THROTTLE_S = 5.0
# Label masks queued for this node while ORB-SLAM3 works (about 6 s of a 15 Hz camera).
LABEL_MASK_DEPTH = 100

NODE_PARAMETERS: Dict[str, Tuple[Any, Option]] = {
    'vocabulary': ('', Option(
        'ORB vocabulary file (ORBvoc.txt, DBoW2 text format). Empty: $PYORBSLAM3_VOCAB, else '
        "one built from the package's bundled CamVid frames into the cache (to try the node; "
        'on a robot give ORBvoc.txt or `semseg slam vocabulary` of your own frames).')),
    'settings_file': ('', Option(
        'ORB-SLAM3 settings YAML, used only when no camera_info has arrived by the first '
        'image; empty: wait for camera_info.')),
    'orb_features': (1000, Option('ORB features per frame (ORBextractor.nFeatures).',
                                  limits=(100, 20000))),
    'camera_fps': (15.0, Option(
        "Frame rate written into ORB-SLAM3's settings (Camera.fps; its keyframe rules count "
        'frames).', limits=(1.0, 1000.0))),
    'frame_id': ('map', Option('frame_id of ~/pose and ~/path (ORB-SLAM3 world frame).')),
    'mask_dynamic': (False, Option(
        "Subscribe to `label_mask` (the segmentation node's) and paint the dynamic classes of "
        'the keyframe configuration out of each image before ORB-SLAM3 sees it.')),
    'image_reliability': ('reliable', Option(
        'Reliability of the image subscription (the keyframe node publishes reliably).',
        choices=RELIABILITIES)),
    'stamp_jump_reset_s': (5.0, Option(
        'Stamps jumping back by more than this (a bag restarted) reset ORB-SLAM3 and start a '
        'new map; smaller steps back are dropped as bad input. 0: never reset.',
        limits=(0.0, 1e6))),
    'max_path_length': (10000, Option('Poses kept in ~/path (oldest dropped first).',
                                      limits=(1, 1_000_000))),
    'diagnostics_period': (1.0, Option('Seconds between /diagnostics messages.',
                                       limits=(0.1, 60.0))),
}


def node_parameters() -> Dict[str, Tuple[Any, Option]]:
    """Return the node's parameters, name -> (default, spec)."""
    return dict(NODE_PARAMETERS)


def stamp_ns(header) -> int:
    """Return a header's stamp in nanoseconds."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


class OrbSlam3Node(Node):
    """Track every image with ORB-SLAM3; publish the camera pose, the path and the state.

    Raises:
        NodeConfigError: A parameter is invalid or the vocabulary cannot be had.
    """

    def __init__(self, node_name: str = NODE_NAME, **kwargs):
        super().__init__(node_name, **kwargs)
        try:
            self.params = {name: declare(self, name, default, spec)
                           for name, (default, spec) in NODE_PARAMETERS.items()}
            self.vocabulary = self._vocabulary()
        except NodeConfigError as error:
            self.get_logger().fatal(str(error))
            raise
        self.slam: Optional[OrbSlam3] = None
        self.camera: Optional[Intrinsics] = None
        self.size: Optional[Tuple[int, int]] = None
        self._settings_dir = tempfile.TemporaryDirectory(prefix='semseg_orbslam3_node_')
        self._last_stamp: Optional[int] = None
        self._was_tracking = False
        self.state = 'NO_IMAGES_YET'
        self.counts = dict.fromkeys(('images_received', 'frames', 'tracked', 'map_resets'), 0)
        self.counts.update({f'dropped_{r}': 0 for r in DROP_REASONS})
        self._last_counts = dict(self.counts)
        self._throttle = LogThrottle(period_s=LOG_THROTTLE_S)
        self._path = PathMsg()
        self._path.header.frame_id = self.params['frame_id']

        self.scorer = self.matcher = None
        if self.params['mask_dynamic']:
            self.scorer = KeyframeScorer(load_keyframe_config())
            self.matcher = StampMatcher(['image', 'label_mask'], max_pending=30,
                                        max_age_ns=2_000_000_000)
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                         reliability=(ReliabilityPolicy.RELIABLE
                                      if self.params['image_reliability'] == 'reliable'
                                      else ReliabilityPolicy.BEST_EFFORT))
        self.create_subscription(Image, 'image', self._on_image, qos)
        self.create_subscription(CameraInfo, 'camera_info', self._on_camera_info, 10)
        if self.matcher is not None:
            # Deep: a mask comes with every camera frame, and ORB-SLAM3 holds this node's
            # executor for seconds while it initialises; a keyframe's mask lost meanwhile
            # would leave its image waiting.
            self.create_subscription(Image, 'label_mask', self._on_label_mask, QoSProfile(
                history=HistoryPolicy.KEEP_LAST, depth=LABEL_MASK_DEPTH,
                reliability=ReliabilityPolicy.RELIABLE))
        output = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                            reliability=ReliabilityPolicy.RELIABLE)
        self._pose_pub = self.create_publisher(PoseStamped, '~/pose', output)
        self._path_pub = self.create_publisher(PathMsg, '~/path', output)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.create_timer(self.params['diagnostics_period'], self._publish_diagnostics)
        self.inputs = [self.resolve_topic_name('image'), self.resolve_topic_name('camera_info')]
        self.get_logger().info(
            f'ORB-SLAM3 (pyorbslam3, GPL-3.0) on {self.inputs[0]}, intrinsics from '
            f'{self.inputs[1]}, vocabulary {self.vocabulary}'
            + (', dynamic classes painted out' if self.matcher else ''))

    def _vocabulary(self) -> Path:
        given = self.params['vocabulary'] or None
        images = sorted((samples_dir() / 'camvid_0016E5' / 'images').glob('*.jpg'))
        try:
            return vocabulary_for(images, given=given,
                                  progress=lambda text: self.get_logger().info(text))
        except VocabularyError as error:
            raise NodeConfigError(f'invalid parameter vocabulary: {error}') from error

    # Inputs --------------------------------------------------------------------------------

    def _on_camera_info(self, msg: CameraInfo) -> None:
        if not any(msg.k):
            self._warn('no_camera', 'camera_info with an all-zero camera matrix (uncalibrated) '
                       'ignored')
            return
        try:
            camera = Intrinsics.from_camera_info(msg.width, msg.height, msg.k, msg.d)
        except SettingsError as error:
            self._warn('no_camera', f'camera_info ignored: {error}')
            return
        if self.slam is not None and camera != self.camera:
            self._warn('camera_changed', 'camera_info changed; ORB-SLAM3 keeps the camera it '
                       'started with')
            return
        self.camera = camera

    def _on_label_mask(self, msg: Image) -> None:
        try:
            labels = conversions.image_to_mono8(msg.encoding, msg.height, msg.width, msg.step,
                                                msg.data)
        except conversions.ImageConversionError as error:
            self._drop('bad_encoding', f'dropped a label mask: {error}')
            return
        self._match('label_mask', msg, labels)

    def _on_image(self, msg: Image) -> None:
        self.counts['images_received'] += 1
        if self.matcher is not None:
            self._match('image', msg, msg)
        else:
            self._guarded(msg, None)

    def _match(self, stream: str, msg: Image, item: Any) -> None:
        result = self.matcher.add(stream, stamp_ns(msg.header), item)
        for expired_stream, expired_ns in result.expired:
            if expired_stream == 'image':  # its mask never came: counted as a drop
                self._drop('unmatched', f'dropped the image stamped {expired_ns} ns: no label '
                           'mask of that stamp came')
        if result.rejected is not None:
            self._drop('unmatched', f'dropped a {stream} message: {result.rejected}')
        elif result.matched is not None:
            self._guarded(result.matched['image'], result.matched['label_mask'])

    def _guarded(self, msg: Image, labels) -> None:
        """Track one frame; no exception leaves the callback."""
        try:
            self._track(msg, labels)
        except Exception as error:  # noqa: B902 - no exception may escape a callback
            self._drop('failed', f'tracking the image stamped {stamp_ns(msg.header)} ns '
                       f'failed: {type(error).__name__}: {error}')

    def _track(self, msg: Image, labels) -> None:
        stamp = stamp_ns(msg.header)
        try:
            rgb = conversions.image_to_rgb(msg.encoding, msg.height, msg.width, msg.step,
                                           msg.data, bool(msg.is_bigendian))
        except conversions.ImageConversionError as error:
            self._drop('bad_encoding', f'dropped an image from {self.inputs[0]}: {error}')
            return
        size = (rgb.shape[1], rgb.shape[0])
        if self.size is not None and size != self.size:
            self._drop('bad_size', f'dropped a {size[0]}x{size[1]} image: ORB-SLAM3 runs with '
                       f'the {self.size[0]}x{self.size[1]} camera it started with')
            return
        if labels is not None:
            if labels.shape != rgb.shape[:2]:
                self._drop('bad_size', f'dropped the frame at {stamp} ns: its label mask is '
                           f'{labels.shape[1]}x{labels.shape[0]}, the image {size[0]}x{size[1]}')
                return
            rgb = paint_out(rgb, self.scorer.dynamic_mask(labels))
        if self.slam is None and not self._start(size):
            return
        if self._last_stamp is not None and stamp <= self._last_stamp:
            limit = self.params['stamp_jump_reset_s']
            if limit > 0 and self._last_stamp - stamp > limit * 1e9:
                self.get_logger().warning(
                    f'image stamps jumped back by {(self._last_stamp - stamp) / 1e9:.3f} s: '
                    'resetting ORB-SLAM3 (a new map)')
                self.slam.reset()
                self.counts['map_resets'] += 1
                self._was_tracking = False
                self._restart_path()
            else:
                self._drop('stamp_back', f'dropped the image stamped {stamp} ns: not after the '
                           f'previous one ({self._last_stamp} ns); ORB-SLAM3 needs increasing '
                           'stamps')
                return
        self._last_stamp = stamp
        outcome = self.slam.track(rgb, stamp / 1e9)
        self.counts['frames'] += 1
        previous, self.state = self.state, outcome['state']
        if self._was_tracking and self.state in RESTART_STATES:
            self.counts['map_resets'] += 1
            self._was_tracking = False
            self._restart_path()
            self.get_logger().warning(f'ORB-SLAM3 dropped its map ({previous} -> {self.state}): '
                                      'starting a new map and path')
        elif self.state != previous and self.state in ('RECENTLY_LOST', 'LOST'):
            self.get_logger().warning(f'ORB-SLAM3 lost track ({self.state})')
        if outcome['tracked']:
            self.counts['tracked'] += 1
            self._was_tracking = True
            self._publish_pose(msg.header, outcome['pose_wc'])

    def _start(self, size: Tuple[int, int]) -> bool:
        """Start ORB-SLAM3 for images of ``size``; False (image dropped) while it cannot."""
        settings = self.params['settings_file']
        if self.camera is not None:
            if (self.camera.width, self.camera.height) != size:
                self._drop('bad_size', f'dropped a {size[0]}x{size[1]} image: camera_info says '
                           f'{self.camera.width}x{self.camera.height}')
                return False
            settings = self.camera.write_settings(
                Path(self._settings_dir.name) / 'settings.yaml', self.params['camera_fps'],
                self.params['orb_features'])
        elif not settings:
            self._drop('no_camera', f'dropped an image: no camera_info on {self.inputs[1]} yet '
                       '(or set settings_file)')
            return False
        self.get_logger().info(f'starting ORB-SLAM3 for {size[0]}x{size[1]} images '
                               f'(settings {settings})')
        started = time.monotonic()
        self.slam = OrbSlam3(self.vocabulary, settings)
        self.size = size
        self.get_logger().info(f'ORB-SLAM3 ready in {time.monotonic() - started:.1f} s')
        return True

    # Outputs -------------------------------------------------------------------------------

    def _restart_path(self) -> None:
        self._path.poses = []

    def _publish_pose(self, header, matrix) -> None:
        (x, y, z), (qx, qy, qz, qw) = matrix_to_pose(matrix)
        pose = PoseStamped()
        pose.header.stamp = header.stamp
        pose.header.frame_id = self.params['frame_id']
        pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = x, y, z
        orientation = pose.pose.orientation
        orientation.x, orientation.y, orientation.z, orientation.w = qx, qy, qz, qw
        self._pose_pub.publish(pose)
        self._path.poses.append(pose)
        del self._path.poses[:-self.params['max_path_length']]
        self._path.header.stamp = header.stamp
        self._path_pub.publish(self._path)

    def _warn(self, key: str, text: str) -> None:
        message = self._throttle.check(text, key=key)
        if message is not None:
            self.get_logger().warning(message)

    def _drop(self, reason: str, detail: str) -> None:
        """Count a dropped message and log why, at most once per reason every few seconds."""
        self.counts[f'dropped_{reason}'] += 1
        self._warn(reason, detail)

    def diagnostics_values(self) -> List[Tuple[str, Any]]:
        """Return the counters and state reported on /diagnostics, as (key, value) pairs."""
        keyframes = len(self.slam.keyframe_stamps()) if self.slam is not None else 0
        return [('state', self.state), *self.counts.items(), ('keyframes', keyframes),
                ('path_length', len(self._path.poses)), ('inputs', ', '.join(self.inputs)),
                ('vocabulary', str(self.vocabulary))]

    def _publish_diagnostics(self) -> None:
        new = {k: v - self._last_counts.get(k, 0) for k, v in self.counts.items()}
        self._last_counts = dict(self.counts)
        dropped = sum(v for k, v in new.items() if k.startswith('dropped_'))
        summary = f'{self.state}: {new["tracked"]} of {new["frames"]} frames tracked'
        level = DiagnosticStatus.OK if self.state in ('OK', 'OK_KLT') else DiagnosticStatus.WARN
        if dropped:
            level, summary = DiagnosticStatus.WARN, f'{dropped} images dropped; {summary}'
        publish_status(self, self._diagnostics_pub, 'ORB-SLAM3 tracking', level, summary,
                       self.diagnostics_values())

    def destroy_node(self) -> None:
        """Shut ORB-SLAM3 down (its threads), then destroy the node."""
        if self.slam is not None:
            self.slam.shutdown()
        self._settings_dir.cleanup()
        super().destroy_node()


def main(args=None) -> int:
    """Run the node until Ctrl-C or SIGTERM; return the exit code (2: bad configuration)."""
    return run_nodes([OrbSlam3Node], SingleThreadedExecutor, (NodeConfigError,), args)


if __name__ == '__main__':
    sys.exit(main())
