"""The segmentation node: camera images in; label, colour, overlay and confidence masks out.

Thin rclpy glue around :class:`semseg_ros.core.segmenter.Segmenter`. The subscription
callback only stores the newest frame; one worker thread converts, segments and
publishes it, so inference never blocks the executor and a slow model never builds a
queue (a frame replaced before it was processed is counted as dropped).

Images are taken and published serialized (:mod:`semseg_ros.messages.cdr`): the pixels are
read where the middleware left them, and each output is one bytes object holding the input's
header and the pixels, copied once; no message object is built on either side::

    ros2 run semseg_ros segmentation_node --ros-args --params-file config/cpu_robot.yaml
        -r image:=/camera/image_raw
"""

import json
import logging
import sys
import threading
import time
from typing import Any, Dict, Sequence, Tuple

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import String

from semseg_ros.core.classes import colorize, mark_unlabeled, UNLABELED_ID
from semseg_ros.core.options import declared_options, Option
from semseg_ros.core.segmenter import OUTPUT_RESOLUTIONS, Segmenter, SegmenterConfig
from semseg_ros.core.serving import (describe_stats, LatestSlot, LogThrottle, render_overlay,
                                     StreamSize, StreamStats)
from semseg_ros.core.stopping import StopRequested
from semseg_ros.messages import cdr, conversions
from semseg_ros.nodes.diagnostics import publish_status
from semseg_ros.nodes.label_info import label_info
from semseg_ros.nodes.params import check_changes, declare, NodeConfigError
from semseg_ros.nodes.spinning import run_nodes

NODE_NAME = 'segmentation_node'
TRANSPORTS = ('raw', 'compressed')
RELIABILITIES = ('best_effort', 'reliable')
# Outputs computed only while someone subscribes; label_mask is the node's main product.
OUTPUTS = ('label_mask', 'color_mask', 'overlay', 'confidence')


def node_parameters() -> Dict[str, Tuple[Any, Option]]:
    """Return every parameter of the node, name -> (default, option).

    The Segmenter's options come from :class:`SegmenterConfig`, where they are declared;
    the rest are the node's own.
    """
    return {
        **declared_options(SegmenterConfig),
        'input_transport': ('raw', Option(
            "'raw': subscribe to image (sensor_msgs/Image); 'compressed': to "
            'image/compressed (jpeg or png).', choices=TRANSPORTS)),
        'qos_reliability': ('best_effort', Option(
            'Reliability of the image subscription (best_effort also receives from reliable '
            'publishers).', choices=RELIABILITIES)),
        'output_resolution': ('input', Option(
            "Mask size: 'input' (the camera's, by nearest neighbour) or 'network' (the "
            "network's output).", read_only=False, choices=OUTPUT_RESOLUTIONS)),
        'overlay_alpha': (0.5, Option('Weight of the class colours in ~/overlay.',
                                      read_only=False, limits=(0.0, 1.0))),
        'publish_confidence': (False, Option(
            'Compute and publish ~/confidence (255 x the top softmax probability) while it '
            'has subscribers.', read_only=False)),
        'threshold': (0.0, Option(
            'Top-class probability (0..1) a pixel needs to keep its class: below it '
            f'~/label_mask holds {UNLABELED_ID}, the id vision_msgs/LabelInfo reserves for '
            "'unlabelled' (void colour in ~/color_mask). Published in ~/label_info; 0: every "
            'pixel keeps its class.', limits=(0.0, 1.0))),
        'max_image_pixels': (4096 * 4096, Option(
            'Frames with more pixels are dropped as bad input.', read_only=False,
            limits=(1, 2 ** 31 - 1))),
        'diagnostics_period': (1.0, Option('Seconds between /diagnostics messages.',
                                           limits=(0.1, 60.0))),
    }


class _RosLogHandler(logging.Handler):
    """Forward the core's Python log records (CPU fallback, exports) to the node's logger."""

    def __init__(self, ros_logger):
        super().__init__(logging.INFO)
        self._ros_logger = ros_logger

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.levelno >= logging.ERROR:
                self._ros_logger.error(message)
            elif record.levelno >= logging.WARNING:
                self._ros_logger.warning(message)
            else:
                self._ros_logger.info(message)
        except Exception:  # logging must never break inference
            self.handleError(record)


def read_frame(payload: bytes, compressed: bool) -> Tuple[cdr.SerializedHeader, Any]:
    """Return the header and the serialized fields of an input frame (pixels not copied).

    Plain CDR is read directly; another encapsulation goes through the middleware's
    deserializer, and its header is serialized again for the outputs.

    Raises:
        ImageConversionError: The payload is damaged (kind ``'damaged message'``).
    """
    try:
        frame = cdr.read_compressed_image(payload) if compressed else cdr.read_image(payload)
        return frame.header, frame
    except cdr.CdrError as error:
        if not error.unsupported_encapsulation:
            raise conversions.ImageConversionError(f'damaged message: {error}',
                                                   kind='damaged message') from None
    try:
        msg = deserialize_message(payload, CompressedImage if compressed else Image)
    except Exception as error:  # the middleware's deserializer raises several kinds
        raise conversions.ImageConversionError(
            f'damaged message: {type(error).__name__}: {error}', kind='damaged message'
        ) from None
    stamp = msg.header.stamp
    header = cdr.header_of(stamp.sec, stamp.nanosec, msg.header.frame_id)
    if compressed:
        return header, cdr.SerializedCompressedImage(header, msg.format, msg.data)
    return header, cdr.SerializedImage(header, msg.height, msg.width, msg.encoding,
                                       msg.is_bigendian, msg.step, msg.data)


class SegmentationNode(Node):
    """Segment the newest camera frame on a worker thread and publish the masks.

    Raises:
        NodeConfigError: A parameter is invalid, or the model or its weights cannot be
            loaded; the reason was logged as one fatal line.
    """

    def __init__(self, node_name: str = NODE_NAME, **kwargs):
        super().__init__(node_name, **kwargs)
        self._specs = node_parameters()
        self._log_bridge = _RosLogHandler(self.get_logger())
        core_logger = logging.getLogger('semseg_ros')
        core_logger.addHandler(self._log_bridge)
        core_logger.setLevel(logging.INFO)
        try:
            self._declare_parameters()
            self.segmenter = self._load_segmenter()
        except NodeConfigError as error:
            self.get_logger().fatal(str(error))
            core_logger.removeHandler(self._log_bridge)
            raise
        self.class_set = self.segmenter.class_set
        self._compressed = self._param('input_transport') == 'compressed'
        self.stats = StreamStats()
        self._slot: LatestSlot = LatestSlot()
        self._throttle = LogThrottle(period_s=5.0)
        self._stream_size = StreamSize()
        self._last_outputs: Tuple[str, ...] = ()  # what the newest processed frame produced

        reliability = (ReliabilityPolicy.RELIABLE if self._param('qos_reliability') == 'reliable'
                       else ReliabilityPolicy.BEST_EFFORT)
        # Depth 1: a camera faster than the model must not queue frames in DDS either.
        image_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                               reliability=reliability, durability=DurabilityPolicy.VOLATILE)
        if self._compressed:
            # As image_transport does: remapping the base topic `image` moves this one too.
            self.input_topic = self.resolve_topic_name('image') + '/compressed'
            self._image_sub = self.create_subscription(CompressedImage, self.input_topic,
                                                       self._on_image, image_qos, raw=True)
        else:
            self.input_topic = self.resolve_topic_name('image')
            self._image_sub = self.create_subscription(Image, 'image', self._on_image,
                                                       image_qos, raw=True)

        # Reliable outputs reach both reliable (rviz) and best-effort subscribers. Depth 5,
        # not 1: with depth 1 a mask still being acknowledged is overwritten by the next
        # one and lost (measured: 46 of 48 delivered); production is paced by inference,
        # so the depth never builds a queue.
        output_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5,
                                reliability=ReliabilityPolicy.RELIABLE)
        self._output_pubs = {name: self.create_publisher(Image, f'~/{name}', output_qos)
                             for name in OUTPUTS}
        latched = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                             reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._class_info_pub = self.create_publisher(String, '~/class_info', latched)
        self._class_info_pub.publish(String(data=json.dumps(self.class_info())))
        self._label_info_pub = self._publish_label_info(latched)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.create_timer(self._param('diagnostics_period'), self._publish_diagnostics)
        self.add_on_set_parameters_callback(lambda ps: check_changes(ps, self._specs))

        self._worker = threading.Thread(target=self._work, name='segmentation_worker',
                                        daemon=True)
        self._worker.start()
        info = self.segmenter.describe()
        self.get_logger().info(
            f'segmenting {self.input_topic} ({self._param("input_transport")}, '
            f'{self._param("qos_reliability")}) with {info["model"]} on {info["backend"]} '
            f'[{", ".join(info["providers"])}] at {info["input_width"]}x{info["input_height"]}'
            f' {info["precision"]}, weights {info["weights_file"]}')

    # Parameters -----------------------------------------------------------------------

    def _param(self, name: str) -> Any:
        return self.get_parameter(name).value

    def _declare_parameters(self) -> None:
        for name, (default, spec) in self._specs.items():
            declare(self, name, default, spec)

    def _load_segmenter(self) -> Segmenter:
        config = SegmenterConfig(**{name: self._param(name)
                                    for name in declared_options(SegmenterConfig)})
        try:
            return Segmenter(config)
        except (ValueError, OSError) as error:  # WeightsError is a ValueError
            raise NodeConfigError(f'cannot start: {error}') from error
        except Exception as error:  # a runtime refusing the graph (onnxruntime, TensorRT)
            raise NodeConfigError(f'cannot load {config.model} on {config.backend}: '
                                  f'{type(error).__name__}: {error}') from error

    def _publish_label_info(self, qos: QoSProfile):
        """Publish ~/label_info once, latched; return its publisher (None without vision_msgs)."""
        try:
            message = label_info(self.class_set, self._param('threshold'),
                                 self.get_clock().now().to_msg())
            publisher = self.create_publisher(type(message), '~/label_info', qos)
        except Exception as error:  # ImportError; a broken install's missing type support
            self.get_logger().warning(
                f'~/label_info (vision_msgs/LabelInfo) is not published: {error}. Install '
                'vision_msgs (rosdep install, or ros-<distro>-vision-msgs); ~/class_info still '
                'gives the class names.')
            return None
        publisher.publish(message)
        return publisher

    def class_info(self) -> Dict[str, Any]:
        """Return what ~/class_info publishes: the class set plus the model that labels it."""
        info = self.class_set.to_dict()
        info.update(model=self.segmenter.config.model, label_encoding='mono8')
        return info

    # Frames ---------------------------------------------------------------------------

    def _on_image(self, payload: bytes) -> None:
        """Keep only the newest frame (still serialized); never blocks the executor."""
        self.stats.count('received')
        if self._slot.put((payload, time.perf_counter())):
            self.stats.count('dropped')

    def _work(self) -> None:
        """Worker thread: segment the newest frame until the node is destroyed."""
        while not self._slot.closed:
            item = self._slot.take(timeout=0.5)
            if item is None:
                continue
            try:
                self._process(*item)
            except StopRequested:
                return  # the process is stopping while a graph was built for this frame
            except Exception as error:  # keep serving: report, count, take the next frame
                if self._slot.closed or not self.context.ok():
                    return  # shutting down: publishing fails once the context is gone
                self.stats.count('failed')
                self._report(f'segmenting a frame failed: {type(error).__name__}: {error}',
                             key=type(error).__name__)

    def _report(self, message: str, key: str) -> None:
        """Log an error once per period per ``key`` (a kind of error, never a sender's text)."""
        text = self._throttle.check(message, key)
        if text is not None:
            self.get_logger().error(text)

    def _wanted_outputs(self) -> Tuple[str, ...]:
        wanted = [name for name in OUTPUTS
                  if self._output_pubs[name].get_subscription_count() > 0]
        if 'confidence' in wanted and not self._param('publish_confidence'):
            wanted.remove('confidence')
        return tuple(wanted)

    def _to_rgb(self, msg):
        """Return the RGB pixels of a frame read by :func:`read_frame`."""
        max_pixels = self._param('max_image_pixels')
        if self._compressed:
            rgb = conversions.compressed_to_rgb(msg.image_format, msg.data,
                                                max_pixels=max_pixels)
            refused = self._stream_size.check(rgb.shape[1], rgb.shape[0])
            if refused:
                raise conversions.ImageConversionError(refused, kind='frame size')
            return rgb
        return conversions.image_to_rgb(msg.encoding, msg.height, msg.width, msg.step,
                                        msg.data, is_bigendian=bool(msg.is_bigendian),
                                        max_pixels=max_pixels)

    def _process(self, payload: bytes, received: float) -> None:
        wanted = self._wanted_outputs()
        if not wanted:
            self.stats.count('idle')
            return
        start = time.perf_counter()
        try:
            header, frame = read_frame(payload, self._compressed)
            rgb = self._to_rgb(frame)
        except conversions.ImageConversionError as error:
            self.stats.count('bad')
            self._report(f'dropped a frame from {self.input_topic}: {error}', key=error.kind)
            return
        converted = time.perf_counter()
        threshold = self._param('threshold')
        result = self.segmenter.segment(rgb, self._param('output_resolution'),
                                        with_confidence='confidence' in wanted or threshold > 0)
        if threshold > 0:
            result.labels = mark_unlabeled(result.labels, result.confidence, threshold)
        segmented = time.perf_counter()
        messages = self._render(header, rgb, result, wanted)
        rendered = time.perf_counter()
        for name, message in messages.items():
            self._output_pubs[name].publish(message)
        published = time.perf_counter()
        self._last_outputs = tuple(messages)
        stages = {'wait': (start - received) * 1e3, 'conversion': (converted - start) * 1e3}
        stages.update(result.timings_ms)
        stages.update(render=(rendered - segmented) * 1e3,
                      publish=(published - rendered) * 1e3)
        self.stats.processed((published - received) * 1e3, stages)

    def _render(self, header: cdr.SerializedHeader, rgb, result, wanted: Sequence[str]
                ) -> Dict[str, bytes]:
        """Serialize the wanted output images, each with the input header unchanged."""
        messages = {}
        if 'label_mask' in wanted:
            messages['label_mask'] = cdr.write_image(header, 'mono8', result.labels)
        if 'color_mask' in wanted or 'overlay' in wanted:
            colors = colorize(result.labels, self.class_set)
            if 'color_mask' in wanted:
                messages['color_mask'] = cdr.write_image(header, 'rgb8', colors)
            if 'overlay' in wanted:
                blend = render_overlay(rgb, colors, self._param('overlay_alpha'))
                messages['overlay'] = cdr.write_image(header, 'rgb8', blend)
        if 'confidence' in wanted and result.confidence is not None:
            messages['confidence'] = cdr.write_image(header, 'mono8', result.confidence)
        return messages

    # Diagnostics ----------------------------------------------------------------------

    def _publish_diagnostics(self) -> None:
        snapshot = self.stats.snapshot()
        new = snapshot.new
        summary = (f'{snapshot.input_rate_hz:.1f} Hz in, {snapshot.processed_rate_hz:.1f} Hz '
                   f'processed, {new["dropped"]} dropped')
        level, message = DiagnosticStatus.OK, summary
        if new['failed']:
            level, message = DiagnosticStatus.ERROR, f'{new["failed"]} frames failed; {summary}'
        elif new['bad']:
            level, message = DiagnosticStatus.WARN, f'{new["bad"]} bad frames; {summary}'
        elif not new['received']:
            level, message = DiagnosticStatus.WARN, f'no images on {self.input_topic}'
        info = self.segmenter.describe()
        values = describe_stats(snapshot) + [
            ('model', info['model']), ('weights', info['weights_file']),
            ('backend', info['backend']), ('providers', ', '.join(info['providers'])),
            ('device', self.segmenter.device), ('fp16', info['fp16']),
            ('precision', info['precision']),
            ('input_size', f'{info["input_width"]}x{info["input_height"]}'),
            ('output_resolution', self._param('output_resolution')),
            ('outputs', ', '.join(self._last_outputs) or 'none'),
            ('input_topic', self.input_topic),
            ('label_info', 'published' if self._label_info_pub is not None
             else 'not published: vision_msgs missing'),
            # DDS matching, both ends: whether frames can arrive and which outputs are read.
            ('matched_publishers/image', self._image_sub.get_publisher_count())]
        values += [(f'matched_subscribers/{name}', publisher.get_subscription_count())
                   for name, publisher in self._output_pubs.items()]
        publish_status(self, self._diagnostics_pub, 'segmentation', level, message, values,
                       self.segmenter.device)

    def destroy_node(self) -> None:
        """Stop the worker thread, then destroy the node.

        Safe to call twice and on a node whose start-up failed: rclpy's context also calls
        it at shutdown for every node it still holds.
        """
        slot, worker = getattr(self, '_slot', None), getattr(self, '_worker', None)
        if slot is not None:
            slot.close()
        if worker is not None and worker.is_alive() and worker is not threading.current_thread():
            worker.join(timeout=10.0)
        logging.getLogger('semseg_ros').removeHandler(self._log_bridge)
        super().destroy_node()


def main(args=None) -> int:
    """Run the node until Ctrl-C or SIGTERM; return the exit code (2: bad configuration)."""
    return run_nodes([SegmentationNode], SingleThreadedExecutor, (NodeConfigError,), args)


if __name__ == '__main__':
    sys.exit(main())
