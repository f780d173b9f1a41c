"""The ORB-SLAM3 node over real DDS with the real ORB-SLAM3: camera_info and the bundled frames
at 15 Hz in, camera poses, the path and the tracking state out; bad input survived; Ctrl-C
shuts ORB-SLAM3 down cleanly. Skipped without the optional ``[slam]`` extra."""

import contextlib
import signal
import time

from builtin_interfaces.msg import Time
import cv2
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Path as PathMsg
import numpy as np
import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo

pytest.importorskip('pyorbslam3', reason="ORB-SLAM3 is optional: pip install '.[slam]'")

from ros_testing import assert_clean_exit, image_msg, NodeProcess, Probe  # noqa: E402
from semseg_ros.core.resources import config_dir, samples_dir  # noqa: E402
from semseg_ros.messages.conversions import rgb_to_image_fields  # noqa: E402
from semseg_ros.slam.settings import Intrinsics  # noqa: E402

MODULE = 'semseg_ros.nodes.orbslam3_node'
NODE = '/orbslam3_node'
IMAGE, INFO = '/test_slam/image', '/test_slam/camera_info'
IMAGES = sorted((samples_dir() / 'camvid_0016E5' / 'images').glob('*.jpg'))
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
BASE_S = 2_000_000


def _stamp(seconds: float) -> Time:
    ns = round((BASE_S + seconds) * 1e9)
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def _camera_info() -> CameraInfo:
    fields = Intrinsics.from_yaml(config_dir() / 'camera_info' / 'camvid_480x360.yaml') \
        .camera_info_fields()
    msg = CameraInfo(width=fields['width'], height=fields['height'], k=fields['k'],
                     d=fields['d'], p=fields['p'], distortion_model='plumb_bob')
    msg.header.frame_id = 'camvid_camera'
    return msg


def _frame(path, seconds: float, encoding: str = 'rgb8'):
    rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    return image_msg(rgb_to_image_fields(rgb, encoding), _stamp(seconds))


@contextlib.contextmanager
def _running(tmp_path, label, ros_args):
    """Run the node and a probe; on leaving, SIGINT must end the node cleanly (exit 0)."""
    node = NodeProcess(tmp_path, label, ros_args, module=MODULE)
    probe = Probe(f'{label}_probe')
    try:
        yield node, probe
        node.signal(signal.SIGINT)
        assert_clean_exit(node, node.wait_exit(60))
    finally:
        probe.close()
        node.signal(signal.SIGKILL)


def _values(probe, after, predicate, timeout=30.0):
    return probe.diagnostics(NODE, after, predicate, timeout=timeout)


def test_poses_path_and_state_from_the_sample_frames_and_bad_input_survived(tmp_path):
    """No camera yet: the frame is dropped. Then 48 frames at 15 Hz: ORB-SLAM3 initialises and
    the node publishes a pose per tracked frame (the frame's stamp) and the path; wrong
    encodings, another size and a stamp going back are dropped and counted, and a later frame
    is still tracked; SIGINT ends the node with 0 and no traceback."""
    with _running(tmp_path, 'orbslam3', ['-r', f'image:={IMAGE}', '-r',
                                         f'camera_info:={INFO}']) as (node, probe):
        probe.subscribe(PoseStamped, f'{NODE}/pose', RELIABLE)
        probe.subscribe(PathMsg, f'{NODE}/path', RELIABLE)
        node.wait_for_log('ORB-SLAM3 (pyorbslam3, GPL-3.0) on /test_slam/image')
        images = probe.publisher(type(_frame(IMAGES[0], 0.0)), IMAGE, RELIABLE)
        infos = probe.publisher(CameraInfo, INFO, 10)

        start = time.monotonic()
        images.publish(_frame(IMAGES[0], -10.0))
        _values(probe, start, lambda v: int(v['dropped_no_camera']) >= 1)

        infos.publish(_camera_info())
        time.sleep(0.5)
        images.publish(_frame(IMAGES[0], -5.0))  # starts ORB-SLAM3 (vocabulary load)
        node.wait_for_log('ORB-SLAM3 ready')
        sent = []
        start = time.monotonic()
        for i, path in enumerate(IMAGES):
            while time.monotonic() < start + i / 15.0:
                time.sleep(0.002)
            message = _frame(path, i / 15.0)
            sent.append((message.header.stamp.sec, message.header.stamp.nanosec))
            images.publish(message)
        values = _values(probe, time.monotonic(),
                         lambda v: int(v['frames']) >= len(IMAGES) + 1, timeout=60)
        assert int(values['tracked']) >= 1, values
        poses = [m for _, m in probe.messages[f'{NODE}/pose']]
        assert len(poses) == int(values['tracked'])
        for pose in poses:
            assert (pose.header.stamp.sec, pose.header.stamp.nanosec) in sent
            assert pose.header.frame_id == 'map'
            q = pose.pose.orientation
            assert abs(q.x ** 2 + q.y ** 2 + q.z ** 2 + q.w ** 2 - 1.0) < 1e-6
        path = probe.messages[f'{NODE}/path'][-1][1]
        assert len(path.poses) == int(values['path_length']) >= 1
        assert path.poses[-1].header.stamp == poses[-1].header.stamp
        assert values['state'] in ('OK', 'RECENTLY_LOST', 'LOST', 'NOT_INITIALIZED')
        assert int(values['keyframes']) >= 2 or int(values['map_resets']) >= 1, values

        last = len(IMAGES) / 15.0
        start = time.monotonic()
        bad = _frame(IMAGES[0], last + 0.1)
        bad.encoding = 'bogus8'
        images.publish(bad)
        small = cv2.resize(cv2.imread(str(IMAGES[1])), (240, 180))
        images.publish(image_msg(rgb_to_image_fields(small[:, :, ::-1].copy()),
                                 _stamp(last + 0.2)))
        images.publish(_frame(IMAGES[2], last - 1.0))  # 1 s back: dropped, no reset
        images.publish(_frame(IMAGES[-1], last + 0.3))
        values = _values(probe, start, lambda v: int(v['frames']) >= len(IMAGES) + 2)
        assert int(values['dropped_bad_encoding']) == 1
        assert int(values['dropped_bad_size']) == 1
        assert int(values['dropped_stamp_back']) == 1
        assert int(values['dropped_failed']) == 0
        assert values['level'] in (b'\x01', 1)  # WARN: inputs were dropped
        log = node.log()
        assert 'bogus8' in log and 'runs with the 480x360 camera it started with' in log

        resets = int(values['map_resets'])
        start = time.monotonic()
        images.publish(_frame(IMAGES[0], last - 10.0))  # a bag restarted: a new map
        values = _values(probe, start, lambda v: int(v['frames']) >= len(IMAGES) + 3)
        assert int(values['map_resets']) == resets + 1 and int(values['path_length']) <= 1
        assert 'resetting ORB-SLAM3 (a new map)' in node.log()


def test_a_missing_vocabulary_stops_the_node_with_one_line(tmp_path):
    """A vocabulary parameter naming no file: exit code 2 and the reason, no traceback."""
    node = NodeProcess(tmp_path, 'orbslam3_bad', ['-p', f'vocabulary:={tmp_path}/none.txt'],
                       module=MODULE)
    assert node.wait_exit(120) == 2
    log = node.log()
    assert 'invalid parameter vocabulary' in log and 'none.txt: vocabulary file not found' in log
    assert 'Traceback' not in log


def test_mask_dynamic_matches_label_masks_by_stamp_and_refuses_a_mask_of_another_size(
        tmp_path):
    """mask_dynamic: each image is tracked once the label mask of its stamp came (in either
    order); a mask of another size than its image drops the frame, counted."""
    from semseg_ros.messages.conversions import mono8_to_image_fields
    with _running(tmp_path, 'orbslam3_masked', [
            '-r', f'image:={IMAGE}', '-r', f'camera_info:={INFO}', '-r',
            'label_mask:=/test_slam/label_mask', '-p', 'mask_dynamic:=true']) as (node, probe):
        node.wait_for_log('dynamic classes painted out')
        images = probe.publisher(type(_frame(IMAGES[0], 0.0)), IMAGE, RELIABLE)
        masks = probe.publisher(type(_frame(IMAGES[0], 0.0)), '/test_slam/label_mask',
                                RELIABLE)
        infos = probe.publisher(CameraInfo, INFO, 10)
        infos.publish(_camera_info())
        time.sleep(0.5)
        labels_dir = samples_dir() / 'camvid_0016E5' / 'labels'
        for i, path in enumerate(IMAGES[:6]):
            labels = cv2.imread(str(labels_dir / (path.stem + '.png')), cv2.IMREAD_UNCHANGED)
            image, mask = _frame(path, i / 15.0), image_msg(mono8_to_image_fields(labels),
                                                            _stamp(i / 15.0))
            for publisher, message in ((images, image), (masks, mask))[::1 if i % 2 else -1]:
                publisher.publish(message)
            if i == 0:
                node.wait_for_log('ORB-SLAM3 ready')
            time.sleep(1 / 15.0)
        start = time.monotonic()
        masks.publish(image_msg(mono8_to_image_fields(np.zeros((180, 240), np.uint8)),
                                _stamp(1.0)))
        images.publish(_frame(IMAGES[7], 1.0))
        values = _values(probe, start, lambda v: int(v['dropped_bad_size']) >= 1)
        assert int(values['frames']) == 6 and int(values['dropped_failed']) == 0, values
        assert 'its label mask is 240x180, the image 480x360' in node.log()
