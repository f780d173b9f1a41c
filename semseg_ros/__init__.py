"""semseg_ros: real-time semantic segmentation and semantic keyframe selection for ROS 2.

Layers, each importing only those below it::

    models/  networks and their registry
    core/    segmenter, backends, image conversions, metrics, class sets
    keyframes/, data/   keyframe scoring and selection; datasets
    training/, bags/    training and evaluation; rosbag2 tools
    nodes/   rclpy nodes (thin glue)
    cli.py   the ``semseg`` command
"""

__version__ = '0.1.0'
