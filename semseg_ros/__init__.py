"""semseg_ros: real-time semantic segmentation and semantic keyframe selection for ROS 2.

Layers from the top down; each imports only the layers below it (``test/test_layers.py``)::

    commands/           the ``semseg`` subcommands (``cli.py`` dispatches to them)
    live/               bag replay through DDS, node benchmark, process and DDS helpers
    nodes/              the two rclpy nodes (thin glue) and their one-process launcher
    training/, bags/    training and evaluation; rosbag2 tools
    keyframes/, data/   keyframe scoring and selection; datasets
    core/, export/      inference (segmenter, backends, options, metrics, class sets); ONNX
                        export and quantization, which core uses to build its graphs
    messages/           ROS message conversion without rclpy
    models/             networks and their registry
"""

__version__ = '0.1.0'
