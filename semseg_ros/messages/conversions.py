"""Image conversions between ROS image messages and numpy arrays (the package's cv_bridge).

Works on the plain fields of ``sensor_msgs/Image`` (``encoding, height, width, step, data,
is_bigendian``) and ``sensor_msgs/CompressedImage`` (``format, data``), so nothing here imports
rclpy or a message package; nodes and bag tools pass the fields in::

    rgb = image_to_rgb(msg.encoding, msg.height, msg.width, msg.step, msg.data,
                       msg.is_bigendian)
    rgb = compressed_to_rgb(msg.format, msg.data)
    (msg.encoding, msg.height, msg.width, msg.step, msg.data) = rgb_to_image_fields(rgb)

``data`` may be bytes, bytearray, memoryview, ``array.array('B')`` (what rclpy hands out) or
a uint8 numpy array (what rosbags hands out). It is wrapped without copying; a copy is made only
when the layout forces one (a colour conversion, or row padding of an rgb8 image).

OpenCV's Bayer conversion codes name the pattern of the second row's second and third pixels,
not the top-left 2x2 block that ROS encodings name: ROS ``bayer_rggb8`` is OpenCV ``BayerBG``
(OpenCV 5 spells it ``BAYER_RGGB``, with the same value).

Compressed payloads are hostile input: before anything is decoded, the size their header
declares is checked against ``max_pixels``, and the work the decoder would do is bounded by
that size (a PNG's compressed image data cannot exceed what its pixels need; a JPEG has a
limited number of scans). What libjpeg, libpng and OpenCV print about a damaged payload (to
the process's stderr, past any Python logging) is caught and makes the frame an error.
"""

import array
import atexit
import contextlib
import operator
import os
import re
import struct
import sys
import tempfile
import threading
from typing import Iterator, List, Optional, Tuple

import cv2
import numpy as np


class ImageConversionError(ValueError):
    """An image message cannot be converted: bad fields, unsupported encoding or corrupt data.

    Attributes:
        kind: The kind of problem, without the values of this message (numbers and quoted
            strings): what a log throttle counts as "the same error".
    """

    def __init__(self, message: str, kind: Optional[str] = None):
        super().__init__(message)
        self.kind = kind if kind is not None else _VALUE.sub('_', message)[:80]


# Numbers and quoted strings in an error message: the values, not the kind of problem.
_VALUE = re.compile(r"'[^']*'|\"[^\"]*\"|\d+")
# How much of a string field of a message is repeated in an error.
SHOWN_CHARACTERS = 32
# How much of a decoder's complaint is repeated in an error.
DECODER_MESSAGE_CHARACTERS = 120


def shown(value) -> str:
    """Return ``repr(value)`` cut to :data:`SHOWN_CHARACTERS`: a message's field, echoed safely."""
    text = repr(value)
    if len(text) <= SHOWN_CHARACTERS:
        return text
    return f'{text[:SHOWN_CHARACTERS]}... ({len(str(value))} characters)'


# Bytes per pixel of each raw encoding, as sensor_msgs/image_encodings defines them.
_BYTES_PER_PIXEL = {
    'rgb8': 3, 'bgr8': 3, 'rgba8': 4, 'bgra8': 4, 'mono8': 1, 'mono16': 2,
    'yuv422': 2, 'uyvy': 2, 'yuv422_yuy2': 2, 'yuyv': 2,
    'bayer_rggb8': 1, 'bayer_bggr8': 1, 'bayer_gbrg8': 1, 'bayer_grbg8': 1,
}

SUPPORTED_ENCODINGS = tuple(_BYTES_PER_PIXEL)

# yuv422 is the ROS name of UYVY, yuv422_yuy2 that of YUYV (uyvy and yuyv are the newer names).
_YUV_ORDER = {'yuv422': 'uyvy', 'uyvy': 'uyvy', 'yuv422_yuy2': 'yuyv', 'yuyv': 'yuyv'}

# ROS names the top-left 2x2 block; see the module docstring for OpenCV's offset names.
_BAYER_PATTERN = {
    'bayer_rggb8': 'rggb', 'bayer_bggr8': 'bggr', 'bayer_gbrg8': 'gbrg', 'bayer_grbg8': 'grbg',
}
_BAYER_TO_OPENCV = {'rggb': 'BG', 'bggr': 'RG', 'gbrg': 'GR', 'grbg': 'GB'}

# cv2.cvtColor codes from each raw encoding's channels to RGB (rgb8 and mono16 need none).
_TO_RGB = {
    'bgr8': cv2.COLOR_BGR2RGB,
    'rgba8': cv2.COLOR_RGBA2RGB,
    'bgra8': cv2.COLOR_BGRA2RGB,
    'mono8': cv2.COLOR_GRAY2RGB,
    **{enc: cv2.COLOR_YUV2RGB_UYVY if order == 'uyvy' else cv2.COLOR_YUV2RGB_YUYV
       for enc, order in _YUV_ORDER.items()},
    **{enc: getattr(cv2, f'COLOR_Bayer{_BAYER_TO_OPENCV[pattern]}2RGB')
       for enc, pattern in _BAYER_PATTERN.items()},
}

# OpenCV's bilinear demosaicing leaves images smaller than 3x3 black.
_BAYER_MIN_SIZE = 3

_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
_JPEG_SIGNATURE = b'\xff\xd8\xff'
# JPEG start-of-frame markers (they carry the image size); C4, C8 and CC are other segments.
_JPEG_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# JPEG markers without a length field.
_JPEG_STANDALONE_MARKERS = frozenset([0x01, *range(0xD0, 0xD8)])

COMPRESSED_CODECS = ('jpeg', 'png')
_IMDECODE_RGB = getattr(cv2, 'IMREAD_COLOR_RGB', None)  # OpenCV >= 4.11 decodes straight to RGB


def _dimension(name: str, value) -> int:
    """Return a message's integer field as int, or raise naming it."""
    try:
        number = operator.index(value)
    except TypeError:
        raise ImageConversionError(
            f'{name} must be an integer, got {value!r} ({type(value).__name__})') from None
    if number < 0:
        raise ImageConversionError(f'{name} must not be negative, got {number}')
    return number


def _check_size(width: int, height: int, max_pixels: Optional[int]) -> None:
    """Raise if an image is empty or larger than max_pixels."""
    if width < 1 or height < 1:
        raise ImageConversionError(
            f'image is {width}x{height} (width x height); both must be at least 1')
    if max_pixels is not None and width * height > max_pixels:
        raise ImageConversionError(
            f'image has {width * height} pixels ({width}x{height}), '
            f'more than max_pixels={max_pixels}')


def as_byte_array(data) -> np.ndarray:
    """Wrap message data as a flat uint8 array, without copying where the buffer allows.

    Args:
        data: bytes, bytearray, memoryview, ``array.array('B')`` or a uint8 numpy array.

    Returns:
        A 1-D uint8 array; it shares memory with ``data`` (read-only if ``data`` is) unless
        ``data`` was a non-contiguous numpy array.

    Raises:
        ImageConversionError: If ``data`` is not a byte buffer.
    """
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            raise ImageConversionError(f'data is a numpy array of {data.dtype}, expected uint8')
        return data.reshape(-1)
    if isinstance(data, array.array) and data.typecode not in 'Bb':
        raise ImageConversionError(
            f"data is an array.array of type code {data.typecode!r}, expected 'B'")
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError) as exc:
        raise ImageConversionError(
            f'data of type {type(data).__name__} is not a contiguous byte buffer; expected '
            "bytes, bytearray, memoryview, array.array('B') or a uint8 numpy array") from exc


def _pixel_bytes(data, step: int, height: int) -> np.ndarray:
    """Wrap an image's data as bytes, checking it holds ``step * height`` of them."""
    buffer = as_byte_array(data)
    if buffer.size < step * height:
        raise ImageConversionError(
            f'data has {buffer.size} bytes, expected at least step*height = {step}*{height} = '
            f'{step * height}')
    return buffer


def image_to_rgb(encoding: str, height: int, width: int, step: int, data,
                 is_bigendian: bool = False, max_pixels: Optional[int] = None) -> np.ndarray:
    """Convert the fields of a sensor_msgs/Image to an RGB array.

    Every field is checked before the pixel data is read. Row padding (``step`` larger than
    a row's bytes) is read through a strided view. mono8 is replicated to three channels,
    mono16 is scaled to 8 bit (rounded, like cv_bridge), yuv422/uyvy and yuv422_yuy2/yuyv use
    BT.601 video range, Bayer encodings are demosaiced bilinearly by OpenCV.

    Args:
        encoding: One of ``SUPPORTED_ENCODINGS``.
        height: Rows.
        width: Columns.
        step: Bytes from the start of one row to the next.
        data: The pixel bytes (see ``as_byte_array`` for the types accepted).
        is_bigendian: Byte order of 16-bit encodings (mono16); ignored for 8-bit ones.
        max_pixels: Refuse images with more pixels than this (None: no limit).

    Returns:
        A C-contiguous HxWx3 uint8 RGB array. For unpadded rgb8 it is a view of ``data``
        (read-only if ``data`` is immutable); otherwise new memory.

    Raises:
        ImageConversionError: If a field is invalid, the encoding unsupported or the data
            too short.
    """
    if encoding not in _BYTES_PER_PIXEL:
        raise ImageConversionError(
            f'unsupported encoding {shown(encoding)}; supported: '
            f'{", ".join(SUPPORTED_ENCODINGS)}', kind='unsupported encoding')
    height = _dimension('height', height)
    width = _dimension('width', width)
    step = _dimension('step', step)
    _check_size(width, height, max_pixels)
    bytes_per_pixel = _BYTES_PER_PIXEL[encoding]
    row_bytes = width * bytes_per_pixel
    if step < row_bytes:
        raise ImageConversionError(
            f'step {step} is smaller than width*bytes_per_pixel = {width}*{bytes_per_pixel} = '
            f'{row_bytes} for {encoding}')
    if encoding in _YUV_ORDER and width % 2:
        raise ImageConversionError(
            f'{encoding} needs an even width (pixel pairs share U and V), got width {width}')
    if encoding in _BAYER_PATTERN and min(width, height) < _BAYER_MIN_SIZE:
        raise ImageConversionError(
            f'{encoding} demosaicing needs at least {_BAYER_MIN_SIZE}x{_BAYER_MIN_SIZE} pixels, '
            f'got {width}x{height}')
    buffer = _pixel_bytes(data, step, height)

    if encoding == 'mono16':
        dtype = np.dtype('>u2' if is_bigendian else '<u2')
        mono16 = np.ndarray((height, width), dtype, buffer=buffer, strides=(step, 2))
        # Round value*255/65535, as cv_bridge's convertTo does; uint32 cannot overflow here.
        mono8 = ((mono16.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
        return cv2.cvtColor(mono8, cv2.COLOR_GRAY2RGB)
    if bytes_per_pixel == 1:
        shape, strides = (height, width), (step, 1)
    else:
        shape, strides = (height, width, bytes_per_pixel), (step, bytes_per_pixel, 1)
    pixels = np.ndarray(shape, np.uint8, buffer=buffer, strides=strides)
    if encoding == 'rgb8':
        return np.ascontiguousarray(pixels)  # copies only when rows are padded
    return cv2.cvtColor(pixels, _TO_RGB[encoding])


def read_compressed_header(data) -> Tuple[str, int, int]:
    """Read the codec and size of a JPEG or PNG payload from its header, without decoding.

    Args:
        data: The compressed bytes (any type ``as_byte_array`` accepts).

    Returns:
        ``(codec, width, height)`` with codec ``'jpeg'`` or ``'png'``.

    Raises:
        ImageConversionError: If the payload is empty, not JPEG/PNG, or its header is cut off.
    """
    payload = as_byte_array(data)
    if payload.size == 0:
        raise ImageConversionError('compressed data is empty')
    head = payload[:64].tobytes()
    if head.startswith(_PNG_SIGNATURE):
        # The IHDR chunk comes first: length, type, then big-endian width and height.
        if payload.size < 24 or head[12:16] != b'IHDR':
            raise ImageConversionError(
                f'corrupt png payload: no IHDR header in its first bytes ({payload.size} bytes)')
        width, height = struct.unpack('>II', head[16:24])
        return 'png', width, height
    if head.startswith(_JPEG_SIGNATURE):
        return ('jpeg', *_jpeg_size(payload))
    raise ImageConversionError(
        f'compressed data is neither JPEG nor PNG (starts with {head[:8].hex(" ")}, '
        f'{payload.size} bytes)')


def _jpeg_size(payload: np.ndarray) -> Tuple[int, int]:
    """Return (width, height) from a JPEG's start-of-frame segment."""
    position = 2  # past the start-of-image marker
    while position + 4 <= payload.size:
        if payload[position] != 0xFF:
            break
        marker = int(payload[position + 1])
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in _JPEG_STANDALONE_MARKERS:
            position += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            break
        length = int(payload[position + 2]) << 8 | int(payload[position + 3])
        if marker in _JPEG_SOF_MARKERS:
            frame = payload[position + 5:position + 9].tobytes()
            if len(frame) < 4:
                break
            height, width = struct.unpack('>HH', frame)
            return width, height
        position += 2 + length
    raise ImageConversionError(
        f'corrupt jpeg payload: no frame header found ({payload.size} bytes)')


def _codec_named_in(fmt: str) -> Optional[str]:
    """Return the codec an image_transport format string names, None for an empty string."""
    words = fmt.lower().replace(';', ' ').split()
    if not words:
        return None
    if any(word.startswith('compresseddepth') for word in words):
        raise ImageConversionError(
            f'compressed format {shown(fmt)} is compressedDepth (depth images), not supported; '
            f'supported: {", ".join(COMPRESSED_CODECS)}', kind='compressedDepth format')
    if 'jpeg' in words or 'jpg' in words:
        return 'jpeg'
    if 'png' in words:
        return 'png'
    raise ImageConversionError(
        f'unsupported compressed format {shown(fmt)}; supported: '
        f'{", ".join(COMPRESSED_CODECS)} '
        "(e.g. 'jpeg', 'rgb8; jpeg compressed bgr8', 'bgr8; png compressed bgr8')",
        kind='unsupported compressed format')


def compressed_to_rgb(fmt: str, data, max_pixels: Optional[int] = None) -> np.ndarray:
    """Decode the fields of a sensor_msgs/CompressedImage (JPEG or PNG) to an RGB array.

    The codec is read from the payload's header, which must agree with the one ``fmt`` names
    (image_transport strings like ``'rgb8; jpeg compressed bgr8'`` or plain ``'jpeg'``; an
    empty ``fmt`` accepts either). The size is checked against ``max_pixels`` before decoding.
    Grey payloads are replicated to three channels.

    Args:
        fmt: The message's ``format`` field.
        data: The compressed bytes (any type ``as_byte_array`` accepts).
        max_pixels: Refuse images with more pixels than this (None: no limit).

    Returns:
        A C-contiguous HxWx3 uint8 RGB array.

    Raises:
        ImageConversionError: If the format is unsupported, the payload is not the codec
            named, too large, or corrupt.
    """
    named = _codec_named_in(fmt)
    payload = as_byte_array(data)
    codec, width, height = read_compressed_header(payload)
    if named is not None and named != codec:
        raise ImageConversionError(f'format {shown(fmt)} names {named} but the data is a '
                                   f'{codec}', kind='format names another codec')
    _check_size(width, height, max_pixels)
    check_decode_work(codec, payload, width, height)
    try:
        with decoder_messages() as messages:
            if _IMDECODE_RGB is not None:
                rgb = cv2.imdecode(payload, _IMDECODE_RGB | cv2.IMREAD_IGNORE_ORIENTATION)
            else:  # pragma: no cover - OpenCV older than 4.11
                bgr = cv2.imdecode(payload, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
                rgb = None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    except cv2.error as exc:
        raise ImageConversionError(
            f'corrupt {codec} payload ({payload.size} bytes): {exc}',
            kind=f'corrupt {codec}') from None
    if messages:
        raise ImageConversionError(
            f'corrupt {codec} payload ({payload.size} bytes), the decoder reports: '
            f'{messages[0][:DECODER_MESSAGE_CHARACTERS]}', kind=f'corrupt {codec}')
    if rgb is None:
        raise ImageConversionError(
            f'corrupt {codec} payload: OpenCV could not decode its {payload.size} bytes '
            f'(header says {width}x{height})')
    if rgb.shape[:2] != (height, width):
        raise ImageConversionError(
            f'{codec} payload decoded to {rgb.shape[1]}x{rgb.shape[0]}, '
            f'but its header says {width}x{height}')
    return rgb


# Deflate never grows data by more than this (stored blocks); zlib's deflateBound is smaller.
def _deflate_bound(size: int) -> int:
    return size + (size >> 3) + (size >> 6) + 64


# Channels of each PNG colour type.
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
# Scans of a JPEG: one per component (baseline) or a dozen (progressive) in practice.
MAX_JPEG_SCANS = 100


def check_decode_work(codec: str, payload: np.ndarray, width: int, height: int) -> None:
    """Refuse a payload whose decoding would cost far more than its declared size needs.

    A PNG's compressed image data (its IDAT chunks) cannot legitimately exceed the deflate
    bound of the rows its header declares; more would inflate to data the decoder reads and
    throws away (a decompression bomb). A JPEG decodes every scan over the whole image; it
    needs at most a few dozen.

    Raises:
        ImageConversionError: The payload is over the bound.
    """
    if codec == 'png':
        header = payload[24:29].tobytes()
        if len(header) < 5 or header[1] not in _PNG_CHANNELS:
            raise ImageConversionError(f'corrupt png payload: invalid IHDR ({payload.size} '
                                       'bytes)', kind='corrupt png')
        depth, channels, interlaced = header[0], _PNG_CHANNELS[header[1]], header[4]
        rows = height * (1 + (width * channels * depth + 7) // 8)
        limit = _deflate_bound(rows + (7 * height + 64 if interlaced else 0))
        data = _png_image_data_bytes(payload)
        if data > limit:
            raise ImageConversionError(
                f'png payload holds {data} bytes of compressed image data, more than a '
                f'{width}x{height} image can need ({limit}): refused undecoded',
                kind='png image data over its size')
    else:
        scans = int(np.count_nonzero((payload[:-1] == 0xFF) & (payload[1:] == 0xDA)))
        if scans > MAX_JPEG_SCANS:
            raise ImageConversionError(
                f'jpeg payload has {scans} scans, more than {MAX_JPEG_SCANS}: refused undecoded',
                kind='jpeg scans over the limit')


def _png_image_data_bytes(payload: np.ndarray) -> int:
    """Return the total length of a PNG's IDAT chunks (read from the chunk headers)."""
    total, position = 0, len(_PNG_SIGNATURE)
    while position + 8 <= payload.size:
        length, kind = struct.unpack('>I4s', payload[position:position + 8].tobytes())
        if kind == b'IDAT':
            total += length
        elif kind == b'IEND':
            break
        position += 12 + length
    return total


# What the C decoders print is caught through a file standing in for stderr (descriptor 2).
_CAPTURE_LOCK = threading.Lock()
_capture_file = None
# Lines other threads log meanwhile (rcutils' format) go back to stderr as they are.
_LOG_LINE = re.compile(rb'^\[(DEBUG|INFO|WARN|ERROR|FATAL)\] \[')


@contextlib.contextmanager
def decoder_messages() -> Iterator[List[str]]:
    """Collect the lines libjpeg, libpng and OpenCV write to stderr during the block.

    They write to file descriptor 2 directly, so the descriptor points at a temporary file
    for the block (decodes in several threads take turns). Log lines of other threads caught
    meanwhile are written on to the real stderr; the rest is yielded, one string per line.
    """
    global _capture_file
    messages: List[str] = []
    with _CAPTURE_LOCK:
        if _capture_file is None:
            _capture_file = tempfile.TemporaryFile()  # one for the process's lifetime
            atexit.register(_capture_file.close)
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(_capture_file.fileno(), 2)
        try:
            yield messages
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            descriptor = _capture_file.fileno()
            size = os.lseek(descriptor, 0, os.SEEK_CUR)
            if size:
                caught = os.pread(descriptor, size, 0)
                os.ftruncate(descriptor, 0)
                os.lseek(descriptor, 0, os.SEEK_SET)
                for line in caught.splitlines(keepends=True):
                    if _LOG_LINE.match(line):
                        os.write(2, line)
                    elif line.strip():
                        messages.append(line.decode(errors='replace').strip())


def _check_rgb(rgb) -> np.ndarray:
    """Return rgb if it is a non-empty HxWx3 uint8 array, else raise."""
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 \
            or rgb.shape[2] != 3:
        described = (f'{rgb.dtype} array of shape {rgb.shape}' if isinstance(rgb, np.ndarray)
                     else type(rgb).__name__)
        raise ImageConversionError(f'expected an HxWx3 uint8 RGB array, got a {described}')
    _check_size(rgb.shape[1], rgb.shape[0], None)
    return rgb


def _rgb_to_yuv422(rgb: np.ndarray, order: str) -> np.ndarray:
    """Pack RGB as YUV 4:2:2 (BT.601 video range), chroma averaged over pixel pairs."""
    red, green, blue = np.moveaxis(rgb.astype(np.float32), 2, 0)
    luma = 16 + (65.481 * red + 128.553 * green + 24.966 * blue) / 255
    blue_diff = 128 + (-37.797 * red - 74.203 * green + 112.0 * blue) / 255
    red_diff = 128 + (112.0 * red - 93.786 * green - 18.214 * blue) / 255
    u = (blue_diff[:, 0::2] + blue_diff[:, 1::2]) / 2
    v = (red_diff[:, 0::2] + red_diff[:, 1::2]) / 2
    # Each pixel pair is four bytes: U Y0 V Y1 (uyvy) or Y0 U Y1 V (yuyv).
    pairs = [u, luma[:, 0::2], v, luma[:, 1::2]]
    if order == 'yuyv':
        pairs = [pairs[1], pairs[0], pairs[3], pairs[2]]
    packed = np.stack(pairs, axis=-1).reshape(rgb.shape[0], rgb.shape[1], 2)
    return np.clip(np.rint(packed), 0, 255).astype(np.uint8)


def _rgb_to_bayer(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """Sample RGB through a Bayer filter; pattern names the top-left 2x2 block row by row."""
    mosaic = np.empty(rgb.shape[:2], np.uint8)
    channel_of = {'r': 0, 'g': 1, 'b': 2}
    for index, colour in enumerate(pattern):
        row, column = divmod(index, 2)
        mosaic[row::2, column::2] = rgb[row::2, column::2, channel_of[colour]]
    return mosaic


def _byte_array(pixels: np.ndarray) -> array.array:
    """Copy packed pixels into an array.array('B'), the type rclpy's data setter keeps as is.

    rclpy's generated setter stores array.array('B') without checks; bytes are copied into a
    new array.array (cheap, but iterated byte by byte when ROS_PYTHON_CHECK_FIELDS=1), and
    numpy arrays or memoryviews are iterated element by element (~70 ms for a 480x360 RGB
    frame, against ~0.05 ms here).
    """
    packed = array.array('B')
    packed.frombytes(np.ascontiguousarray(pixels).reshape(-1).view(np.uint8))
    return packed


def rgb_to_image_fields(rgb: np.ndarray, encoding: str = 'rgb8'
                        ) -> Tuple[str, int, int, int, array.array]:
    """Encode an RGB array as the fields of a sensor_msgs/Image.

    Every encoding in ``SUPPORTED_ENCODINGS`` is produced: rgb8 and bgr8 for publishing, the
    others for test data and bags (mono8/mono16 are the BT.601 luma, mono16 little-endian;
    yuv422/uyvy/yuv422_yuy2/yuyv are BT.601 video range with chroma averaged over pixel pairs;
    Bayer encodings keep one channel per pixel). Rows are packed (step = width * bytes per
    pixel) and ``is_bigendian`` is False.

    Args:
        rgb: HxWx3 uint8 RGB array.
        encoding: Target encoding.

    Returns:
        ``(encoding, height, width, step, data)``; ``data`` is an ``array.array('B')``, which
        rclpy's ``Image.data`` setter takes without converting it.

    Raises:
        ImageConversionError: If ``rgb`` is not an HxWx3 uint8 array, the encoding is
            unsupported, or the width is odd for a YUV 4:2:2 encoding.
    """
    rgb = _check_rgb(rgb)
    if encoding not in _BYTES_PER_PIXEL:
        raise ImageConversionError(
            f'unsupported encoding {encoding!r}; supported: {", ".join(SUPPORTED_ENCODINGS)}')
    height, width = rgb.shape[:2]
    if encoding in _YUV_ORDER and width % 2:
        raise ImageConversionError(
            f'{encoding} needs an even width (pixel pairs share U and V), got width {width}')
    if encoding == 'rgb8':
        pixels = rgb
    elif encoding in ('mono8', 'mono16'):
        pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        if encoding == 'mono16':
            pixels = pixels.astype('<u2') * 257  # 0..255 -> 0..65535, little-endian
    elif encoding in _YUV_ORDER:
        pixels = _rgb_to_yuv422(rgb, _YUV_ORDER[encoding])
    elif encoding in _BAYER_PATTERN:
        pixels = _rgb_to_bayer(rgb, _BAYER_PATTERN[encoding])
    else:
        pixels = cv2.cvtColor(rgb, {'bgr8': cv2.COLOR_RGB2BGR, 'rgba8': cv2.COLOR_RGB2RGBA,
                                    'bgra8': cv2.COLOR_RGB2BGRA}[encoding])
    step = width * _BYTES_PER_PIXEL[encoding]
    return encoding, height, width, step, _byte_array(pixels)


# The name the publishing and test-data code both know; it covers every supported encoding.
image_fields_from_rgb = rgb_to_image_fields


def mono8_to_image_fields(labels: np.ndarray) -> Tuple[str, int, int, int, array.array]:
    """Encode a label (or any 8-bit single-channel) image as sensor_msgs/Image fields.

    Args:
        labels: HxW integer array with values in 0..255 (uint8 is used as is).

    Returns:
        ``('mono8', height, width, step, data)`` with ``data`` an ``array.array('B')``.

    Raises:
        ImageConversionError: If ``labels`` is not a non-empty 2-D integer array in 0..255.
    """
    if not isinstance(labels, np.ndarray) or labels.ndim != 2 \
            or not np.issubdtype(labels.dtype, np.integer):
        described = (f'{labels.dtype} array of shape {labels.shape}'
                     if isinstance(labels, np.ndarray) else type(labels).__name__)
        raise ImageConversionError(f'expected an HxW integer label array, got a {described}')
    height, width = labels.shape
    _check_size(width, height, None)
    if labels.dtype != np.uint8:
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high > 255:
            raise ImageConversionError(
                f'label values span {low}..{high}; mono8 holds 0..255')
        labels = labels.astype(np.uint8)
    return 'mono8', height, width, width, _byte_array(labels)


# Encodings of a single-channel 8-bit image: what a label mask or confidence map may arrive as.
MONO8_ENCODINGS = ('mono8', '8UC1')


def image_to_mono8(encoding: str, height: int, width: int, step: int, data,
                   max_pixels: Optional[int] = None) -> np.ndarray:
    """Read the fields of a single-channel 8-bit sensor_msgs/Image (a label mask) as an array.

    The inverse of :func:`mono8_to_image_fields`. Values are kept as they are (class ids are
    not grey levels), so only ``mono8`` and ``8UC1`` are accepted, never a colour encoding.

    Args:
        encoding: ``'mono8'`` or ``'8UC1'``.
        height: Rows.
        width: Columns.
        step: Bytes from the start of one row to the next (>= width).
        data: The pixel bytes (see ``as_byte_array`` for the types accepted).
        max_pixels: Refuse images with more pixels than this (None: no limit).

    Returns:
        A C-contiguous HxW uint8 array; a view of ``data`` unless rows are padded.

    Raises:
        ImageConversionError: Another encoding, an invalid field or data too short.
    """
    if encoding not in MONO8_ENCODINGS:
        raise ImageConversionError(
            f'encoding {shown(encoding)} is not a single-channel 8-bit image; expected '
            f'{" or ".join(MONO8_ENCODINGS)}')
    height = _dimension('height', height)
    width = _dimension('width', width)
    step = _dimension('step', step)
    _check_size(width, height, max_pixels)
    if step < width:
        raise ImageConversionError(f'step {step} is smaller than the width {width} of a '
                                   f'{encoding} image')
    buffer = _pixel_bytes(data, step, height)
    pixels = np.ndarray((height, width), np.uint8, buffer=buffer, strides=(step, 1))
    return np.ascontiguousarray(pixels)


def encode_compressed(image: np.ndarray, fmt: str = 'jpeg', quality: int = 90
                      ) -> Tuple[str, bytes]:
    """Compress an RGB (or mono8) array as the fields of a sensor_msgs/CompressedImage.

    Args:
        image: HxWx3 uint8 RGB array, or HxW uint8 grey array.
        fmt: ``'jpeg'`` (or ``'jpg'``) or ``'png'``.
        quality: JPEG quality 1..100 (ignored for PNG).

    Returns:
        ``(format, data)``: an image_transport format string such as
        ``'rgb8; jpeg compressed bgr8'`` or ``'mono8; png compressed mono8'``, and the bytes.

    Raises:
        ImageConversionError: If the image, codec or quality is invalid.
    """
    codec = {'jpeg': 'jpeg', 'jpg': 'jpeg', 'png': 'png'}.get(str(fmt).lower())
    if codec is None:
        raise ImageConversionError(
            f'unsupported compressed format {fmt!r}; supported: {", ".join(COMPRESSED_CODECS)}')
    if isinstance(image, np.ndarray) and image.ndim == 2 and image.dtype == np.uint8:
        _check_size(image.shape[1], image.shape[0], None)
        source, pixels, target = 'mono8', image, 'mono8'
    else:
        # image_transport's compressed publisher encodes colour as bgr8, OpenCV's order.
        source, pixels, target = 'rgb8', cv2.cvtColor(_check_rgb(image), cv2.COLOR_RGB2BGR), 'bgr8'
    if codec == 'jpeg':
        quality = _dimension('quality', quality)
        if not 1 <= quality <= 100:
            raise ImageConversionError(f'jpeg quality must be in 1..100, got {quality}')
        params = [cv2.IMWRITE_JPEG_QUALITY, quality]
    else:
        params = []
    ok, encoded = cv2.imencode('.jpg' if codec == 'jpeg' else '.png', pixels, params)
    if not ok:  # pragma: no cover - OpenCV fails only on sizes its codecs cannot hold
        raise ImageConversionError(f'OpenCV could not encode a {pixels.shape} image as {codec}')
    return f'{source}; {codec} compressed {target}', encoded.tobytes()
