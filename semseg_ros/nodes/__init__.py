"""ROS 2 nodes: segmentation and keyframe selection (thin rclpy glue), and their launcher."""
