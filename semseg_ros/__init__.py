"""semseg_ros: real-time semantic segmentation and semantic keyframe selection for ROS 2.

Layers from the top down; each imports only the layers below it::

    commands/           the ``semseg`` subcommands (``cli.py`` dispatches to them)
    nodes/              rclpy nodes (thin glue)
    training/, bags/    training and evaluation; rosbag2 tools
    keyframes/, data/   keyframe scoring and selection; datasets
    core/               segmenter, backends, image conversions, metrics, class sets
    models/             networks and their registry
"""

__version__ = '0.1.0'
