"""ROS message conversion without rclpy: images and masks to and from message fields, stamps.

Pure numpy on the fields of ``sensor_msgs`` messages, so the nodes, the bag tools and the
tests share one conversion; the nodes only wrap the results in message objects.
"""
