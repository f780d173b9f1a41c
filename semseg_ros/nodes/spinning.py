"""Running nodes until Ctrl-C or SIGTERM, with a clean exit and no traceback.

rclpy's own signal handler shuts the context down from a separate thread (ros2/rclpy#844)
while the executor may be inside a callback and a node's worker thread may be publishing;
entities torn down under them crashed the keyframe node with SIGSEGV at Ctrl-C now and then.
So rclpy is started without its handlers and a signal only sets a flag: the executor
finishes its callback, stops, the nodes stop their threads and are destroyed, and only then
is the context shut down, in that order, on the main thread.
"""

import signal
import threading
from typing import Callable, Sequence, Tuple, Type

import rclpy
from rclpy.executors import Executor, ExternalShutdownException
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

EXIT_BAD_CONFIG = 2
# How long the executor waits for work before it checks for a signal again.
SIGNAL_CHECK_PERIOD_S = 0.1
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopOnSignal:
    """While active, SIGINT and SIGTERM set :attr:`stopped` instead of interrupting.

    Python runs the handler on the main thread between bytecodes, so it never interrupts
    a callback halfway; the previous handlers come back on exit.
    """

    def __init__(self):
        self.stopped = threading.Event()
        self._previous = {}

    def __enter__(self) -> 'StopOnSignal':
        for number in STOP_SIGNALS:
            self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)

    def _handle(self, number, frame) -> None:
        self.stopped.set()


def run_nodes(factories: Sequence[Callable[[], Node]], make_executor: Callable[[], Executor],
              config_errors: Tuple[Type[Exception], ...], args=None) -> int:
    """Start rclpy, build the nodes, spin them on one executor until a signal.

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
    with StopOnSignal() as stop:
        try:
            with rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO):
                executor = make_executor()
                try:
                    for factory in factories:
                        if stop.stopped.is_set():  # a signal while an earlier node started
                            return 0
                        nodes.append(factory())
                    for node in nodes:
                        executor.add_node(node)
                    while not stop.stopped.is_set() and rclpy.ok():
                        executor.spin_once(timeout_sec=SIGNAL_CHECK_PERIOD_S)
                except config_errors:
                    return EXIT_BAD_CONFIG
                finally:
                    executor.shutdown()
                    for node in reversed(nodes):
                        node.destroy_node()
        except ExternalShutdownException:
            pass  # another part of the process shut the context down
    return 0
