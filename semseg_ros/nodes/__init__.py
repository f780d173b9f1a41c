"""ROS 2 nodes: thin rclpy glue around the core (segmentation, keyframe selection).

A node started as a program (``ros2 run``, a console script, or ``python -m``) exits quietly,
with code 0, on Ctrl-C or SIGTERM while Python still imports torch, rclpy and the models:
the handlers are installed here, before those imports, and replaced by
:func:`semseg_ros.nodes.spinning.run_nodes`' own once it runs.
"""

import os
import signal
import sys

# The console scripts of setup.py that run nodes.
NODE_PROGRAMS = ('segmentation_node', 'keyframe_node', 'keyframe_pipeline')


def _exit_quietly(number, frame) -> None:
    # Not SystemExit: raised halfway through torch's imports, it would leave half-built
    # modules for the interpreter to tear down. Nothing is held yet, so end here.
    os._exit(0)


def _started_as_node_program() -> bool:
    # While ``python -m semseg_ros.nodes.x`` locates its module, sys.argv[0] is '-m'.
    program = sys.argv[0] if sys.argv else ''
    return program == '-m' or os.path.basename(program) in NODE_PROGRAMS


if _started_as_node_program():
    for _number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(_number, _exit_quietly)
