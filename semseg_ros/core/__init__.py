"""Inference core: segmenter, backends, image conversions, metrics and class sets.

Nothing here imports rclpy; the nodes are thin glue around it.
"""
