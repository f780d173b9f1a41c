"""launch_testing test of launch/segmentation.launch.py (needs a ROS 2 installation).

launch, launch_ros and launch_testing do not install from PyPI, so this module skips where
they are missing; test_segmentation_node.py covers the same behaviour by starting the node
executable directly. launch_testing needs pytest < 9.
"""

import array
from pathlib import Path
import tempfile
import time
import unittest

import pytest

launch_testing = pytest.importorskip(
    'launch_testing', reason='launch_testing is not installed (it comes with a ROS 2 '
    'installation, not from PyPI)')
pytest.importorskip('launch_ros', reason='launch_ros is not installed (ROS 2 installation)')

import launch  # noqa: E402,I100
from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

LAUNCH_FILE = Path(__file__).resolve().parents[1] / 'launch' / 'segmentation.launch.py'
IMAGE_TOPIC = '/test_camera/image_raw'
LABEL_TOPIC = '/launch_test/segmentation_node/label_mask'


@pytest.mark.launch_test
def generate_test_description():
    """Launch the node with a small untrained network, on a test camera topic."""
    params = Path(tempfile.mkdtemp(prefix='semseg_launch_')) / 'params.yaml'
    params.write_text('/**:\n  ros__parameters:\n    weights: none\n    backend: torch\n'
                      '    input_width: 128\n    input_height: 64\n')
    segmentation = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(LAUNCH_FILE)),
        launch_arguments={'model': 'mininet_v2_cpu', 'config': str(params),
                          'image_topic': IMAGE_TOPIC, 'namespace': 'launch_test',
                          'use_compressed': 'false'}.items())
    return launch.LaunchDescription([segmentation, launch_testing.actions.ReadyToTest()])


class TestSegmentationLaunch(unittest.TestCase):
    """While the launched node runs: a camera frame in gives a label mask out."""

    @classmethod
    def setUpClass(cls):
        rclpy.init()
        cls.node = rclpy.create_node('launch_test_probe')

    @classmethod
    def tearDownClass(cls):
        cls.node.destroy_node()
        rclpy.shutdown()

    def test_label_mask_for_a_frame(self):
        """The remapped image topic reaches the node and the namespaced mask comes back."""
        received = []
        self.node.create_subscription(Image, LABEL_TOPIC, received.append, 10)
        publisher = self.node.create_publisher(Image, IMAGE_TOPIC, qos_profile_sensor_data)
        frame = np.full((96, 160, 3), 128, np.uint8)
        message = Image(height=96, width=160, encoding='rgb8', step=160 * 3,
                        data=array.array('B', frame.tobytes()))
        message.header.frame_id = 'launch_test_camera'
        deadline = time.monotonic() + 60.0
        while not received and time.monotonic() < deadline:
            publisher.publish(message)
            rclpy.spin_once(self.node, timeout_sec=0.5)
        self.assertTrue(received, f'no label mask on {LABEL_TOPIC} within 60 s')
        self.assertEqual(received[0].encoding, 'mono8')
        self.assertEqual((received[0].height, received[0].width), (96, 160))
        self.assertEqual(received[0].header.frame_id, 'launch_test_camera')


@launch_testing.post_shutdown_test()
class TestSegmentationLaunchShutdown(unittest.TestCase):
    """After launch stops it (SIGINT): the node exited cleanly."""

    def test_exit_code(self, proc_info):
        """Every launched process exited with code 0."""
        launch_testing.asserts.assertExitCodes(proc_info)
