"""ROS 2 nodes: thin rclpy glue around the core (segmentation, keyframe selection)."""
