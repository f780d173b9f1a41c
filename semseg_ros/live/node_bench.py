"""The segmentation node end to end, timed next to the Segmenter alone (``semseg bench --node``).

The node runs as its own process, as on a robot; this process is the camera: it publishes
rgb8 frames at a set rate and times each one from publish to the arrival of its label mask
(matched by header stamp). Between two frames, once a frame's mask is back and the node is
idle, it times the Segmenter alone (``segment()``: resize, inference, resize back) on the same
frame and configuration, so both series are sampled in the same moments: a machine whose speed
drifts (other jobs, a VM's neighbours) moves both, and the ratio of their medians is what the
node's transport, conversion and threading cost.

The camera publishes serialized frames and reads the stamps of the masks from their serialized
headers, as a C++ camera driver would, so no Python message (0.9 MB of pixels copied into and
out of a message object) is counted against the node. Before the node, the same camera times
:mod:`semseg_ros.live.transport_echo`, a stand-in that answers each frame at once with an empty
mask: the transport floor, which no change to the node can remove.

By default both sides are best effort, as camera drivers publish (REP-2003), over the
package's Fast DDS profile (config/fastdds_large_images.xml: a shared-memory segment large
enough for camera images; without it Fast DDS sends them as UDP fragments and loses most),
unless ``FASTDDS_DEFAULT_PROFILES_FILE`` names another. ``reliable`` measures reliable QoS.
"""

from dataclasses import asdict, dataclass, field
import os
from pathlib import Path
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Dict, List, Optional

from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import String

from semseg_ros.core.latency import latency_summary
from semseg_ros.core.options import declared_options
from semseg_ros.core.segmenter import Segmenter, SegmenterConfig
from semseg_ros.live.dds import large_image_profile, node_environment, profile_file
from semseg_ros.live.node_processes import parameter_arguments, wait_until
from semseg_ros.messages import cdr

NODE_NAME = 'bench_segmentation'
CAMERA_TOPIC = '/bench/image'
CAMERA_FRAME = 'bench_camera'
NODE_START_TIMEOUT_S = 180.0
SEGMENTATION_NODE = 'semseg_ros.nodes.segmentation_node'
TRANSPORT_ECHO = 'semseg_ros.live.transport_echo'
# Default rate: a frame every three Segmenter medians leaves room for the node's answer and
# the Segmenter's own timing before the next frame.
PERIODS_PER_SEGMENTER_MEDIAN = 3.0
SETTLE_S = 0.002
# Segmenter calls timed back to back before the node (the rate; a figure of their own).
BACK_TO_BACK_CALLS = 30


@dataclass
class NodeBenchConfig:
    """One node benchmark.

    Attributes:
        segmenter: The Segmenter both measurements run (the node gets it as parameters).
        camera_width: Width of the published rgb8 frames.
        camera_height: Height of the published rgb8 frames.
        rate_hz: Frames per second published (0: one every three Segmenter medians, so
            the node is not saturated and latency is not queueing).
        frames: Frames published (to the node, and as many to the transport echo).
        warmup: Leading frames not counted (both measurements).
        reliable: Reliable camera and subscription instead of best effort.
    """

    segmenter: SegmenterConfig = field(default_factory=SegmenterConfig)
    camera_width: int = 640
    camera_height: int = 480
    rate_hz: float = 0.0
    frames: int = 200
    warmup: int = 20
    reliable: bool = False

    def _common_arguments(self) -> List[str]:
        return ['--ros-args', '-r', f'__node:={NODE_NAME}', '-r', f'image:={CAMERA_TOPIC}',
                '-p', f'qos_reliability:={"reliable" if self.reliable else "best_effort"}']

    def node_arguments(self) -> List[str]:
        """Return the segmentation node's ``--ros-args`` for this configuration."""
        parameters = {name: getattr(self.segmenter, name)
                      for name, (default, _) in declared_options(SegmenterConfig).items()
                      if getattr(self.segmenter, name) != default}
        return self._common_arguments() + parameter_arguments(parameters)

    def echo_arguments(self) -> List[str]:
        """Return the transport echo's ``--ros-args`` (same name, topics and QoS)."""
        return self._common_arguments()


def gradient_frame(width: int, height: int) -> np.ndarray:
    """Return a synthetic ``height x width`` RGB frame (colour gradients)."""
    x, y = np.meshgrid(np.linspace(0, 255, width), np.linspace(0, 255, height))
    return np.dstack([x, y, 255 - x]).astype(np.uint8)


def _segment_ms(segmenter: Segmenter, frame: np.ndarray) -> float:
    """Return the milliseconds one ``segment()`` call on ``frame`` takes."""
    start = time.perf_counter()
    segmenter.segment(frame)
    return (time.perf_counter() - start) * 1e3


def _start_process(module: str, arguments: List[str], cache: Path, log) -> subprocess.Popen:
    # A cache of its own: the node exports its graph there, as a fresh robot would. Its
    # output goes to a file: a pipe nobody reads while timing could fill and stall it.
    env = dict(node_environment(), SEMSEG_ROS_CACHE=str(cache))
    package_root = str(Path(__file__).resolve().parents[2])
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [package_root, env.get('PYTHONPATH')]))
    return subprocess.Popen([sys.executable, '-m', module, *arguments], env=env,
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)


class _Camera:
    """The benchmark's camera: publishes serialized frames, stamps the masks' arrivals."""

    def __init__(self, config: NodeBenchConfig):
        self.config = config
        self.context = rclpy.Context()
        with large_image_profile():  # Fast DDS reads it when the participant is created
            rclpy.init(context=self.context)
            self.node = rclpy.create_node('bench_camera', context=self.context)
        self.arrived = threading.Condition()
        self.received: Dict[int, float] = {}
        self.diagnostics: Dict[str, str] = {}
        self.class_info = threading.Event()
        node = self.node
        node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics, 10)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        node.create_subscription(String, f'/{NODE_NAME}/class_info',
                                 lambda _: self.class_info.set(), latched)
        self.label_sub = node.create_subscription(Image, f'/{NODE_NAME}/label_mask',
                                                  self._on_label, 10, raw=True)
        self.publisher = node.create_publisher(Image, CAMERA_TOPIC, QoSProfile(
            depth=1, reliability=(ReliabilityPolicy.RELIABLE if config.reliable
                                  else ReliabilityPolicy.BEST_EFFORT)))
        # Single-threaded: the callbacks only stamp arrivals, and rclpy's MultiThreadedExecutor
        # busy-polls (two cores of system time here), starving the node it measures.
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(node)
        self._spinner = threading.Thread(target=self.executor.spin, daemon=True)
        self._spinner.start()

    def _on_label(self, payload: bytes) -> None:
        now = time.perf_counter()
        try:
            stamp = cdr.read_image(payload).header.sec
        except cdr.CdrError:
            return  # not a mask of ours; the frame counts as lost
        with self.arrived:
            self.received.setdefault(stamp, now)
            self.arrived.notify_all()

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            if status.name.startswith(f'/{NODE_NAME}:'):
                with self.arrived:
                    self.diagnostics.clear()
                    self.diagnostics.update({kv.key: kv.value for kv in status.values})

    def ready(self, process: subprocess.Popen, needs_class_info: bool) -> bool:
        """Wait until the process's node matches both topics (and has a model, if asked)."""
        return (wait_until(lambda: (self.class_info.is_set() or not needs_class_info
                                    or process.poll() is not None), NODE_START_TIMEOUT_S)
                and process.poll() is None
                and wait_until(lambda: (self.publisher.get_subscription_count() > 0
                                        and self.label_sub.get_publisher_count() > 0)
                               or process.poll() is not None, 30)
                and process.poll() is None)

    def stream(self, frame: np.ndarray, first: int,
               between: Optional[Callable[[], None]] = None) -> Dict[str, Any]:
        """Publish the configured frames, stamped ``first`` on; time each to its mask.

        ``between``, when given, runs after each frame's mask is back (or overdue), before
        the next frame: the Segmenter's turn in the paired measurement.
        """
        config = self.config
        period = 1.0 / config.rate_hz
        sent: Dict[int, float] = {}
        start = time.perf_counter()
        for index in range(first, first + config.frames):
            payload = cdr.write_image(cdr.header_of(index, 0, CAMERA_FRAME), 'rgb8', frame)
            time.sleep(max(0.0, start + (index - first) * period - time.perf_counter()))
            sent[index] = time.perf_counter()
            self.publisher.publish(payload)
            if between is not None:
                with self.arrived:
                    self.arrived.wait_for(lambda: index in self.received, 2 * period)
                # Let the executor thread, woken by the mask, go back to waiting first: it
                # would hold the GIL at the start of the timed call.
                time.sleep(SETTLE_S)
                between()
        duration = time.perf_counter() - start
        last = first + config.frames - 1
        with self.arrived:
            self.arrived.wait_for(lambda: last in self.received, 5.0)
            counted = range(first + config.warmup, last + 1)
            latencies = [(self.received[i] - sent[i]) * 1e3 for i in counted
                         if i in self.received]
        return {'latencies_ms': latencies, 'served': len(latencies), 'counted': len(counted),
                'published_hz': config.frames / duration}

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()


def _run_process(camera: _Camera, module: str, arguments: List[str], what: str,
                 body: Callable[[], Dict[str, Any]]) -> Dict[str, Any]:
    """Start ``module`` as a node process, run ``body`` once it is ready, stop it.

    Raises:
        RuntimeError: The process did not start (its output is in the message).
    """
    with tempfile.TemporaryDirectory(prefix='semseg_bench_') as cache, \
            open(Path(cache) / 'node.log', 'w+') as log:
        process = _start_process(module, arguments, Path(cache), log)
        try:
            if not camera.ready(process, needs_class_info=module == SEGMENTATION_NODE):
                process.kill()
                process.wait(30)
                log.seek(0)
                raise RuntimeError(f'{what} did not start:\n' + log.read()[-4000:])
            return body()
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                process.wait(30)


def time_node(config: NodeBenchConfig, frame: np.ndarray,
              segmenter: Optional[Segmenter] = None, camera: Optional[_Camera] = None
              ) -> Dict[str, Any]:
    """Publish frames to a segmentation node process; return what arrived and when.

    Args:
        config: What to measure (``rate_hz`` must be set).
        frame: The RGB frame published.
        segmenter: Timed between frames (``segmenter_ms`` in the result) when given.
        camera: The camera to publish with (default: a new one, closed afterwards).

    Raises:
        RuntimeError: The node did not start (its output is in the message).
    """
    own_camera = camera is None
    camera = camera or _Camera(config)
    segmenter_ms: List[float] = []

    def time_segmenter():
        segmenter_ms.append(_segment_ms(segmenter, frame))

    def body():
        result = camera.stream(frame, first=0,
                               between=time_segmenter if segmenter is not None else None)
        # The node's own stage timings (its rolling window: the last frames served).
        with camera.arrived:
            camera.diagnostics.clear()
        wait_until(lambda: bool(camera.diagnostics), 5.0)
        return result

    try:
        result = _run_process(camera, SEGMENTATION_NODE, config.node_arguments(),
                              'the segmentation node', body)
    finally:
        if own_camera:
            camera.close()
    with camera.arrived:
        diagnostics = dict(camera.diagnostics)
    result['stages_ms'] = {key[:-3]: float(value) for key, value in diagnostics.items()
                           if key.endswith('_ms') and not key.startswith('latency_')}
    result['node_counts'] = {key[len('frames_'):]: int(value)
                             for key, value in diagnostics.items() if key.startswith('frames_')}
    result['segmenter_ms'] = segmenter_ms[config.warmup:]
    return result


def time_echo(config: NodeBenchConfig, frame: np.ndarray, camera: _Camera) -> Dict[str, Any]:
    """Publish frames to a transport echo process (stamps after the node's); return the timings.

    Raises:
        RuntimeError: The echo did not start (its output is in the message).
    """
    return _run_process(camera, TRANSPORT_ECHO, config.echo_arguments(), 'the transport echo',
                        lambda: camera.stream(frame, first=config.frames))


def _stats(values: List[float]) -> Dict[str, Optional[float]]:
    summary = latency_summary(values)
    return {key: None if summary[key] is None else round(summary[key], 3)
            for key in ('median_ms', 'p95_ms')}


def run(config: NodeBenchConfig, frame: Optional[np.ndarray] = None,
        report: Callable[[str], None] = lambda _: None) -> Dict[str, Any]:
    """Measure the transport floor, then the node and the Segmenter in turns; return a record.

    Args:
        config: What to measure; a ``rate_hz`` of 0 is replaced by the rate used.
        frame: The RGB frame to publish (default: a gradient of the camera size).
        report: Called with a line of progress (the configuration, the transport floor).
    """
    if frame is None:
        frame = gradient_frame(config.camera_width, config.camera_height)
    config.camera_height, config.camera_width = frame.shape[:2]
    segmenter = Segmenter(config.segmenter)
    back_to_back = [_segment_ms(segmenter, frame)
                    for _ in range(config.warmup + BACK_TO_BACK_CALLS)][config.warmup:]
    if not config.rate_hz:
        config.rate_hz = round(
            1e3 / (PERIODS_PER_SEGMENTER_MEDIAN * float(np.median(back_to_back))), 1)
    info = segmenter.describe()
    wanted = config.segmenter
    report(f'{wanted.model} on {info["backend"]} ({wanted.precision}) at '
           f'{wanted.input_width}x{wanted.input_height}, camera {config.camera_width}x'
           f'{config.camera_height} rgb8 at {config.rate_hz:g} Hz, '
           f'{"reliable" if config.reliable else "best-effort"} QoS, Fast DDS profile '
           f'{profile_file()}; providers '
           f'{", ".join(info["providers"])}')
    camera = _Camera(config)
    try:
        echo = time_echo(config, frame, camera)
        transport = dict(_stats(echo.pop('latencies_ms')), **echo)
        if transport['median_ms'] is not None:
            report(f'transport floor   median {transport["median_ms"]:.2f} ms   '
                   f'p95 {transport["p95_ms"]:.2f} ms (an echo node: same topics, no work)')
        node = time_node(config, frame, segmenter, camera)
    finally:
        camera.close()
    segmenter_stats = _stats(node.pop('segmenter_ms'))
    end_to_end = _stats(node.pop('latencies_ms'))

    def over_segmenter(figures):
        if figures['median_ms'] is None or not segmenter_stats['median_ms']:
            return None
        return round(figures['median_ms'] / segmenter_stats['median_ms'], 3)

    return {'config': asdict(config), 'providers': list(info['providers']),
            'segmenter': segmenter_stats, 'segmenter_back_to_back': _stats(back_to_back),
            'node': dict(end_to_end, **node),
            'transport': transport, 'node_over_segmenter': over_segmenter(end_to_end),
            'transport_over_segmenter': over_segmenter(transport)}
