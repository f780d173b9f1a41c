"""One /diagnostics status per node and period: the nodes' shared way of reporting."""

from typing import Any, Sequence, Tuple

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue


def publish_status(node, publisher, title: str, level: int, message: str,
                   values: Sequence[Tuple[str, Any]], hardware_id: str = '') -> None:
    """Publish one status named ``<node's full name>: <title>``, stamped now.

    Args:
        node: The rclpy node reporting (its name and clock are used).
        publisher: Its /diagnostics publisher.
        title: What the status is about (``segmentation``, ``keyframe selection``...).
        level: ``DiagnosticStatus.OK``, ``WARN`` or ``ERROR``.
        message: One line for people.
        values: The (key, value) pairs; values are sent as text.
        hardware_id: The device the status is about, if any.
    """
    status = DiagnosticStatus(
        level=level, name=f'{node.get_fully_qualified_name()}: {title}', message=message,
        hardware_id=hardware_id,
        values=[KeyValue(key=key, value=str(value)) for key, value in values])
    array = DiagnosticArray(status=[status])
    array.header.stamp = node.get_clock().now().to_msg()
    publisher.publish(array)
