"""End-to-end latency and throughput of the segmentation node, next to the Segmenter alone.

The node runs as its own process; this script is the camera: it publishes 640x480 rgb8 frames
at a set rate and times each one from publish to the arrival of its label mask (matched by
header stamp). The Segmenter alone is timed first, in this process, on the same frame and
configuration (``segment()``: resize, inference, resize back)::

    python benchmarks/node_latency.py --rate 10 --frames 200
    python benchmarks/node_latency.py --model enet --size 480x360 --weights none

Large best-effort images are lost by Fast DDS between processes unless its shared-memory
segment is enlarged (config/fastdds_large_images.xml), so the camera and the node use
reliable QoS unless ``--best-effort`` is given.
"""

import argparse
import array
import os
from pathlib import Path
import signal
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv):
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--model', default='mininet_v2_cpu')
    parser.add_argument('--weights', default='none',
                        help="'shipped', 'none' (untrained: same speed) or a weights file")
    parser.add_argument('--backend', default='onnxruntime', choices=('onnxruntime', 'torch'))
    parser.add_argument('--size', default='512x256', help='network input WxH')
    parser.add_argument('--threads', type=int, default=0, help='inference threads (0: all)')
    parser.add_argument('--camera', default='640x480', help='camera frame WxH (rgb8)')
    parser.add_argument('--image', type=Path, help='an RGB image to publish (resized to the '
                        'camera size); default: a synthetic gradient')
    parser.add_argument('--rate', type=float, default=0.0,
                        help='camera frames per second (0: half what the Segmenter alone '
                        'manages, so the node is not saturated)')
    parser.add_argument('--frames', type=int, default=200, help='frames to publish')
    parser.add_argument('--warmup', type=int, default=20, help='frames not counted')
    parser.add_argument('--best-effort', action='store_true',
                        help='best-effort camera and subscription (as camera drivers publish)')
    args = parser.parse_args(argv)
    try:
        args.width, args.height = (int(v) for v in args.size.lower().split('x'))
        args.camera_size = tuple(int(v) for v in args.camera.lower().split('x'))
    except ValueError:
        parser.error('sizes are WxH, e.g. 512x256')
    if args.frames <= args.warmup or args.rate < 0:
        parser.error('--frames must exceed --warmup and --rate must not be negative')
    return args


def camera_frame(args) -> np.ndarray:
    """Return the RGB frame to publish."""
    import cv2
    width, height = args.camera_size
    if args.image is not None:
        bgr = cv2.imread(str(args.image), cv2.IMREAD_COLOR)
        if bgr is None:
            raise SystemExit(f'cannot read image {args.image}')
        return cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), (width, height))
    x, y = np.meshgrid(np.linspace(0, 255, width), np.linspace(0, 255, height))
    return np.dstack([x, y, 255 - x]).astype(np.uint8)


def summary(values_ms) -> str:
    """Median, p95 and count of a list of milliseconds."""
    values = np.asarray(values_ms)
    return (f'median {np.median(values):7.2f} ms   p95 {np.percentile(values, 95):7.2f} ms   '
            f'(n={values.size})')


def time_segmenter(args, frame):
    """Time Segmenter.segment on the frame in this process; return milliseconds per call."""
    from semseg_ros.core.segmenter import Segmenter, SegmenterConfig
    segmenter = Segmenter(SegmenterConfig(
        model=args.model, weights=args.weights, backend=args.backend, input_width=args.width,
        input_height=args.height, threads=args.threads))
    times = []
    for i in range(args.frames):
        start = time.perf_counter()
        segmenter.segment(frame)
        if i >= args.warmup:
            times.append((time.perf_counter() - start) * 1e3)
    return times, segmenter.describe()


def start_node(args, cache: Path) -> subprocess.Popen:
    """Start the segmentation node with the benchmark's configuration."""
    env = dict(os.environ, SEMSEG_ROS_CACHE=str(cache))
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get('PYTHONPATH')]))
    reliability = 'best_effort' if args.best_effort else 'reliable'
    return subprocess.Popen(
        [sys.executable, '-m', 'semseg_ros.nodes.segmentation_node', '--ros-args',
         '-r', '__node:=bench_segmentation', '-r', 'image:=/bench/image',
         '-p', f'model:={args.model}', '-p', f'weights:={args.weights}',
         '-p', f'backend:={args.backend}', '-p', f'input_width:={args.width}',
         '-p', f'input_height:={args.height}', '-p', f'threads:={args.threads}',
         '-p', f'qos_reliability:={reliability}'],
        env=env, stdin=subprocess.DEVNULL)


def time_node(args, frame):
    """Publish frames at the set rate; return publish-to-label latencies and the duration."""
    import rclpy
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    from semseg_ros.core.conversions import rgb_to_image_fields

    rclpy.init()
    node = rclpy.create_node('bench_camera')
    sent, received = {}, {}
    lock = threading.Lock()

    def on_label(msg):
        now = time.perf_counter()
        with lock:
            received.setdefault(msg.header.stamp.sec, now)

    ready = threading.Event()
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    node.create_subscription(String, '/bench_segmentation/class_info',
                             lambda msg: ready.set(), latched)
    node.create_subscription(Image, '/bench_segmentation/label_mask', on_label, 10)
    reliability = (ReliabilityPolicy.BEST_EFFORT if args.best_effort
                   else ReliabilityPolicy.RELIABLE)
    camera = node.create_publisher(Image, '/bench/image', QoSProfile(
        depth=1, reliability=reliability))
    executor = MultiThreadedExecutor(num_threads=2)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    with tempfile.TemporaryDirectory(prefix='semseg_bench_') as cache:
        process = start_node(args, Path(cache))
        try:
            if not ready.wait(180) or not _wait(lambda: camera.get_subscription_count(), 30):
                raise SystemExit('the node did not come up within 180 s')
            encoding, height, width, step, data = rgb_to_image_fields(frame)
            period = 1.0 / args.rate
            start = time.perf_counter()
            for i in range(args.frames):
                msg = Image(encoding=encoding, height=height, width=width, step=step,
                            data=array.array('B', data))
                msg.header.stamp.sec, msg.header.frame_id = i, 'bench_camera'
                target = start + i * period
                time.sleep(max(0.0, target - time.perf_counter()))
                with lock:
                    sent[i] = time.perf_counter()
                camera.publish(msg)
            duration = time.perf_counter() - start
            _wait(lambda: args.frames - 1 in received, 5)
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(30)
    executor.shutdown()
    node.destroy_node()
    rclpy.shutdown()
    measured = [i for i in range(args.warmup, args.frames) if i in received]
    latencies = [(received[i] - sent[i]) * 1e3 for i in measured]
    return latencies, len(measured), args.frames - args.warmup, duration


def _wait(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def main(argv=None) -> int:
    """Run both measurements and print them side by side."""
    args = parse_args(argv)
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    os.environ.setdefault('ROS_DOMAIN_ID', str(20 + os.getpid() % 200))
    sys.path.insert(0, str(REPO_ROOT))
    frame = camera_frame(args)
    model_ms, info = time_segmenter(args, frame)
    if not args.rate:
        args.rate = round(500.0 / float(np.median(model_ms)), 1)
    print(f'{args.model} on {args.backend} at {args.width}x{args.height}, camera '
          f'{frame.shape[1]}x{frame.shape[0]} rgb8 at {args.rate:g} Hz, '
          f'{"best-effort" if args.best_effort else "reliable"} QoS', flush=True)
    print(f'Segmenter alone   {summary(model_ms)}   providers {", ".join(info["providers"])}',
          flush=True)
    latencies, served, counted, duration = time_node(args, frame)
    if not latencies:
        print('node: no label mask received')
        return 1
    print(f'node end-to-end   {summary(latencies)}')
    print(f'node served {served}/{counted} counted frames ({counted - served} dropped or '
          f'lost), {args.frames / duration:.1f} Hz published')
    ratio = np.median(latencies) / np.median(model_ms)
    print(f'end-to-end / Segmenter median: {ratio:.2f}x')
    return 0


if __name__ == '__main__':
    sys.exit(main())
