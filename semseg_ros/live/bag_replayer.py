"""``semseg bag replay``: live evaluation of the nodes through DDS, from a bag.

The bag's images are published with their original timing (scaled by ``--rate-factor``) as
serialized messages, exactly as ``ros2 bag play`` does, into nodes that are already running
or that this command starts as subprocesses (the segmentation node, and with
``--keyframes`` the keyframe node). Everything the nodes publish on the recorded topics is
received as serialized messages (``raw=True``) and written to a rosbag2 bag together with the
published images: images timed at publish, outputs at receipt, one clock. That recording is
then evaluated by :func:`semseg_ros.bags.evaluate.evaluate_recording` (latency median and p95,
processed and dropped frames, achieved FPS, mIoU against the bag's ground truth).

Recording subscriptions are made once a topic's publishers are discovered, with their
reliability and durability (as ``ros2 bag record`` adapts to publishers); a latched topic
(the segmentation node's LabelInfo) is written as offered latched, so ``ros2 bag play``
republishes it so. The replayer and
the nodes it starts use the package's Fast DDS profile for camera-size images
(:mod:`semseg_ros.live.dds`).
"""

from dataclasses import dataclass, field
import importlib
from pathlib import Path
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from diagnostic_msgs.msg import DiagnosticArray
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from tqdm import tqdm

from semseg_ros.bags.evaluate import AUTO, evaluate_recording, LiveReport, OutputTopics
from semseg_ros.bags.messages import header_stamp_ns
from semseg_ros.bags.storage import (BagWriter, check_distinct, COMPRESSED_IMAGE, find_topic,
                                     IMAGE, IMAGE_TYPES, LABEL_INFO, LATCHED, read_messages,
                                     reading)
from semseg_ros.live.dds import large_image_profile, node_environment
from semseg_ros.live.node_processes import parameter_arguments, wait_until

DEFAULT_WAIT_S = 120.0
# What the report keeps of each launched node's diagnostics: the runtime that really ran.
RUNTIME_KEYS = ('backend', 'providers', 'precision', 'device', 'input_size')


class ReplayError(RuntimeError):
    """The live replay could not run: a node did not start or the outputs never came.

    Attributes:
        exit_code: Exit code of the node that ended the replay, or None.
    """

    def __init__(self, message: str, exit_code: Optional[int] = None):
        super().__init__(message)
        self.exit_code = exit_code


def message_class(msgtype: str):
    """Return the rclpy message class of a type name like ``sensor_msgs/msg/Image``."""
    package, kind, name = msgtype.split('/')
    return getattr(importlib.import_module(f'{package}.{kind}'), name)


class BagReplayer(Node):
    """Publishes serialized images and records serialized outputs into a BagWriter.

    Args:
        topic: The camera topic to publish on.
        msgtype: Its message type (``sensor_msgs/msg/Image`` or ``CompressedImage``).
        record: Topic -> message type of the outputs to record.
        bag: Where published and received messages go.
    """

    def __init__(self, topic: str, msgtype: str, record: Dict[str, str], bag: BagWriter,
                 **kwargs):
        super().__init__('bag_replayer', **kwargs)
        self.bag = bag
        self._input = bag.add_topic(topic, msgtype)
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                         reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.VOLATILE)
        self.publisher = self.create_publisher(message_class(msgtype), topic, qos)
        self._wanted = dict(record)
        self.subscriptions_by_topic = {}
        self.received: Dict[str, int] = dict.fromkeys(record, 0)
        self.stamps: Dict[str, set] = {t: set() for t in record}
        self.last_receipt = time.monotonic()
        self._lock = threading.Lock()
        # The launched nodes report their DDS matching on /diagnostics (key -> value by
        # node): the replay starts once every link is matched at both ends.
        self.node_diagnostics: Dict[str, Dict[str, str]] = {}
        self.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics, 10)
        self.discover()
        self.create_timer(0.2, self.discover)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            node = status.name.split(': ')[0]
            with self._lock:
                self.node_diagnostics[node] = {kv.key: kv.value for kv in status.values}

    def last_diagnostics(self) -> Dict[str, Dict[str, str]]:
        """Return each node's last diagnostics (key -> value), by node name without ``/``."""
        with self._lock:
            return {name.lstrip('/'): dict(values)
                    for name, values in self.node_diagnostics.items()}

    def missing_matches(self, node: str, minimum: Dict[str, int]) -> List[str]:
        """Return the ``key (value < n)`` of node's last diagnostics short of ``minimum``."""
        with self._lock:
            values = self.node_diagnostics.get('/' + node.strip('/'))
        if values is None:
            return [f'{node}: no diagnostics yet']
        missing = []
        for key, count in minimum.items():
            value = values.get(key, '')
            if not (value.isdigit() and int(value) >= count):
                missing.append(f'{node} {key} {value or "?"} < {count}')
        return missing

    def discover(self) -> None:
        """Subscribe to every wanted topic whose publishers have appeared."""
        for topic, msgtype in self._wanted.items():
            if topic in self.subscriptions_by_topic:
                continue
            publishers = self.get_publishers_info_by_topic(topic)
            if not publishers:
                continue
            reliable = all(p.qos_profile.reliability == ReliabilityPolicy.RELIABLE
                           for p in publishers)
            latched = all(p.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL
                          for p in publishers)
            qos = QoSProfile(
                history=HistoryPolicy.KEEP_LAST, depth=100,
                reliability=ReliabilityPolicy.RELIABLE if reliable
                else ReliabilityPolicy.BEST_EFFORT,
                durability=DurabilityPolicy.TRANSIENT_LOCAL if latched
                else DurabilityPolicy.VOLATILE)
            connection = self.bag.add_topic(topic, msgtype, [LATCHED] if latched else ())
            self.subscriptions_by_topic[topic] = self.create_subscription(
                message_class(msgtype), topic, self._recorder(topic, connection), qos,
                raw=True)

    def _recorder(self, topic: str, connection) -> Callable[[bytes], None]:
        def record(raw: bytes) -> None:
            now = time.time_ns()
            self.bag.write(connection, now, raw)
            try:
                stamp = header_stamp_ns(raw)
            except ValueError:
                stamp = None  # evaluation reports it; recording goes on
            with self._lock:
                self.received[topic] += 1
                if stamp is not None:
                    self.stamps[topic].add(stamp)
                self.last_receipt = time.monotonic()
        return record

    def matched(self, topic: str) -> bool:
        """Whether a recording subscription on topic is matched with a publisher."""
        subscription = self.subscriptions_by_topic.get(topic)
        return subscription is not None and subscription.get_publisher_count() > 0

    def publish_raw(self, raw: bytes) -> None:
        """Publish one serialized image now and record it at its publish time."""
        now = time.time_ns()
        self.publisher.publish(raw)
        self.bag.write(self._input, now, raw)

    def answered(self, topic: str, stamps: Sequence[int]) -> int:
        """How many of the given stamps have arrived on an output topic."""
        with self._lock:
            return len(self.stamps[topic].intersection(stamps))


@dataclass
class LaunchOptions:
    """Which nodes ``replay_bag`` starts and how.

    Attributes:
        segmentation_params: ``-p name:=value`` parameters of the segmentation node.
        keyframes: Also start the keyframe node.
        keyframe_params: Its parameters.
        log_dir: Where the nodes' output goes (one ``<node>.log`` each).
    """

    segmentation_params: Dict[str, object] = field(default_factory=dict)
    keyframes: bool = False
    keyframe_params: Dict[str, object] = field(default_factory=dict)
    log_dir: Optional[Path] = None


class NodeProcess:
    """A node run as ``python -m <module> --ros-args ...``, its output in a log file."""

    def __init__(self, name: str, module: str, ros_args: List[str], log_path: Path,
                 subscribes: Sequence[str] = ()):
        """Start the node with this process's environment (ROS_DOMAIN_ID, discovery...).

        Fast DDS gets the package's large-image profile unless the environment names one.
        ``subscribes`` names the replayed topics it reads (``'image'``, ``'label_mask'``),
        so the replay can wait until every one of them is matched.
        """
        self.name = name
        self.subscribes = tuple(subscribes)
        self.log_path = log_path
        self._log = open(log_path, 'wb')
        self.process = subprocess.Popen(
            [sys.executable, '-m', module, '--ros-args', '-r', f'__node:={name}', *ros_args],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=node_environment())

    def check(self) -> None:
        """Raise ReplayError with the node's last output if it has exited."""
        code = self.process.poll()
        if code is not None:
            raise ReplayError(f'{self.name} exited with code {code} before the replay ended; '
                              f'its output ({self.log_path}):\n{self.log_tail()}', code)

    def log_tail(self, lines: int = 15) -> str:
        """Return the last lines the node wrote."""
        self._log.flush()
        text = self.log_path.read_text(errors='replace').strip().splitlines()
        return '\n'.join(text[-lines:])

    def stop(self, timeout_s: float = 10.0) -> Optional[int]:
        """Stop the node like Ctrl-C (then SIGTERM, then SIGKILL); return its exit code."""
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            if self.process.poll() is not None:
                break
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                continue
        self._log.close()
        return self.process.poll()


def launch_nodes(options: LaunchOptions, topic: str, msgtype: str, topics: OutputTopics,
                 log_dir: Path) -> List[NodeProcess]:
    """Start the segmentation node (and the keyframe node) wired to topic and the outputs."""
    log_dir.mkdir(parents=True, exist_ok=True)
    seg_name = topics.label_mask.strip('/').split('/')[0]
    params = dict(options.segmentation_params)
    base = topic
    if msgtype == COMPRESSED_IMAGE:
        params['input_transport'] = 'compressed'
        base = topic.removesuffix('/compressed')
    nodes = [NodeProcess(seg_name, 'semseg_ros.nodes.segmentation_node',
                         ['-r', f'image:={base}', *parameter_arguments(params)],
                         log_dir / f'{seg_name}.log', subscribes=('image',))]
    if options.keyframes:
        kf_name = topics.scores.strip('/').split('/')[0]
        kf_params = dict(options.keyframe_params)
        if msgtype == COMPRESSED_IMAGE:  # the keyframe node reads raw images only
            kf_params.setdefault('use_image', False)
        reads = ('label_mask', 'image') if kf_params.get('use_image', True) else ('label_mask',)
        nodes.append(NodeProcess(
            kf_name, 'semseg_ros.nodes.keyframe_node',
            ['-r', f'label_mask:={topics.label_mask}', '-r', f'image:={base}',
             *parameter_arguments(kf_params)], log_dir / f'{kf_name}.log', subscribes=reads))
    return nodes


def _wait_for(condition: Callable[[], bool], timeout_s: float, nodes: Sequence[NodeProcess],
              what: Callable[[], str]) -> None:
    """Wait until condition holds; raise ReplayError naming what is missing on timeout."""
    def check_nodes() -> None:
        for node in nodes:
            node.check()

    if not wait_until(condition, timeout_s, check=check_nodes):
        logs = ''.join(f'\n--- {n.name} ({n.log_path}):\n{n.log_tail()}' for n in nodes)
        raise ReplayError(f'gave up after {timeout_s:.0f} s waiting for {what()}{logs}')


def replay_bag(bag, topic: str = '/camera/image_raw', out=None, rate_factor: float = 1.0,
               launch: Optional[LaunchOptions] = None, topics: OutputTopics = OutputTopics(),
               labels_topic: str = AUTO, class_set: str = 'camvid', storage: str = 'mcap',
               overwrite: bool = False, wait_s: float = DEFAULT_WAIT_S, settle_s: float = 3.0,
               progress: bool = True) -> LiveReport:
    """Replay a bag's images live through the nodes, record their outputs, and evaluate.

    Args:
        bag: The bag to replay.
        topic: Its image topic (sensor_msgs/Image, or CompressedImage on ``.../compressed``).
        out: Recording to keep (a bag folder, written atomically); None: a temporary one.
        rate_factor: Playback speed (2.0 = twice as fast as recorded).
        launch: Start these nodes as subprocesses; None: use nodes already running.
        topics: The nodes' output topics (the node names are taken from them).
        labels_topic: Ground-truth topic of ``bag`` (``'auto'``, a topic, or ``''``).
        class_set: Class set of the label ids.
        storage: Format of the recording.
        overwrite: Replace an existing recording at ``out``.
        wait_s: Longest wait for the nodes to come up (model loading included).
        settle_s: After the last image, how long to wait for outputs once they stop coming.
        progress: Show a progress bar.

    Raises:
        BagError: The bag is unusable (missing, corrupt, no such topic) or ``out`` exists.
        ReplayError: A node died or never answered.
        ValueError: A bad rate factor.
    """
    if not rate_factor > 0:
        raise ValueError(f'rate factor must be positive, got {rate_factor!r}')
    if out is not None:
        check_distinct(bag, out)
    with reading(bag) as reader:
        msgtype = find_topic(reader, topic, IMAGE_TYPES)[0].msgtype
    tmpdir = Path(tempfile.mkdtemp(prefix='semseg_replay_'))
    recording = Path(out) if out is not None else tmpdir / 'recording'
    record = {topics.label_mask: IMAGE, topics.color_mask: IMAGE}
    try:  # the class names, so that the recording replays into Nav2 (docs/nodes.md)
        message_class(LABEL_INFO)
        record[topics.label_info] = LABEL_INFO
    except ImportError:
        pass  # no vision_msgs: the node publishes no LabelInfo either
    if launch is None or launch.keyframes:
        record.update({topics.scores: 'diagnostic_msgs/msg/DiagnosticArray',
                       topics.keyframe: 'std_msgs/msg/Header'})
    nodes: List[NodeProcess] = []
    try:
        with BagWriter(recording, storage, overwrite) as writer:
            try:
                if launch is not None:
                    nodes = launch_nodes(launch, topic, msgtype, topics,
                                         launch.log_dir or tmpdir / 'logs')
                stamps, diagnostics = _run_live(bag, topic, msgtype, record, writer,
                                                rate_factor, topics, nodes, wait_s, settle_s,
                                                progress)
            finally:
                for node in nodes:
                    node.stop()
        report = evaluate_recording(recording, topic, topics, ground_truth=bag,
                                    labels_topic=labels_topic, class_set=class_set)
    except ReplayError:
        # The partial recording is gone already; keep the node logs the message points to.
        if not (tmpdir / 'logs').is_dir():
            shutil.rmtree(tmpdir, ignore_errors=True)
        raise
    except BaseException:
        shutil.rmtree(tmpdir, ignore_errors=True)
        raise
    shutil.rmtree(tmpdir, ignore_errors=True)
    report.info.update(bag=str(bag), rate_factor=rate_factor, frames_sent=len(stamps),
                       recording=None if out is None else str(recording),
                       launched=[n.name for n in nodes],
                       runtimes={n.name: {key: value for key, value
                                          in diagnostics.get(n.name, {}).items()
                                          if key in RUNTIME_KEYS} for n in nodes})
    return report


def _run_live(bag, topic: str, msgtype: str, record: Dict[str, str], writer: BagWriter,
              rate_factor: float, topics: OutputTopics, nodes: Sequence[NodeProcess],
              wait_s: float, settle_s: float, progress: bool
              ) -> Tuple[List[int], Dict[str, Dict[str, str]]]:
    """Publish the images in time, recording outputs.

    Returns:
        The stamps published, and the launched nodes' last diagnostics by node name.
    """
    context = rclpy.Context()
    with large_image_profile():  # camera-size images through shared memory
        rclpy.init(args=[], context=context)
    executor = SingleThreadedExecutor(context=context)
    replayer = BagReplayer(topic, msgtype, record, writer, context=context)
    executor.add_node(replayer)
    spinner = threading.Thread(target=executor.spin, name='replay_executor', daemon=True)
    spinner.start()
    required = [topics.label_mask] + ([topics.scores] if any(
        n.name == topics.scores.strip('/').split('/')[0] for n in nodes) else [])
    sent: List[int] = []
    # Images and masks are volatile (and images often best effort): whatever is published
    # before a reader matched is lost to it, so wait for every launched reader.
    image_readers = max(1, sum('image' in n.subscribes for n in nodes))
    mask_readers = 1 + sum('label_mask' in n.subscribes for n in nodes)  # + our recorder
    # Seen from the launched nodes (their diagnostics): each input matched with a publisher,
    # and the segmentation node's mask publisher with every mask reader.
    minimum = {n.name: {f'matched_publishers/{t}': 1 for t in n.subscribes} for n in nodes}
    if nodes:
        minimum[nodes[0].name]['matched_subscribers/label_mask'] = mask_readers

    def unmatched() -> List[str]:
        return [m for name, counts in minimum.items()
                for m in replayer.missing_matches(name, counts)]

    try:
        _wait_for(lambda: replayer.publisher.get_subscription_count() >= image_readers
                  and replayer.count_subscribers(topics.label_mask) >= mask_readers
                  and all(replayer.matched(t) for t in required) and not unmatched(),
                  wait_s, nodes,
                  lambda: f'{image_readers} subscriber(s) on {topic} '
                          f'({replayer.publisher.get_subscription_count()} so far), '
                          f'{mask_readers} on {topics.label_mask}, publishers of '
                          f'{", ".join(required)} and matching in the nodes: '
                          f'{"; ".join(unmatched()) or "done"}')
        if not nodes:
            # Nodes started by the user report nothing we can rely on: discovery is seen
            # from here only, so give the matching at their end a moment.
            time.sleep(0.5)
        with reading(bag) as reader:
            connections = find_topic(reader, topic, IMAGE_TYPES)
            total = sum(c.msgcount for c in connections)
            start_wall, start_bag = time.monotonic(), None
            for _, timestamp, raw in tqdm(read_messages(reader, connections), total=total,
                                          desc='bag replay', unit='frame',
                                          disable=not progress):
                start_bag = timestamp if start_bag is None else start_bag
                delay = start_wall + (timestamp - start_bag) / 1e9 / rate_factor \
                    - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                replayer.publish_raw(raw)
                sent.append(header_stamp_ns(raw))
                for node in nodes:
                    node.check()
        deadline = time.monotonic() + max(settle_s, 1.0) * 10
        while time.monotonic() < deadline:
            done = all(replayer.answered(t, sent) >= len(sent) for t in required)
            if done or time.monotonic() - replayer.last_receipt > settle_s:
                break
            time.sleep(0.05)
    finally:
        executor.shutdown()
        replayer.destroy_node()
        rclpy.try_shutdown(context=context)
        spinner.join(timeout=5.0)
    return sent, replayer.last_diagnostics()
