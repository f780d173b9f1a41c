"""rosbag2 tools (no rclpy): build bags from image sequences, process and evaluate them.

Bags are standard rosbag2 folders (``metadata.yaml`` plus one MCAP or sqlite3 file, CDR
messages) written and read with the ``rosbags`` package, so ``ros2 bag info/play`` and
Foxglove read what these tools write, and they read what ``ros2 bag record`` writes.

Modules:
    storage: ``open_bag`` / ``find_topic`` / ``BagWriter`` (atomic output) and ``BagError``.
    messages: building, serializing and decoding the messages (images, headers, scores).
    make: ``make_bag`` (``semseg bag make``): an image sequence (and labels) to a bag.
    process: ``process_bag`` (``semseg bag process``): offline segmentation of every frame.
    evaluate: ``evaluate_recording`` (``semseg bag evaluate``): latency, drops, FPS and mIoU
        of a recording of the live nodes.

The live replay (``semseg bag replay``) needs rclpy and lives in
``semseg_ros.live.bag_replayer``.
"""
