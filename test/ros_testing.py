"""Helpers shared by the tests that run rclpy nodes in-process."""

from rclpy._rclpy_pybind11 import InvalidHandle
from rclpy.executors import ExternalShutdownException, ShutdownException


def spin_until_shutdown(executor) -> None:
    """Spin ``executor`` until its context shuts down (a thread target for test probes).

    A test that destroys one of its subscriptions or publishers while another thread waits
    on it makes rclpy raise InvalidHandle out of that wait, which would end a plain
    ``executor.spin()`` thread and silently stop every later callback; here the wait is
    simply started again.
    """
    context = executor.context
    while context.ok():
        try:
            executor.spin_once(timeout_sec=0.1)
        except InvalidHandle:
            continue
        except (ExternalShutdownException, ShutdownException):
            return
        except RuntimeError:
            # RCLError when the context is shut down while spin_once builds its wait set.
            if context.ok():
                raise
            return
