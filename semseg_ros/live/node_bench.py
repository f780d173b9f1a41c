"""The segmentation node end to end, timed next to the Segmenter alone (``semseg bench --node``).

The node runs as its own process, as on a robot; this process is the camera: it publishes
rgb8 frames at a set rate and times each one from publish to the arrival of its label mask
(matched by header stamp). The Segmenter alone is timed first, in this process, on the same
frame and configuration (``segment()``: resize, inference, resize back), so the ratio of
the two medians is what the node's transport, conversion and threading cost.

By default both sides are best effort, as camera drivers publish (REP-2003), over the
package's Fast DDS profile (config/fastdds_large_images.xml: a shared-memory segment large
enough for camera images; without it Fast DDS sends them as UDP fragments and loses most),
unless ``FASTDDS_DEFAULT_PROFILES_FILE`` names another. ``reliable`` measures reliable QoS.
"""

import array
from dataclasses import asdict, dataclass, field
import os
from pathlib import Path
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

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
from semseg_ros.messages.conversions import rgb_to_image_fields

NODE_NAME = 'bench_segmentation'
CAMERA_TOPIC = '/bench/image'
NODE_START_TIMEOUT_S = 180.0


@dataclass
class NodeBenchConfig:
    """One node benchmark.

    Attributes:
        segmenter: The Segmenter both measurements run (the node gets it as parameters).
        camera_width: Width of the published rgb8 frames.
        camera_height: Height of the published rgb8 frames.
        rate_hz: Frames per second published (0: half what the Segmenter alone manages, so
            the node is not saturated and latency is not queueing).
        frames: Frames published.
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

    def node_arguments(self) -> List[str]:
        """Return the node's ``--ros-args`` for this configuration."""
        parameters = {name: getattr(self.segmenter, name)
                      for name, (default, _) in declared_options(SegmenterConfig).items()
                      if getattr(self.segmenter, name) != default}
        parameters['qos_reliability'] = 'reliable' if self.reliable else 'best_effort'
        return ['--ros-args', '-r', f'__node:={NODE_NAME}', '-r', f'image:={CAMERA_TOPIC}',
                *parameter_arguments(parameters)]


def gradient_frame(width: int, height: int) -> np.ndarray:
    """Return a synthetic ``height x width`` RGB frame (colour gradients)."""
    x, y = np.meshgrid(np.linspace(0, 255, width), np.linspace(0, 255, height))
    return np.dstack([x, y, 255 - x]).astype(np.uint8)


def time_segmenter(config: NodeBenchConfig, frame: np.ndarray
                   ) -> Tuple[List[float], Dict[str, Any]]:
    """Time ``Segmenter.segment`` on ``frame`` here; return ms per counted call and its info."""
    segmenter = Segmenter(config.segmenter)
    times = []
    for index in range(config.frames):
        start = time.perf_counter()
        segmenter.segment(frame)
        if index >= config.warmup:
            times.append((time.perf_counter() - start) * 1e3)
    return times, segmenter.describe()


def _start_node(config: NodeBenchConfig, cache: Path, log) -> subprocess.Popen:
    # A cache of its own: the node exports its graph there, as a fresh robot would. Its
    # output goes to a file: a pipe nobody reads while timing could fill and stall it.
    env = dict(node_environment(), SEMSEG_ROS_CACHE=str(cache))
    package_root = str(Path(__file__).resolve().parents[2])
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [package_root, env.get('PYTHONPATH')]))
    return subprocess.Popen([sys.executable, '-m', 'semseg_ros.nodes.segmentation_node',
                             *config.node_arguments()], env=env, stdin=subprocess.DEVNULL,
                            stdout=log, stderr=subprocess.STDOUT)


def time_node(config: NodeBenchConfig, frame: np.ndarray) -> Dict[str, Any]:
    """Publish frames to a node process at the set rate; return what arrived and when.

    Raises:
        RuntimeError: The node did not start (its output is in the message).
    """
    context = rclpy.Context()
    with large_image_profile():  # Fast DDS reads it when the participant is created
        rclpy.init(context=context)
        node = rclpy.create_node('bench_camera', context=context)
    sent: Dict[int, float] = {}
    received: Dict[int, float] = {}
    lock = threading.Lock()

    def on_label(msg):
        now = time.perf_counter()
        with lock:
            received.setdefault(msg.header.stamp.sec, now)

    diagnostics: Dict[str, str] = {}

    def on_diagnostics(msg):
        for status in msg.status:
            if status.name.startswith(f'/{NODE_NAME}:'):
                with lock:
                    diagnostics.clear()
                    diagnostics.update({kv.key: kv.value for kv in status.values})

    ready = threading.Event()
    node.create_subscription(DiagnosticArray, '/diagnostics', on_diagnostics, 10)
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    node.create_subscription(String, f'/{NODE_NAME}/class_info', lambda _: ready.set(),
                             latched)
    node.create_subscription(Image, f'/{NODE_NAME}/label_mask', on_label, 10)
    camera = node.create_publisher(Image, CAMERA_TOPIC, QoSProfile(
        depth=1, reliability=(ReliabilityPolicy.RELIABLE if config.reliable
                              else ReliabilityPolicy.BEST_EFFORT)))
    # Single-threaded: the callbacks only stamp arrivals, and rclpy's MultiThreadedExecutor
    # busy-polls (two cores of system time here), starving the node it measures.
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    encoding, height, width, step, data = rgb_to_image_fields(frame)
    try:
        with tempfile.TemporaryDirectory(prefix='semseg_bench_') as cache, \
                open(Path(cache) / 'node.log', 'w+') as log:
            process = _start_node(config, Path(cache), log)
            try:
                if not (wait_until(lambda: ready.is_set() or process.poll() is not None,
                                   NODE_START_TIMEOUT_S) and ready.is_set()
                        and wait_until(lambda: camera.get_subscription_count() > 0, 30)):
                    process.kill()
                    process.wait(30)
                    log.seek(0)
                    raise RuntimeError('the segmentation node did not start:\n'
                                       + log.read()[-4000:])
                period = 1.0 / config.rate_hz
                start = time.perf_counter()
                for index in range(config.frames):
                    msg = Image(encoding=encoding, height=height, width=width, step=step,
                                data=array.array('B', data))
                    msg.header.stamp.sec, msg.header.frame_id = index, 'bench_camera'
                    time.sleep(max(0.0, start + index * period - time.perf_counter()))
                    with lock:
                        sent[index] = time.perf_counter()
                    camera.publish(msg)
                duration = time.perf_counter() - start
                wait_until(lambda: config.frames - 1 in received, 5.0)
                # The node's own stage timings (its rolling window: the last frames served).
                with lock:
                    diagnostics.clear()
                wait_until(lambda: bool(diagnostics), 5.0)
            finally:
                if process.poll() is None:
                    process.send_signal(signal.SIGINT)
                    process.wait(30)
    finally:
        executor.shutdown()
        node.destroy_node()
        context.try_shutdown()
    with lock:
        counted = range(config.warmup, config.frames)
        latencies = [(received[i] - sent[i]) * 1e3 for i in counted if i in received]
        stages = {key[:-3]: float(value) for key, value in diagnostics.items()
                  if key.endswith('_ms') and not key.startswith('latency_')}
        node_counts = {key[len('frames_'):]: int(value) for key, value in diagnostics.items()
                       if key.startswith('frames_')}
    return {'latencies_ms': latencies, 'served': len(latencies), 'counted': len(counted),
            'published_hz': config.frames / duration, 'stages_ms': stages,
            'node_counts': node_counts}


def _stats(values: List[float]) -> Dict[str, Optional[float]]:
    summary = latency_summary(values)
    return {key: None if summary[key] is None else round(summary[key], 3)
            for key in ('median_ms', 'p95_ms')}


def run(config: NodeBenchConfig, frame: Optional[np.ndarray] = None,
        report: Callable[[str], None] = lambda _: None) -> Dict[str, Any]:
    """Measure the Segmenter alone, then the node; return every figure as one record.

    Args:
        config: What to measure; a ``rate_hz`` of 0 is replaced by the rate used.
        frame: The RGB frame to publish (default: a gradient of the camera size).
        report: Called with a line of progress (the configuration, the Segmenter's result).
    """
    if frame is None:
        frame = gradient_frame(config.camera_width, config.camera_height)
    config.camera_height, config.camera_width = frame.shape[:2]
    model_ms, info = time_segmenter(config, frame)
    if not config.rate_hz:
        config.rate_hz = round(500.0 / float(np.median(model_ms)), 1)
    wanted = config.segmenter
    report(f'{wanted.model} on {info["backend"]} ({wanted.precision}) at '
           f'{wanted.input_width}x{wanted.input_height}, camera {config.camera_width}x'
           f'{config.camera_height} rgb8 at {config.rate_hz:g} Hz, '
           f'{"reliable" if config.reliable else "best-effort"} QoS, Fast DDS profile '
           f'{profile_file()}; providers '
           f'{", ".join(info["providers"])}')
    segmenter = _stats(model_ms)
    report(f'Segmenter alone   median {segmenter["median_ms"]:.2f} ms   '
           f'p95 {segmenter["p95_ms"]:.2f} ms')
    node = time_node(config, frame)
    end_to_end = _stats(node.pop('latencies_ms'))
    ratio = (round(end_to_end['median_ms'] / segmenter['median_ms'], 3)
             if end_to_end['median_ms'] is not None else None)
    return {'config': asdict(config), 'providers': list(info['providers']),
            'segmenter': segmenter, 'node': dict(end_to_end, **node),
            'node_over_segmenter': ratio}
