"""ORB-SLAM3 in the loop: vocabulary, camera settings, paced runs (optional ``[slam]`` extra).

Only :mod:`semseg_ros.slam.orbslam3` imports ``pyorbslam3`` (GPL-3.0, ``pip install
.[slam]``); nothing imports that module unless asked. The other modules (vocabulary builder,
settings writer) need only numpy and OpenCV.
"""
