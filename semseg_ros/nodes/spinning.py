"""Running nodes until Ctrl-C or SIGTERM, with a clean exit and no traceback."""

from typing import Callable, Sequence, Tuple, Type

import rclpy
from rclpy.executors import Executor, ExternalShutdownException
from rclpy.node import Node

EXIT_BAD_CONFIG = 2


def run_nodes(factories: Sequence[Callable[[], Node]], make_executor: Callable[[], Executor],
              config_errors: Tuple[Type[Exception], ...], args=None) -> int:
    """Start rclpy, build the nodes, spin them on one executor until shutdown.

    Args:
        factories: Build one node each, in order (after ``rclpy.init``).
        make_executor: Builds the executor.
        config_errors: Exceptions by which a node refuses its parameters, having logged the
            reason as one fatal line.
        args: Command-line arguments for ``rclpy.init`` (None: ``sys.argv``).

    Returns:
        0 after Ctrl-C or SIGTERM, :data:`EXIT_BAD_CONFIG` when a node refused its parameters.
    """
    nodes = []
    try:
        with rclpy.init(args=args):
            # Made before the nodes: a signal during start-up then ends spin() cleanly.
            executor = make_executor()
            try:
                for factory in factories:
                    nodes.append(factory())
                for node in nodes:
                    executor.add_node(node)
                executor.spin()
            except config_errors:
                return EXIT_BAD_CONFIG
            except RuntimeError:
                # rclpy's RCLError when SIGTERM shuts the context down while spin() builds its
                # wait set: a normal shutdown; anything else goes on up.
                if rclpy.ok():
                    raise
            finally:
                executor.shutdown()
                for node in reversed(nodes):
                    node.destroy_node()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    return 0
