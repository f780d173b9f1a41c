"""A stand-in for the segmentation node that does no work: the transport floor of ``--node``.

It takes the same topics with the same QoS as the segmentation node and answers each camera
frame at once, on the executor thread, with a label mask of zeros of the frame's size and the
frame's header, serialized as the node serializes its masks. Timed by the same camera
(``semseg bench --node``), it measures what two processes pay to pass a frame and its mask
through DDS and rclpy on this machine: the part of the node's end-to-end latency that no
change to the node can remove. A benchmark instrument, not a product node::

    python -m semseg_ros.live.transport_echo --ros-args -r image:=/camera/image_raw
"""

import sys
from typing import Dict, Tuple

import numpy as np
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from semseg_ros.messages import cdr
from semseg_ros.nodes.spinning import run_nodes


class TransportEcho(Node):
    """Answer every frame on ``image`` with a zero mono8 mask on ``~/label_mask``."""

    def __init__(self, node_name: str = 'transport_echo', **kwargs):
        super().__init__(node_name, **kwargs)
        reliable = self.declare_parameter('qos_reliability', 'best_effort').value == 'reliable'
        image_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=(
            ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT))
        self._masks: Dict[Tuple[int, int], np.ndarray] = {}
        self._publisher = self.create_publisher(Image, '~/label_mask', QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.RELIABLE))
        self.create_subscription(Image, 'image', self._on_image, image_qos, raw=True)

    def _on_image(self, payload: bytes) -> None:
        try:
            frame = cdr.read_image(payload)
        except cdr.CdrError as error:
            self.get_logger().error(f'unreadable frame: {error}', throttle_duration_sec=5.0)
            return
        size = (frame.height, frame.width)
        mask = self._masks.get(size)
        if mask is None:
            mask = self._masks[size] = np.zeros(size, np.uint8)
        self._publisher.publish(cdr.write_image(frame.header, 'mono8', mask))


def main(args=None) -> int:
    """Run the echo until Ctrl-C or SIGTERM."""
    return run_nodes([TransportEcho], SingleThreadedExecutor, (), args)


if __name__ == '__main__':
    sys.exit(main())
