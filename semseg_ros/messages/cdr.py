"""sensor_msgs/Image and CompressedImage in their serialized (CDR) form, read and written directly.

A subscription that takes serialized messages (rclpy's ``raw=True``) hands over one bytes
object per frame; reading its fields here leaves the pixel data where it is, as a read-only
view (no message object is built, nothing is copied). The node's outputs are written the same
way: the input's header is carried over byte for byte, the pixels are copied once, and the
result goes to the publisher as it is (no message object, no serialization).

The layout is plain CDR (XCDR1, the encapsulation every ROS 2 middleware uses for these
types): a 4-byte encapsulation header (``00 01`` little-endian, ``00 00`` big-endian), then the
fields in order, each aligned to its size counted from the end of the encapsulation header.
Strings are a uint32 length counting a terminating NUL, then the bytes; sequences a uint32 count,
then the elements::

    Header   stamp.sec int32, stamp.nanosec uint32, frame_id string
    Image    header, height uint32, width uint32, encoding string, is_bigendian uint8,
             step uint32, data uint8[]
    CompressedImage  header, format string, data uint8[]

A payload that does not fit this layout raises :class:`CdrError` (another encapsulation is
refused as such, so a caller can fall back to its middleware's deserializer).
"""

from dataclasses import dataclass
import struct

import numpy as np

# Encapsulation identifiers of plain CDR -> struct byte order.
_BYTE_ORDERS = {b'\x00\x00': '>', b'\x00\x01': '<'}
_ENCAPSULATION = {'>': b'\x00\x00\x00\x00', '<': b'\x00\x01\x00\x00'}
_HEADER_BYTES = 4
# Longest string field read (frame ids, encodings, formats); longer is damaged input.
MAX_STRING_BYTES = 4096


class CdrError(ValueError):
    """A serialized message cannot be read: cut short, inconsistent, or not plain CDR.

    Attributes:
        unsupported_encapsulation: True when the payload is another encapsulation (not
            damaged, just not plain CDR): a caller may hand it to its middleware instead.
    """

    def __init__(self, message: str, unsupported_encapsulation: bool = False):
        super().__init__(message)
        self.unsupported_encapsulation = unsupported_encapsulation


@dataclass
class SerializedHeader:
    """A std_msgs/Header as it was serialized.

    Attributes:
        sec: stamp.sec.
        nanosec: stamp.nanosec.
        frame_id: The frame id, decoded (invalid UTF-8 replaced).
        raw: The header's serialized bytes, carried over unchanged into outputs.
        byte_order: ``'<'`` or ``'>'``, the payload's byte order (outputs keep it).
    """

    sec: int
    nanosec: int
    frame_id: str
    raw: bytes
    byte_order: str


@dataclass
class SerializedImage:
    """The fields of a serialized sensor_msgs/Image; ``data`` is a read-only view into it."""

    header: SerializedHeader
    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: np.ndarray


@dataclass
class SerializedCompressedImage:
    """The fields of a serialized sensor_msgs/CompressedImage; ``data`` is a read-only view."""

    header: SerializedHeader
    image_format: str
    data: np.ndarray


class _Reader:
    """Reads CDR fields from a byte buffer, checking every length against what is left."""

    def __init__(self, payload):
        try:
            self.buffer = np.frombuffer(payload, np.uint8)
        except (TypeError, ValueError) as error:
            raise CdrError(f'a serialized message is a byte buffer, got '
                           f'{type(payload).__name__}') from error
        if self.buffer.size < _HEADER_BYTES:
            raise CdrError(f'serialized message of {self.buffer.size} bytes is shorter than '
                           'its encapsulation header')
        kind = self.buffer[:2].tobytes()
        if kind not in _BYTE_ORDERS:
            raise CdrError(f'encapsulation {kind.hex()} is not plain CDR (0000 or 0001)',
                           unsupported_encapsulation=True)
        self.order = _BYTE_ORDERS[kind]
        self.position = _HEADER_BYTES

    def _take(self, size: int, what: str) -> np.ndarray:
        end = self.position + size
        if end > self.buffer.size:
            raise CdrError(f'serialized message ends inside {what}: needs {end} bytes, has '
                           f'{self.buffer.size}')
        chunk = self.buffer[self.position:end]
        self.position = end
        return chunk

    def _align(self, size: int) -> None:
        self.position += -(self.position - _HEADER_BYTES) % size

    def uint32(self, what: str) -> int:
        self._align(4)
        return struct.unpack(self.order + 'I', self._take(4, what).tobytes())[0]

    def int32(self, what: str) -> int:
        self._align(4)
        return struct.unpack(self.order + 'i', self._take(4, what).tobytes())[0]

    def uint8(self, what: str) -> int:
        return int(self._take(1, what)[0])

    def string(self, what: str) -> str:
        length = self.uint32(f'the length of {what}')
        if length == 0:  # some serializers write an empty string without its NUL
            return ''
        if length > MAX_STRING_BYTES:
            raise CdrError(f'{what} has a length of {length} bytes (at most '
                           f'{MAX_STRING_BYTES} with its terminating NUL)')
        text = self._take(length, what).tobytes()
        if text[-1] != 0:
            raise CdrError(f'{what} does not end with a NUL byte')
        return text[:-1].decode('utf-8', errors='replace')

    def byte_sequence(self, what: str) -> np.ndarray:
        count = self.uint32(f'the length of {what}')
        return self._take(count, what)

    def header(self) -> SerializedHeader:
        start = self.position
        sec = self.int32('header.stamp.sec')
        nanosec = self.uint32('header.stamp.nanosec')
        frame_id = self.string('header.frame_id')
        raw = self.buffer[start:self.position].tobytes()
        return SerializedHeader(sec, nanosec, frame_id, raw, self.order)


def read_image(payload) -> SerializedImage:
    """Read a serialized sensor_msgs/Image without copying its pixels.

    Args:
        payload: The serialized message (bytes or any byte buffer); keep it alive while the
            returned ``data`` is used.

    Raises:
        CdrError: The payload is not a plain-CDR Image.
    """
    reader = _Reader(payload)
    header = reader.header()
    height = reader.uint32('height')
    width = reader.uint32('width')
    encoding = reader.string('encoding')
    is_bigendian = reader.uint8('is_bigendian')
    step = reader.uint32('step')
    data = reader.byte_sequence('data')
    return SerializedImage(header, height, width, encoding, is_bigendian, step, data)


def read_compressed_image(payload) -> SerializedCompressedImage:
    """Read a serialized sensor_msgs/CompressedImage without copying its data.

    Raises:
        CdrError: The payload is not a plain-CDR CompressedImage.
    """
    reader = _Reader(payload)
    header = reader.header()  # fields are read in order: header, format, data
    return SerializedCompressedImage(header, reader.string('format'),
                                     reader.byte_sequence('data'))


def _padding(position: int, size: int) -> bytes:
    return bytes(-(position - _HEADER_BYTES) % size)


def image_prefix(header: SerializedHeader, encoding: str, height: int, width: int, step: int
                 ) -> bytes:
    """Return a serialized Image up to its pixel bytes (``step * height`` of them follow).

    The header is ``header.raw`` unchanged, in ``header.byte_order``.
    """
    order = header.byte_order
    text = encoding.encode('ascii') + b'\0'
    parts = [_ENCAPSULATION[order], header.raw]
    position = _HEADER_BYTES + len(header.raw)
    for chunk, align in ((struct.pack(order + 'II', height, width), 4),
                         (struct.pack(order + 'I', len(text)) + text, 4),
                         (b'\0', 1),  # is_bigendian: the pixels written are 8-bit
                         (struct.pack(order + 'I', step), 4),
                         (struct.pack(order + 'I', step * height), 4)):
        pad = _padding(position, align)
        parts += [pad, chunk]
        position += len(pad) + len(chunk)
    return b''.join(parts)


def write_image(header: SerializedHeader, encoding: str, pixels: np.ndarray) -> bytes:
    """Serialize an 8-bit image (HxW mono8 or HxWx3 rgb8) as a sensor_msgs/Image, rows packed.

    The pixels are copied once, into the returned bytes (what rclpy publishes as they are).
    """
    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    prefix = image_prefix(header, encoding, height, width, width * channels)
    # bytes.join reads the array through the buffer protocol: the one copy (padded or
    # strided pixels are packed first).
    return b''.join((prefix, np.ascontiguousarray(pixels, np.uint8)))


def header_of(sec: int, nanosec: int, frame_id: str, byte_order: str = '<'
              ) -> SerializedHeader:
    """Return a header serialized from its fields (for outputs of typed input)."""
    text = frame_id.encode('utf-8') + b'\0'
    raw = struct.pack(byte_order + 'iII', sec, nanosec, len(text)) + text
    return SerializedHeader(sec, nanosec, frame_id, raw, byte_order)
