"""Building and decoding the bag tools' messages as rosbags objects (no rclpy).

Images go through :mod:`semseg_ros.messages.conversions`, the same code the nodes use, so a bag
written here decodes in the nodes exactly as a camera's stream would.
"""

import struct
from typing import Iterator, Mapping, Tuple

import numpy as np

from semseg_ros.bags.storage import (BagError, COMPRESSED_IMAGE, deserialize,
                                     DIAGNOSTIC_ARRAY, find_topic, IMAGE, IMAGE_TYPES,
                                     LABEL_INFO, read_messages, reading, typestore)
from semseg_ros.core.classes import ClassSet
from semseg_ros.messages import conversions

# Encodings `semseg bag make` writes: every raw encoding, or a CompressedImage codec.
COMPRESSED_ENCODINGS = ('jpeg', 'png')
ENCODINGS = conversions.SUPPORTED_ENCODINGS + COMPRESSED_ENCODINGS
# Name of the DiagnosticStatus that carries a frame's keyframe score terms (the keyframe
# node's: its fully qualified name, then what the status is about).
SCORES_STATUS_NAME = '/keyframe_node: keyframe score'


def _types():
    return typestore().types


def header(stamp_ns: int, frame_id: str):
    """Return a std_msgs/Header with the stamp split into seconds and nanoseconds."""
    types = _types()
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return types['std_msgs/msg/Header'](
        stamp=types['builtin_interfaces/msg/Time'](sec=sec, nanosec=nanosec), frame_id=frame_id)


def stamp_ns(message) -> int:
    """Return a stamped message's (or a Header's) stamp in nanoseconds."""
    head = getattr(message, 'header', message)
    return int(head.stamp.sec) * 1_000_000_000 + int(head.stamp.nanosec)


def header_stamp_ns(raw: bytes, where: str = 'message') -> int:
    """Read the header stamp of a serialized message that starts with std_msgs/Header.

    sensor_msgs/Image, CompressedImage, diagnostic_msgs/DiagnosticArray and std_msgs/Header
    all do; this reads 8 bytes instead of deserializing a whole image.

    Args:
        raw: The CDR bytes.
        where: What to name in an error (bag, topic, timestamp).

    Raises:
        BagError: The bytes are too short or not CDR.
    """
    if len(raw) < 12 or raw[0] != 0 or raw[1] not in (0, 1):
        raise BagError(f'{where}: not a CDR message with a header ({len(raw)} bytes, '
                       f'starts with {bytes(raw[:4]).hex(" ")})')
    sec, nanosec = struct.unpack_from('<iI' if raw[1] == 1 else '>iI', raw, 4)
    return sec * 1_000_000_000 + nanosec


def _image(head, fields: Tuple[str, int, int, int, object]):
    encoding, height, width, step, data = fields
    return _types()[IMAGE](header=head, height=height, width=width, encoding=encoding,
                           is_bigendian=0, step=step,
                           data=np.frombuffer(data, np.uint8))


def rgb_message(rgb: np.ndarray, stamp: int, frame_id: str, encoding: str = 'rgb8'
                ) -> Tuple[str, object]:
    """Encode an RGB image as a sensor_msgs/Image, or CompressedImage for jpeg/png.

    Args:
        rgb: ``H x W x 3`` uint8 RGB.
        stamp: Header stamp in nanoseconds.
        frame_id: Header frame id.
        encoding: A raw encoding (``rgb8``, ``bgr8``, ``mono8``, ``yuv422``...) or ``jpeg`` /
            ``png``.

    Returns:
        ``(message type, message)``.

    Raises:
        ValueError: Unknown encoding or an image it cannot hold (e.g. odd width for yuv422).
    """
    head = header(stamp, frame_id)
    if encoding in COMPRESSED_ENCODINGS:
        fmt, data = conversions.encode_compressed(rgb, encoding, quality=95)
        return COMPRESSED_IMAGE, _types()[COMPRESSED_IMAGE](
            header=head, format=fmt, data=np.frombuffer(data, np.uint8))
    return IMAGE, _image(head, conversions.rgb_to_image_fields(rgb, encoding))


def labels_message(labels: np.ndarray, stamp: int, frame_id: str):
    """Encode an ``H x W`` class-id map as a mono8 sensor_msgs/Image."""
    return _image(header(stamp, frame_id), conversions.mono8_to_image_fields(labels))


def label_info_message(class_set: ClassSet, stamp: int, threshold: float = 0.0):
    """Return the vision_msgs/LabelInfo of a class set, as the segmentation node publishes it."""
    vision_class = _types()['vision_msgs/msg/VisionClass']
    return _types()[LABEL_INFO](
        header=header(stamp, ''), threshold=float(threshold),
        class_map=[vision_class(class_id=class_id, class_name=name)
                   for class_id, name in enumerate(class_set.names)])


def decode_rgb(message, msgtype: str) -> np.ndarray:
    """Decode a rosbags Image or CompressedImage message to ``H x W x 3`` uint8 RGB.

    Raises:
        conversions.ImageConversionError: Unsupported encoding or corrupt pixel data.
    """
    if msgtype == COMPRESSED_IMAGE:
        return conversions.compressed_to_rgb(message.format, message.data)
    return conversions.image_to_rgb(message.encoding, message.height, message.width,
                                    message.step, message.data, bool(message.is_bigendian))


def decode_labels(message) -> np.ndarray:
    """Return the ``H x W`` uint8 class ids of a mono8 (or 8UC1) label Image.

    Raises:
        conversions.ImageConversionError: Another encoding, or data too short.
    """
    return conversions.image_to_mono8(message.encoding, message.height, message.width,
                                      message.step, message.data)


def scores_message(stamp: int, frame_id: str, terms: Mapping[str, float],
                   status_name: str = SCORES_STATUS_NAME):
    """Return a diagnostic_msgs/DiagnosticArray holding one frame's keyframe score terms.

    The keyframe node's ``~/scores`` format: one OK status whose key/values are the terms
    (``total``, ``quality``, ``semantic``... floats written with 6 significant digits, and the
    integer ``frame_index``), ``hardware_id`` the frame id.
    """
    types = _types()
    status_type = types['diagnostic_msgs/msg/DiagnosticStatus']
    values = [types['diagnostic_msgs/msg/KeyValue'](
        key=key, value=f'{value:.6g}' if isinstance(value, float) else str(value))
        for key, value in terms.items()]
    status = status_type(level=status_type.OK, name=status_name,
                         message='keyframe score terms', hardware_id=frame_id, values=values)
    return types[DIAGNOSTIC_ARRAY](header=header(stamp, frame_id), status=[status])


def scores_from_message(message) -> dict:
    """Return ``term -> float`` from a scores DiagnosticArray (all statuses' numeric values)."""
    terms = {}
    for status in message.status:
        for pair in status.values:
            try:
                terms[pair.key] = float(pair.value)
            except ValueError:
                continue  # a non-numeric entry (e.g. a reason string) is not a score term
    return terms


def _stream(path, topic: str, msgtypes, decode) -> Iterator[Tuple[int, np.ndarray]]:
    """Yield ``(header stamp, decode(message, type))`` of a bag topic, in bag order."""
    with reading(path) as reader:
        connections = find_topic(reader, topic, msgtypes)
        for connection, timestamp, raw in read_messages(reader, connections):
            where = f'{path}: {topic} at {timestamp} ns'
            message = deserialize(raw, connection.msgtype, where)
            try:
                yield stamp_ns(message), decode(message, connection.msgtype)
            except conversions.ImageConversionError as error:
                raise BagError(f'{where}: {error}') from error


def label_stream(path, topic: str) -> Iterator[Tuple[int, np.ndarray]]:
    """Yield ``(stamp, H x W class ids)`` of a bag's mono8 label topic.

    Raises:
        BagError: Unreadable bag, missing topic, or a message that is not mono8.
    """
    return _stream(path, topic, (IMAGE,), lambda message, _: decode_labels(message))


def image_stream(path, topic: str) -> Iterator[Tuple[int, np.ndarray]]:
    """Yield ``(stamp, H x W x 3 RGB)`` of a bag's Image or CompressedImage topic.

    Raises:
        BagError: Unreadable bag, missing topic, or an image that cannot be decoded.
    """
    return _stream(path, topic, IMAGE_TYPES, decode_rgb)
