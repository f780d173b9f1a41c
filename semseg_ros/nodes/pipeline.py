r"""The segmentation node and the keyframe node in ONE process, on one executor.

rclpy has no composable nodes; this is the in-process alternative to starting the two nodes
as separate processes. Messages between them stay in the process (no copy through DDS'
transports), which matters for camera-size images on a small robot computer. The keyframe
node is wired to the segmentation node (same namespace)::

    keyframe_node/label_mask  <- segmentation_node/label_mask
    keyframe_node/confidence  <- segmentation_node/confidence
    both nodes' image         <- image (remap it to the camera)

Command-line arguments apply to both nodes: remap ``image`` and the namespace, and target
parameters at one node in a params file (``segmentation_node:`` / ``keyframe_node:``
sections, or ``/**:`` for both; ``class_set`` and ``diagnostics_period`` exist in both).
Never remap ``__node`` for the process: it would give both nodes the same name::

    python -m semseg_ros.nodes.pipeline --ros-args -r image:=/camera/image_raw \\
        --params-file config/cpu_robot.yaml -p keyframe_node:use_confidence:=true
"""

import sys

from rclpy.executors import SingleThreadedExecutor

from semseg_ros.nodes import keyframe_node, segmentation_node
from semseg_ros.nodes.params import NodeConfigError
from semseg_ros.nodes.spinning import run_nodes

SEGMENTATION_NAME = segmentation_node.NODE_NAME
KEYFRAME_NAME = keyframe_node.NODE_NAME


def keyframe_wiring(segmentation_name: str = SEGMENTATION_NAME):
    """Return the keyframe node's own remapping arguments onto the segmentation node."""
    return ['--ros-args',
            '-r', f'label_mask:={segmentation_name}/label_mask',
            '-r', f'confidence:={segmentation_name}/confidence']


def main(args=None) -> int:
    """Run both nodes until Ctrl-C or SIGTERM; return the exit code (2: bad configuration)."""
    factories = [
        lambda: segmentation_node.SegmentationNode(SEGMENTATION_NAME),
        lambda: keyframe_node.KeyframeNode(KEYFRAME_NAME, cli_args=keyframe_wiring()),
    ]
    # Segmentation runs on its own worker thread, so one executor thread serves the (short)
    # callbacks of both nodes. Not rclpy's MultiThreadedExecutor: it busy-polls while a
    # callback waits in its pool (ros2/rclpy#1452), measured here at two cores of system
    # time, which starved inference and made DDS drop frames.
    return run_nodes(factories, SingleThreadedExecutor, (NodeConfigError,), args)


if __name__ == '__main__':
    sys.exit(main())
