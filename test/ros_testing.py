"""The one helper module of the tests that run nodes: processes, probes, CLI runs, stamps.

* :class:`NodeProcess` runs a node executable with ``--ros-args``, its log in a file;
* :class:`Probe` is an in-process node on its own context that records topics, publishes,
  reads diagnostics and sets parameters;
* :func:`run_cli` runs ``semseg`` as a process; :func:`stamp_ns` reads a header's stamp;
* :func:`image_msg`, :func:`send` and :func:`wait_ready` drive the segmentation node.
"""

from collections import defaultdict
import json
import os
from pathlib import Path
import subprocess
import sys
import threading
import time

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
import pytest
import rclpy
from rclpy._rclpy_pybind11 import InvalidHandle
from rclpy.context import Context
from rclpy.executors import ExternalShutdownException, ShutdownException
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import Image
from std_msgs.msg import String

REPO_ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 90.0  # generous: two shared cores, torch import and DDS discovery
WAIT = 20.0

# The Nav2 recipe's remappings (docs/nodes.md): the node's outputs under the topic names of
# Nav2's semantic segmentation demo, which config/nav2/semantic_segmentation_layer.yaml reads.
# RIHS01 hash of vision_msgs 4.1.1's LabelInfo: what rosidl compiled into an independent ROS 2
# build of vision_msgs (its generated label_info__description.c), and what rosbags' own RIHS01
# code gives for the 4.1.1 definition (docs/nodes.md says how it was checked).
RELEASED_LABEL_INFO_HASH = \
    'RIHS01_3d37df4015cdf660cc851c51897f2acd957e1ca6205ba0a99aebffb9406b0783'
NAV2_REMAPPINGS = {'~/label_mask': '/segmentation/mask',
                   '~/confidence': '/segmentation/confidence',
                   '~/label_info': '/segmentation/label_info'}


def stamp_ns(header) -> int:
    """Return a message header's stamp in nanoseconds."""
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def run_cli(*args, cwd=REPO_ROOT, timeout: float = 300):
    """Run ``semseg ARGS`` as a process of this checkout; return the CompletedProcess."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    return subprocess.run([sys.executable, '-m', 'semseg_ros.cli', *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def run_cli_here(capsys, *args) -> subprocess.CompletedProcess:
    """Run ``semseg ARGS`` in this test process; return what :func:`run_cli` returns.

    For commands whose own work is the point of the test: no interpreter start and no
    import of torch, and an exporter warmed up by earlier tests (seconds each). The command's
    output is read from ``capsys``.
    """
    from semseg_ros import cli
    capsys.readouterr()
    try:
        code = cli.main([str(arg) for arg in args])
    except SystemExit as exit_:  # argparse's usage errors
        code = exit_.code
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(['semseg', *map(str, args)], code, out, err)


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


class NodeProcess:
    """A node subprocess whose output (the ROS log) goes to a file.

    Args:
        tmp_dir: Folder of the log (graphs go to the run's cache, $SEMSEG_ROS_CACHE).
        label: Name of the log file.
        ros_args: What follows ``--ros-args``.
        module: The node's module (default: the segmentation node).
        python_path: Folders searched for modules before the repository and the venv.
    """

    def __init__(self, tmp_dir: Path, label: str, ros_args,
                 module: str = 'semseg_ros.nodes.segmentation_node', python_path=()):
        self.log_path = tmp_dir / f'{label}.log'
        env = dict(os.environ)
        env['PYTHONPATH'] = os.pathsep.join(
            [*map(str, python_path), str(REPO_ROOT)]
            + ([env['PYTHONPATH']] if env.get('PYTHONPATH') else []))
        env['PYTHONUNBUFFERED'] = '1'
        env['RCUTILS_LOGGING_BUFFERED_STREAM'] = '0'
        with open(self.log_path, 'w') as log:
            self.process = subprocess.Popen(
                [sys.executable, '-m', module, '--ros-args', *ros_args], env=env,
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def log(self) -> str:
        """Return everything the node has written so far."""
        return self.log_path.read_text(errors='replace')

    def wait_for_log(self, text: str, timeout: float = START_TIMEOUT) -> str:
        """Wait until the log contains ``text``; fail with the log if the node exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.log()
            if text in log:
                return log
            if self.process.poll() is not None:
                pytest.fail(f'node exited ({self.process.returncode}) before logging '
                            f'{text!r}:\n{self.log()}')
            time.sleep(0.1)
        pytest.fail(f'node did not log {text!r} within {timeout} s:\n{self.log()}')

    def wait_exit(self, timeout: float = 60.0) -> int:
        """Wait for the process to exit; return its exit code."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f'node did not exit within {timeout} s:\n{self.log()}')

    def signal(self, sig) -> None:
        """Send ``sig`` if the process still runs."""
        if self.process.poll() is None:
            self.process.send_signal(sig)


def stop_all(nodes, signals) -> None:
    """Signal every node at once, then assert each exits with 0 and no traceback."""
    assert len(signals) == len(nodes), 'one signal per node'
    for node, sig in zip(nodes, signals):
        node.signal(sig)
    for node in nodes:
        assert_clean_exit(node, node.wait_exit())


def assert_clean_exit(node: NodeProcess, code: int) -> None:
    """Exit code 0 and no Python traceback in the log."""
    log = node.log()
    assert code == 0, f'exit code {code}:\n{log}'
    assert 'Traceback' not in log, log


class Probe:
    """An in-process node on its own context, spun by a SingleThreadedExecutor thread."""

    def __init__(self, name: str = 'test_probe'):
        self.context = Context()
        rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = Node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._condition = threading.Condition()
        self.messages = defaultdict(list)  # topic -> [(monotonic receive time, message)]
        self._parameter_clients = {}
        self._spinner = threading.Thread(
            target=spin_until_shutdown, args=(self.executor,), daemon=True)
        self._spinner.start()
        self.subscribe(DiagnosticArray, '/diagnostics', 50)

    def close(self):
        """Stop spinning and shut the context down."""
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)

    def subscribe(self, msg_type, topic: str, qos=10):
        """Record every message on ``topic``; return the subscription."""
        def record(message):
            with self._condition:
                self.messages[topic].append((time.monotonic(), message))
                self._condition.notify_all()
        return self.node.create_subscription(msg_type, topic, record, qos)

    def wait_for(self, predicate, timeout: float = WAIT, what: str = 'a message', tick=None,
                 tick_period: float = 0.25):
        """Wait until ``predicate()`` returns something truthy and return it.

        ``tick`` (publishing a frame, say) is called at start and every ``tick_period`` s.
        """
        deadline = time.monotonic() + timeout
        next_tick = 0.0
        while True:
            if tick is not None and time.monotonic() >= next_tick:
                tick()
                next_tick = time.monotonic() + tick_period
            with self._condition:
                result = predicate()
                if result:
                    return result
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    pytest.fail(f'no {what} within {timeout} s')
                self._condition.wait(min(remaining, 0.1 if tick else 0.5))

    def stamped(self, topic: str, stamp: Time):
        """Return the messages on ``topic`` whose header carries ``stamp``."""
        return [m for _, m in self.messages[topic]
                if (m.header.stamp.sec, m.header.stamp.nanosec) == (stamp.sec, stamp.nanosec)]

    def publisher(self, msg_type, topic: str, qos):
        """Create a publisher and wait until the node's subscription matched it."""
        publisher = self.node.create_publisher(msg_type, topic, qos)
        self.wait_for(lambda: publisher.get_subscription_count() > 0, START_TIMEOUT,
                      f'subscriber on {topic}')
        return publisher

    def diagnostics(self, node_name: str, after: float, predicate=lambda values: True,
                    timeout: float = WAIT, tick=None):
        """Return the values of the first diagnostics of ``node_name`` received after
        ``after`` (a monotonic time) that satisfy ``predicate``; ``tick`` as in wait_for."""
        def find():
            for received, array_msg in list(self.messages['/diagnostics']):
                for status in array_msg.status:
                    if received > after and status.name.startswith(node_name + ':'):
                        values = {kv.key: kv.value for kv in status.values}
                        values.update(level=status.level, message=status.message)
                        if predicate(values):
                            return values
            return None
        return self.wait_for(find, timeout, f'diagnostics of {node_name}', tick)

    def set_parameters(self, node_name: str, **values):
        """Set parameters of a remote node; return the SetParametersResult list."""
        client = self._parameter_clients.get(node_name)
        if client is None:
            client = AsyncParameterClient(self.node, node_name)
            assert client.wait_for_services(timeout_sec=WAIT), f'no parameters on {node_name}'
            self._parameter_clients[node_name] = client
        future = client.set_parameters([Parameter(k, value=v) for k, v in values.items()])
        self.wait_for(future.done, WAIT, 'parameter reply')
        return future.result().results


_stamp_counter = iter(range(1, 1_000_000))


def next_stamp() -> Time:
    """Return a stamp no other frame of this test process carries."""
    n = next(_stamp_counter)
    return Time(sec=1_000_000 + n, nanosec=n * 1000)


def image_msg(fields, stamp=None, frame_id='test_camera_optical') -> Image:
    """Build a sensor_msgs/Image from conversion fields."""
    encoding, height, width, step, data = fields
    msg = Image(encoding=encoding, height=height, width=width, step=step, data=data)
    msg.header.stamp = stamp or next_stamp()
    msg.header.frame_id = frame_id
    return msg


def send(probe: Probe, publisher, msg, node_name: str, outputs, timeout: float = WAIT):
    """Publish ``msg`` (again every 3 s, in case a best-effort sample was lost) until every
    output topic has a message with its stamp; return {output: message}."""
    topics = {name: f'{node_name}/{name}' for name in outputs}
    try:
        probe.wait_for(
            lambda: all(probe.stamped(t, msg.header.stamp) for t in topics.values()),
            timeout, f'outputs {list(topics)}', tick=lambda: publisher.publish(msg),
            tick_period=3.0)
    except pytest.fail.Exception:
        got = {t: len(probe.stamped(t, msg.header.stamp)) for t in topics.values()}
        diagnostics = [{kv.key: kv.value for kv in s.values} for _, a in
                       probe.messages['/diagnostics'][-1:] for s in a.status]
        pytest.fail(f'outputs of the frame: {got}; last diagnostics: {diagnostics}')
    return {name: probe.stamped(t, msg.header.stamp)[0] for name, t in topics.items()}


def wait_ready(probe: Probe, node: NodeProcess, node_name: str):
    """Wait for the node's class_info (so it is up and discovered); return the info."""
    topic = f'{node_name}/class_info'
    if not probe.messages[topic]:
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        probe.subscribe(String, topic, latched)
        node.wait_for_log('segmenting ')
        probe.wait_for(lambda: probe.messages[topic], START_TIMEOUT, f'{topic}')
    return json.loads(probe.messages[topic][0][1].data)
