"""Live tools around the nodes: bag replay through DDS, node benchmark, process helpers.

They start the nodes as processes or in-process and talk to them over DDS; the nodes
themselves live in :mod:`semseg_ros.nodes`.
"""
