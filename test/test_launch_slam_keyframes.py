"""launch_testing test of launch/slam_keyframes.launch.py (needs a ROS 2 installation).

launch, launch_ros and launch_testing do not install from PyPI, so this module skips where
they are missing; test_keyframe_pipeline.py covers the same wiring here by starting the
executables with the launch file's remappings. launch_testing needs pytest < 9.
"""

from pathlib import Path
import tempfile
import time
import unittest

import pytest

launch_testing = pytest.importorskip(
    'launch_testing', reason='launch_testing is not installed (it comes with a ROS 2 '
    'installation, not from PyPI)')
pytest.importorskip('launch_ros', reason='launch_ros is not installed (ROS 2 installation)')

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402,I100
import launch  # noqa: E402
from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from semseg_ros.messages.conversions import rgb_to_image_fields  # noqa: E402

LAUNCH_FILE = Path(__file__).resolve().parents[1] / 'launch' / 'slam_keyframes.launch.py'
IMAGE_TOPIC = '/kf_launch_camera/image_raw'
SCORES_TOPIC = '/kf_launch_test/keyframe_node/scores'
KEYFRAME_TOPIC = '/kf_launch_test/keyframe_node/keyframe'


@pytest.mark.launch_test
@launch_testing.parametrize('single_process', ['false', 'true'])
def generate_test_description(single_process):
    """Launch both nodes (untrained small network) on a test camera topic."""
    params = Path(tempfile.mkdtemp(prefix='slam_keyframes_launch_')) / 'params.yaml'
    params.write_text('/**:\n  ros__parameters:\n    weights: none\n    backend: torch\n'
                      '    input_width: 128\n    input_height: 64\n    threads: 1\n')
    nodes = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(LAUNCH_FILE)),
        launch_arguments={'model': 'mininet_v2_cpu', 'segmentation_config': str(params),
                          'image_topic': IMAGE_TOPIC, 'namespace': 'kf_launch_test',
                          'single_process': single_process}.items())
    return launch.LaunchDescription([nodes, launch_testing.actions.ReadyToTest()])


class TestSlamKeyframesLaunch(unittest.TestCase):
    """While the nodes run: camera frames in give scores and a first keyframe out."""

    @classmethod
    def setUpClass(cls):
        rclpy.init()
        cls.node = rclpy.create_node('kf_launch_test_probe')

    @classmethod
    def tearDownClass(cls):
        cls.node.destroy_node()
        rclpy.shutdown()

    def test_scores_and_keyframes_for_camera_frames(self, single_process):
        """Stamps of the camera frames come back on ~/scores and ~/keyframe."""
        scores, keyframes = [], []
        self.node.create_subscription(DiagnosticArray, SCORES_TOPIC, scores.append, 10)
        self.node.create_subscription(Header, KEYFRAME_TOPIC, keyframes.append, 10)
        publisher = self.node.create_publisher(Image, IMAGE_TOPIC, qos_profile_sensor_data)
        rng = np.random.default_rng(0)
        frame = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
        sent = set()
        deadline = time.monotonic() + 90.0
        while not (scores and keyframes) and time.monotonic() < deadline:
            message = Image()
            message.header.frame_id = 'kf_launch_camera'
            message.header.stamp = self.node.get_clock().now().to_msg()
            (message.encoding, message.height, message.width, message.step,
             message.data) = rgb_to_image_fields(frame)
            publisher.publish(message)
            sent.add((message.header.stamp.sec, message.header.stamp.nanosec))
            rclpy.spin_once(self.node, timeout_sec=0.2)
        self.assertTrue(scores, f'no scores on {SCORES_TOPIC} within 90 s '
                        f'(single_process={single_process})')
        self.assertTrue(keyframes, f'no keyframe on {KEYFRAME_TOPIC}')
        stamp = scores[0].header.stamp
        self.assertIn((stamp.sec, stamp.nanosec), sent)
        self.assertEqual(scores[0].header.frame_id, 'kf_launch_camera')


@launch_testing.post_shutdown_test()
class TestSlamKeyframesLaunchShutdown(unittest.TestCase):
    """After launch stops the nodes (SIGINT): every process exited cleanly."""

    def test_exit_codes(self, proc_info):
        """Every launched process exited with code 0."""
        launch_testing.asserts.assertExitCodes(proc_info)
