"""The class set as vision_msgs/LabelInfo: the class metadata Nav2 and vision tools read.

vision_msgs is optional here: PyPI has no wheel of it (``make`` generates it into .venv from
its interface definitions, rosdep installs it on a robot). :func:`label_info` raises
ImportError where it is missing; the segmentation node then warns and publishes
``~/class_info`` only.
"""

from semseg_ros.core.classes import ClassSet


def label_info(class_set: ClassSet, threshold: float, stamp=None):
    """Return the vision_msgs/LabelInfo of a class set: its ids, names and the threshold.

    The mask's "unlabelled" id (:data:`~semseg_ros.core.classes.UNLABELED_ID`, 255) is not
    listed: LabelInfo reserves the largest id of the mask's type for it.

    Args:
        class_set: The classes the mask's ids index.
        threshold: Top-class probability (0..1) under which a pixel is unlabelled.
        stamp: builtin_interfaces/Time of the header (None: zero).

    Raises:
        ImportError: vision_msgs is not installed.
    """
    from vision_msgs.msg import LabelInfo, VisionClass
    message = LabelInfo(threshold=float(threshold), class_map=[
        VisionClass(class_id=class_id, class_name=name)
        for class_id, name in enumerate(class_set.names)])
    if stamp is not None:
        message.header.stamp = stamp
    return message
