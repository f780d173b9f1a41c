"""Running nodes until Ctrl-C or SIGTERM, with a clean exit and no traceback.

rclpy's own signal handler shuts the context down from a separate thread (ros2/rclpy#844)
while the executor may be inside a callback and a node's worker thread may be publishing;
entities torn down under them crashed the keyframe node with SIGSEGV at Ctrl-C now and then.
So rclpy is started without its handlers and a signal only sets a flag: the executor
finishes its callback, stops, the nodes stop their threads and are destroyed, and only then
is the context shut down, in that order, on the main thread.

A signal while the nodes are still being built (a model loading, a graph being exported)
ends the start-up at its next safe point (:mod:`semseg_ros.core.stopping`: a graph build is
a child process, killed at once), and the process exits with 0 there too. No exception is
ever raised into whatever the main thread runs at the moment the signal arrives: inside
torch's exporter that broke its lazy imports (a Ctrl-C reported as a fatal model error, or a
SIGSEGV at exit). Parameters files named
on the command line are checked first: a missing or unreadable one is refused in one line
(rcl would raise a long traceback), and one without a section for any of the nodes is
warned about (rcl would ignore it silently).
"""

import re
import signal
import sys
import threading
from typing import Callable, List, Optional, Sequence, Tuple, Type

import rclpy
from rclpy.executors import Executor, ExternalShutdownException
from rclpy.logging import get_logger
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
import yaml

from semseg_ros.core.stopping import (
    clear_stop_request, raise_if_stop_requested, request_stop, set_signals_request_stops,
    StopRequested)

EXIT_BAD_CONFIG = 2
# How long the executor waits for work before it checks for a signal again.
SIGNAL_CHECK_PERIOD_S = 0.1
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopOnSignal:
    """While active, SIGINT and SIGTERM set :attr:`stopped` instead of interrupting.

    Python runs the handler on the main thread between bytecodes, so it never interrupts
    a callback halfway; the previous handlers come back on exit. The handler also requests a
    stop of the process's long work (:func:`semseg_ros.core.stopping.request_stop`), so a
    graph build during start-up ends at once, and raises nothing itself.
    """

    def __init__(self):
        self.stopped = threading.Event()
        self._previous = {}

    def __enter__(self) -> 'StopOnSignal':
        for number in STOP_SIGNALS:
            self._previous[number] = signal.signal(number, self._handle)
        set_signals_request_stops(True)
        return self

    def __exit__(self, *exc_info) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        set_signals_request_stops(False)
        clear_stop_request()  # the nodes it stopped are gone

    def _handle(self, number, frame) -> None:
        self.stopped.set()
        request_stop()


def params_files(args: Sequence[str]) -> List[str]:
    """Return the files of the ``--params-file`` arguments among the ROS arguments of ``args``."""
    files, in_ros_args = [], False
    for index, arg in enumerate(args):
        if arg == '--ros-args':
            in_ros_args = True
        elif arg == '--':
            in_ros_args = False
        elif in_ros_args and arg == '--params-file' and index + 1 < len(args):
            files.append(args[index + 1])
    return files


def read_params_file(path: str) -> dict:
    """Return a parameters file's content.

    Raises:
        ValueError: The file is missing, unreadable, not YAML, or not a mapping of node names;
            the message names the file and the problem in one line.
    """
    try:
        with open(path, encoding='utf-8') as stream:
            content = yaml.safe_load(stream)
    except OSError as error:
        raise ValueError(f'cannot read parameters file {path}: {error.strerror}') from None
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        where = getattr(error, 'problem_mark', None)
        line = f' at line {where.line + 1}' if where is not None else ''
        raise ValueError(f'parameters file {path} is not valid YAML{line}') from None
    if not isinstance(content, dict):
        raise ValueError(f'parameters file {path} holds no node sections (expected '
                         "'<node name>: {ros__parameters: {...}}')")
    return content


def section_matches(key: str, node_name: str) -> bool:
    """Whether a parameters-file section ``key`` applies to the node of full name ``node_name``.

    As rcl matches them: a key without a leading ``/`` is absolute all the same, ``*`` stands
    for one name token or part of one, and ``/**`` for any number of leading tokens.
    """
    key = key if key.startswith('/') else '/' + key
    pattern = ''
    for token in key.split('/')[1:]:
        if token == '**':
            pattern += '(/[^/]+)*'
        else:
            pattern += '/' + re.escape(token).replace(r'\*', '[^/]*')
    return re.fullmatch(pattern, node_name) is not None


def unmatched_params_files(files: Sequence[str], node_names: Sequence[str]
                           ) -> List[Tuple[str, List[str]]]:
    """Return ``(file, its sections)`` for each parameters file no section of which applies."""
    unmatched = []
    for path in files:
        keys = [str(key) for key in read_params_file(path)]
        if not any(section_matches(key, name) for key in keys for name in node_names):
            unmatched.append((path, keys))
    return unmatched


def run_nodes(factories: Sequence[Callable[[], Node]], make_executor: Callable[[], Executor],
              config_errors: Tuple[Type[Exception], ...], args: Optional[List[str]] = None
              ) -> int:
    """Start rclpy, build the nodes, spin them on one executor until a signal.

    Args:
        factories: Build one node each, in order (after ``rclpy.init``).
        make_executor: Builds the executor.
        config_errors: Exceptions by which a node refuses its parameters, having logged the
            reason as one fatal line.
        args: Command-line arguments for ``rclpy.init`` (None: ``sys.argv``).

    Returns:
        0 after Ctrl-C or SIGTERM (at any moment), :data:`EXIT_BAD_CONFIG` when a node refused
        its parameters or a parameters file cannot be read.
    """
    args = list(sys.argv if args is None else args)
    logger = get_logger('semseg_ros')
    try:
        files = params_files(args)
        for path in files:
            read_params_file(path)
    except ValueError as error:
        logger.fatal(str(error))
        return EXIT_BAD_CONFIG
    nodes = []
    with StopOnSignal() as stop:
        try:
            with rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO):
                executor = make_executor()
                try:
                    for factory in factories:
                        raise_if_stop_requested()
                        nodes.append(factory())
                    raise_if_stop_requested()
                    warn_unmatched(files, nodes)
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
        except StopRequested:
            pass  # a signal during start-up: a request to stop, not an error
    return 0


def warn_unmatched(files: Sequence[str], nodes: Sequence[Node]) -> None:
    """Warn, through the first node's logger, about parameters files that apply to no node."""
    names = [node.get_fully_qualified_name() for node in nodes]
    for path, keys in unmatched_params_files(files, names):
        nodes[0].get_logger().warning(
            f'parameters file {path} has no section for {", ".join(names)} (its sections: '
            f'{", ".join(keys) or "none"}); none of its parameters apply. Name the node '
            "(e.g. '/**:' for any node)")
