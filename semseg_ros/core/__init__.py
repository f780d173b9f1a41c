"""Inference core: segmenter, backends, serving, metrics, class sets, weights and resources.

Nothing here imports rclpy; the nodes are thin glue around it. Graph export and quantization
live in :mod:`semseg_ros.export`, ROS message conversion in :mod:`semseg_ros.messages`.
"""
