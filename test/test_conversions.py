"""Image conversions against real CamVid frames, real sensor_msgs classes and rosbags-image.

rosbags-image (``message_to_cvimage``) is the independent oracle: its own encoding table and
byte handling. It ignores ``step``, so padded images are checked against the unpadded decode.
"""

import array

import cv2
import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from rosbags.image import message_to_cvimage
from sensor_msgs.msg import CompressedImage, Image

from semseg_ros.messages.conversions import (
    as_byte_array, compressed_to_rgb, encode_compressed, image_fields_from_rgb, image_to_mono8,
    image_to_rgb, ImageConversionError, mono8_to_image_fields, read_compressed_header,
    rgb_to_image_fields, SUPPORTED_ENCODINGS)

LOSSLESS = ['rgb8', 'bgr8', 'rgba8', 'bgra8']
YUV = ['yuv422', 'uyvy', 'yuv422_yuy2', 'yuyv']
BAYER = ['bayer_rggb8', 'bayer_bggr8', 'bayer_gbrg8', 'bayer_grbg8']
# Bytes per pixel as sensor_msgs/image_encodings defines them, written out independently.
BYTES_PER_PIXEL = {'rgb8': 3, 'bgr8': 3, 'rgba8': 4, 'bgra8': 4, 'mono8': 1, 'mono16': 2,
                   **dict.fromkeys(YUV, 2), **dict.fromkeys(BAYER, 1)}


def _first_pair(camvid):
    """Return the image and label paths of CamVid's first training pair."""
    line = (camvid / 'train.txt').read_text().splitlines()[0]
    image, label = line.split()
    return camvid / image, camvid / label


@pytest.fixture(scope='module')
def frame(camvid):
    """A real 480x360 CamVid frame as RGB."""
    image_path, _ = _first_pair(camvid)
    bgr = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
    assert bgr is not None, image_path
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@pytest.fixture(scope='module')
def labels(camvid):
    """The real CamVid label image of the same frame (uint8, 0..11)."""
    _, label_path = _first_pair(camvid)
    return cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)


def _message(encoding, height, width, step, data, is_bigendian=False):
    """Build a real sensor_msgs/Image from fields."""
    msg = Image()
    msg.encoding, msg.height, msg.width, msg.step = encoding, height, width, step
    msg.is_bigendian = is_bigendian
    msg.data = data
    return msg


def _decode(msg, **kwargs):
    """Decode a sensor_msgs/Image with our code, passing its plain fields."""
    return image_to_rgb(msg.encoding, msg.height, msg.width, msg.step, msg.data,
                        msg.is_bigendian, **kwargs)


def _oracle(msg):
    """Decode a message with rosbags-image as RGB; it returns what cvtColor(..., RGB) gives."""
    return np.asarray(message_to_cvimage(msg, 'rgb8'))


def _pad_rows(fields, extra):
    """Return image fields with `extra` junk bytes after every row (step > row bytes)."""
    encoding, height, width, step, data = fields
    rows = np.frombuffer(data, np.uint8).reshape(height, step)
    junk = np.full((height, extra), 0xA5, np.uint8)  # nonzero, so reading it would show
    padded = np.concatenate([rows, junk], axis=1)
    return encoding, height, width, step + extra, padded.tobytes()


# -- every encoding against rosbags-image ---------------------------------------------------


@pytest.mark.parametrize('encoding', SUPPORTED_ENCODINGS)
def test_every_encoding_matches_rosbags_image(frame, encoding):
    """Our decode equals rosbags-image's for a real frame in every encoding, exactly.

    Both demosaic with OpenCV's bilinear Bayer conversion and unpack YUV with OpenCV's BT.601
    conversion, reached through independent encoding tables, so any mix-up of Bayer pattern or
    byte order shows as a difference; no tolerance is needed there. Only mono16 differs by
    design: rosbags truncates value*255/65535 while we round like cv_bridge (at most 1 apart).
    """
    fields = rgb_to_image_fields(frame, encoding)
    assert fields[3] == frame.shape[1] * BYTES_PER_PIXEL[encoding]
    msg = _message(*fields)
    ours = _decode(msg)
    assert ours.shape == frame.shape and ours.dtype == np.uint8 and ours.flags.c_contiguous
    expected = _oracle(msg)
    if encoding == 'mono16':
        assert np.abs(ours.astype(int) - expected).max() <= 1
    else:
        np.testing.assert_array_equal(ours, expected)


@pytest.mark.parametrize('encoding', LOSSLESS)
def test_lossless_round_trip_is_exact(frame, encoding):
    """rgb -> fields -> rgb gives the frame back bit for bit."""
    np.testing.assert_array_equal(image_to_rgb(*rgb_to_image_fields(frame, encoding)), frame)


@pytest.mark.parametrize('encoding', ['mono8', 'mono16'])
def test_mono_round_trip_of_grey_frame_is_exact(frame, encoding):
    """A grey frame survives mono8/mono16 exactly, and mono16 stores value*257."""
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    grey_rgb = np.repeat(grey[:, :, None], 3, axis=2)
    fields = rgb_to_image_fields(grey_rgb, encoding)
    np.testing.assert_array_equal(image_to_rgb(*fields), grey_rgb)
    if encoding == 'mono16':
        stored = np.frombuffer(fields[4], '<u2').reshape(grey.shape)
        np.testing.assert_array_equal(stored, grey.astype(np.uint16) * 257)


def test_mono16_full_range_both_byte_orders(frame):
    """16-bit values that are not multiples of 257 scale by rounding, in both byte orders."""
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.uint32)
    values = (grey * 257 + (np.arange(grey.size).reshape(grey.shape) % 257)).astype(np.uint16)
    expected = np.floor(values.astype(np.float64) * 255 / 65535 + 0.5).astype(np.uint8)
    height, width = values.shape
    for byte_order, bigendian in (('<u2', False), ('>u2', True)):
        msg = _message('mono16', height, width, width * 2,
                       values.astype(byte_order).tobytes(), bigendian)
        ours = _decode(msg)
        np.testing.assert_array_equal(ours[:, :, 0], expected)
        np.testing.assert_array_equal(ours[:, :, 2], expected)
        assert np.abs(ours.astype(int) - _oracle(msg)).max() <= 1
    assert not np.array_equal(values.astype('<u2').tobytes(), values.astype('>u2').tobytes())


def test_yuv_encoder_matches_opencv(frame):
    """Our YUV 4:2:2 packing agrees with OpenCV's RGB2YUV (rounding differs by at most 1)."""
    for encoding, code in (('yuv422', cv2.COLOR_RGB2YUV_UYVY),
                           ('yuv422_yuy2', cv2.COLOR_RGB2YUV_YUYV)):
        ours = np.frombuffer(rgb_to_image_fields(frame, encoding)[4], np.uint8)
        reference = cv2.cvtColor(frame, code).reshape(-1)
        assert np.abs(ours.astype(int) - reference).max() <= 1


@pytest.mark.parametrize('encoding', YUV + BAYER)
def test_subsampled_round_trip_is_close(frame, encoding):
    """YUV (chroma shared by pixel pairs) and Bayer (one channel per pixel) lose a little."""
    back = image_to_rgb(*rgb_to_image_fields(frame, encoding))
    error = np.abs(back.astype(int) - frame)
    # Measured: ~0.45 mean for YUV, ~1.7 for Bayer; a wrong Bayer pattern gives 5 and more.
    assert error.mean() < (1.0 if encoding in YUV else 3.0)


@pytest.mark.parametrize('encoding', BAYER)
def test_bayer_mosaic_and_pattern(frame, encoding):
    """The mosaic puts each colour where the ROS name says; flat colours demosaic exactly."""
    pattern = encoding[len('bayer_'):-1]
    mosaic = np.frombuffer(rgb_to_image_fields(frame, encoding)[4], np.uint8).reshape(
        frame.shape[:2])
    channel = {'r': 0, 'g': 1, 'b': 2}
    for (row, column), colour in zip([(0, 0), (0, 1), (1, 0), (1, 1)], pattern):
        np.testing.assert_array_equal(mosaic[row::2, column::2],
                                      frame[row::2, column::2, channel[colour]])
    for colour in ((200, 100, 50), (10, 240, 90), (60, 30, 250)):
        flat = np.full((9, 12, 3), colour, np.uint8)
        np.testing.assert_array_equal(image_to_rgb(*rgb_to_image_fields(flat, encoding)), flat)


# -- layout: padding, odd sizes, data types --------------------------------------------------


@pytest.mark.parametrize('encoding', ['rgb8', 'bgr8', 'bgra8', 'mono8', 'mono16', 'yuv422',
                                      'yuyv', 'bayer_grbg8'])
@pytest.mark.parametrize('extra', [1, 6, 64])
def test_step_padding(frame, encoding, extra):
    """Rows padded to a longer step decode to the same image as packed rows."""
    crop = frame[:90, :120]
    packed = rgb_to_image_fields(crop, encoding)
    padded = _pad_rows(packed, extra)
    assert padded[3] > crop.shape[1] * BYTES_PER_PIXEL[encoding]
    ours = image_to_rgb(*padded)
    assert ours.flags.c_contiguous
    np.testing.assert_array_equal(ours, image_to_rgb(*packed))


@pytest.mark.parametrize('encoding', LOSSLESS + ['mono8', 'mono16'] + BAYER)
def test_odd_sizes_match_rosbags_image(frame, encoding):
    """Odd widths and heights (legal for all but YUV 4:2:2) decode like rosbags-image."""
    crop = np.ascontiguousarray(frame[101:138, 33:84])  # 51x37
    msg = _message(*rgb_to_image_fields(crop, encoding))
    ours = _decode(msg)
    assert ours.shape == (37, 51, 3)
    tolerance = 1 if encoding == 'mono16' else 0  # rosbags truncates, we round
    assert np.abs(ours.astype(int) - _oracle(msg)).max() <= tolerance


def test_data_types_rclpy_and_rosbags_give(frame):
    """array.array('B'), bytes, bytearray, memoryview and uint8 numpy arrays all decode."""
    encoding, height, width, step, data = rgb_to_image_fields(frame, 'bgr8')
    assert isinstance(data, array.array) and data.typecode == 'B'
    raw = data.tobytes()
    numpy_data = np.frombuffer(raw, np.uint8).copy()
    for candidate in (data, raw, bytearray(raw), memoryview(raw), numpy_data):
        np.testing.assert_array_equal(
            image_to_rgb(encoding, height, width, step, candidate), frame)


def test_unpadded_rgb8_is_a_view_without_copy(frame):
    """Packed rgb8 data is wrapped, not copied; padded rows force exactly one copy."""
    writable = bytearray(frame.tobytes())
    height, width = frame.shape[:2]
    ours = image_to_rgb('rgb8', height, width, width * 3, writable)
    assert np.shares_memory(ours, as_byte_array(writable))
    from_bytes = image_to_rgb('rgb8', height, width, width * 3, bytes(writable))
    assert not from_bytes.flags.writeable  # a view of immutable bytes stays read-only
    padded = _pad_rows(('rgb8', height, width, width * 3, writable), 4)
    copied = image_to_rgb(*padded[:4], bytearray(padded[4]))
    assert copied.flags.c_contiguous and copied.flags.owndata


def test_serialized_message_round_trip_with_rclpy(frame, labels):
    """Fields set on real messages survive rclpy's CDR serialization and decode again."""
    msg = _message(*rgb_to_image_fields(frame, 'rgb8'))
    received = deserialize_message(serialize_message(msg), Image)
    assert isinstance(received.data, array.array)
    np.testing.assert_array_equal(_decode(received), frame)

    label_msg = _message(*mono8_to_image_fields(labels))
    received = deserialize_message(serialize_message(label_msg), Image)
    np.testing.assert_array_equal(np.asarray(message_to_cvimage(received)), labels)
    np.testing.assert_array_equal(_decode(received)[:, :, 1], labels)

    compressed = CompressedImage()
    compressed.format, compressed.data = encode_compressed(frame, 'png')
    received = deserialize_message(serialize_message(compressed), CompressedImage)
    np.testing.assert_array_equal(compressed_to_rgb(received.format, received.data), frame)


def test_fields_pass_rclpy_field_checks(frame, labels):
    """Our data passes the generated setters' checks (ROS_PYTHON_CHECK_FIELDS=1) unchanged."""
    msg = Image(check_fields=True)
    msg.encoding, msg.height, msg.width, msg.step, msg.data = rgb_to_image_fields(frame)
    np.testing.assert_array_equal(_decode(msg), frame)
    msg = Image(check_fields=True)
    msg.encoding, msg.height, msg.width, msg.step, msg.data = mono8_to_image_fields(labels)
    assert msg.data.tobytes() == labels.tobytes()


def test_label_round_trip(labels):
    """Labels of any integer dtype in 0..255 round-trip through mono8."""
    assert labels.dtype == np.uint8 and labels.max() <= 11
    for dtype in (np.uint8, np.int64, np.int32):
        fields = mono8_to_image_fields(labels.astype(dtype))
        assert fields[:4] == ('mono8', labels.shape[0], labels.shape[1], labels.shape[1])
        np.testing.assert_array_equal(np.asarray(message_to_cvimage(_message(*fields))), labels)
    assert image_fields_from_rgb is rgb_to_image_fields


# -- compressed -------------------------------------------------------------------------------


@pytest.mark.parametrize('codec', ['jpeg', 'png'])
def test_compressed_matches_rosbags_image(frame, codec):
    """Colour JPEG/PNG decode like rosbags-image; PNG gives the frame back exactly."""
    fmt, data = encode_compressed(frame, codec)
    assert fmt == f'rgb8; {codec} compressed bgr8'
    assert read_compressed_header(data) == (codec, frame.shape[1], frame.shape[0])
    msg = CompressedImage()
    msg.format, msg.data = fmt, data
    ours = compressed_to_rgb(msg.format, msg.data)
    np.testing.assert_array_equal(ours, np.asarray(message_to_cvimage(msg, 'rgb8')))
    if codec == 'png':
        np.testing.assert_array_equal(ours, frame)
    else:
        assert np.abs(ours.astype(int) - frame).mean() < 3  # JPEG at quality 90


@pytest.mark.parametrize('codec', ['jpeg', 'png'])
def test_compressed_mono(frame, codec):
    """Grey payloads decode to three equal channels that match rosbags-image's grey image."""
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    fmt, data = encode_compressed(grey, codec)
    assert fmt == f'mono8; {codec} compressed mono8'
    msg = CompressedImage(format=fmt, data=data)
    ours = compressed_to_rgb(msg.format, msg.data)
    oracle = np.asarray(message_to_cvimage(msg))  # rosbags keeps grey payloads 2-D
    for channel in range(3):
        np.testing.assert_array_equal(ours[:, :, channel], oracle)


@pytest.mark.parametrize('fmt', ['jpeg', 'JPEG', 'jpg', 'rgb8; jpeg compressed bgr8',
                                 'bgr8; jpeg compressed bgr8', ''])
def test_compressed_format_strings(frame, fmt):
    """Plain and image_transport format strings, and an empty one, are accepted."""
    _, data = encode_compressed(frame, 'jpeg')
    assert compressed_to_rgb(fmt, data).shape == frame.shape


def test_progressive_jpeg_header(frame):
    """The header reader finds the size in progressive (SOF2) JPEGs too."""
    ok, data = cv2.imencode('.jpg', frame, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    assert ok and b'\xff\xc2' in data.tobytes()
    assert read_compressed_header(data) == ('jpeg', 480, 360)
    assert compressed_to_rgb('jpeg', data).shape == frame.shape


# -- bad input ----------------------------------------------------------------------------------


def _fields(frame, encoding='rgb8', **changes):
    """Valid fields of a frame in an encoding, with some replaced."""
    encoding, height, width, step, data = rgb_to_image_fields(frame, encoding)
    fields = {'encoding': encoding, 'height': height, 'width': width, 'step': step,
              'data': data}
    fields.update(changes)
    return fields


@pytest.mark.parametrize('changes, message', [
    ({'encoding': 'xyz'}, "unsupported encoding 'xyz'; supported: rgb8, bgr8"),
    ({'encoding': '16UC1'}, "unsupported encoding '16UC1'"),
    ({'data': bytes(1000)}, 'data has 1000 bytes, expected at least step*height = 1440*360'),
    ({'step': 100}, 'step 100 is smaller than width*bytes_per_pixel = 480*3 = 1440'),
    ({'width': 0}, 'image is 0x360'),
    ({'height': 0}, 'image is 480x0'),
    ({'height': -3}, 'height must not be negative, got -3'),
    ({'width': 2.5}, 'width must be an integer, got 2.5'),
    ({'max_pixels': 1000}, 'image has 172800 pixels (480x360), more than max_pixels=1000'),
    ({'data': [1, 2, 3]}, 'data of type list is not a contiguous byte buffer'),
    ({'data': np.zeros(10, np.uint16)}, 'numpy array of uint16, expected uint8'),
    ({'data': array.array('H', [1])}, "array.array of type code 'H', expected 'B'"),
])
def test_bad_image_fields(frame, changes, message):
    """Each invalid field raises ImageConversionError naming the value and what was expected."""
    with pytest.raises(ImageConversionError) as info:
        image_to_rgb(**_fields(frame, **changes))
    assert message in str(info.value)


def test_bad_encoding_specific_fields(frame):
    """Odd widths for YUV 4:2:2, tiny Bayer images and short mono16 steps are refused."""
    with pytest.raises(ImageConversionError, match='yuv422 needs an even width.*width 479'):
        image_to_rgb(**_fields(frame, 'yuv422', width=479))
    with pytest.raises(ImageConversionError, match='yuyv needs an even width'):
        rgb_to_image_fields(frame[:, :479], 'yuyv')
    with pytest.raises(ImageConversionError, match=r'bayer_rggb8 .* at least 3x3 .* got 2x2'):
        image_to_rgb('bayer_rggb8', 2, 2, 2, bytes(4))
    with pytest.raises(ImageConversionError, match='step 959 is smaller than .* = 960'):
        image_to_rgb(**_fields(frame, 'mono16', step=959))


def test_max_pixels_boundary(frame):
    """max_pixels equal to the pixel count passes; one less fails, for raw and compressed."""
    pixels = frame.shape[0] * frame.shape[1]
    assert image_to_rgb(**_fields(frame), max_pixels=pixels).shape == frame.shape
    fmt, data = encode_compressed(frame, 'png')
    assert compressed_to_rgb(fmt, data, max_pixels=pixels).shape == frame.shape
    with pytest.raises(ImageConversionError, match=f'max_pixels={pixels - 1}'):
        compressed_to_rgb(fmt, data, max_pixels=pixels - 1)


def test_max_pixels_checked_before_decoding(frame):
    """A payload whose header is intact but body is garbage fails on size first."""
    fmt, data = encode_compressed(frame, 'png')
    broken = data[:40] + bytes(len(data) - 40)
    with pytest.raises(ImageConversionError, match='more than max_pixels=100'):
        compressed_to_rgb(fmt, broken, max_pixels=100)
    with pytest.raises(ImageConversionError, match='corrupt png payload'):
        compressed_to_rgb(fmt, broken)


@pytest.mark.parametrize('codec', ['jpeg', 'png'])
@pytest.mark.parametrize('damage', ['truncated', 'header only', 'signature only'])
def test_corrupt_compressed(frame, codec, damage):
    """Cut-off payloads raise ImageConversionError naming the codec."""
    fmt, data = encode_compressed(frame, codec)
    cut = {'truncated': len(data) // 2, 'header only': 200, 'signature only': 8}[damage]
    with pytest.raises(ImageConversionError, match=f'corrupt {codec} payload'):
        compressed_to_rgb(fmt, data[:cut])


@pytest.mark.parametrize('fmt, data, message', [
    ('jpeg', b'', 'compressed data is empty'),
    ('jpeg', b'GIF89a' + bytes(100), 'neither JPEG nor PNG (starts with 47 49 46 38'),
    ('theora', b'\xff\xd8\xff', "unsupported compressed format 'theora'; supported: jpeg, png"),
    ('16UC1; compressedDepth png', b'', 'compressedDepth (depth images), not supported'),
])
def test_bad_compressed_input(fmt, data, message):
    """Empty, unknown and unsupported payloads raise ImageConversionError naming the problem."""
    with pytest.raises(ImageConversionError) as info:
        compressed_to_rgb(fmt, data)
    assert message in str(info.value)


def test_compressed_format_must_match_payload(frame):
    """A format naming PNG over a JPEG payload is refused."""
    _, data = encode_compressed(frame, 'jpeg')
    with pytest.raises(ImageConversionError, match="'rgb8; png compressed bgr8' names png but "
                                                   'the data is a jpeg'):
        compressed_to_rgb('rgb8; png compressed bgr8', data)


def test_bad_arrays_to_encode(frame):
    """Encoders refuse arrays that are not HxWx3 uint8 RGB (or HxW labels in 0..255)."""
    with pytest.raises(ImageConversionError, match=r'HxWx3 uint8 RGB array, got a float32'):
        rgb_to_image_fields(frame.astype(np.float32))
    with pytest.raises(ImageConversionError, match="unsupported encoding 'bgr16'"):
        rgb_to_image_fields(frame, 'bgr16')
    with pytest.raises(ImageConversionError, match='image is 0x5'):
        rgb_to_image_fields(np.zeros((5, 0, 3), np.uint8))
    with pytest.raises(ImageConversionError, match=r'label values span 0\.\.300'):
        mono8_to_image_fields(np.array([[0, 300]]))
    with pytest.raises(ImageConversionError, match='HxW integer label array, got a float64'):
        mono8_to_image_fields(np.zeros((2, 2)))
    with pytest.raises(ImageConversionError, match="unsupported compressed format 'bmp'"):
        encode_compressed(frame, 'bmp')
    with pytest.raises(ImageConversionError, match='jpeg quality must be in 1..100, got 0'):
        encode_compressed(frame, 'jpeg', quality=0)


def test_mono8_reading(labels):
    """image_to_mono8 inverts mono8_to_image_fields, reads padded rows, refuses colour."""
    fields = mono8_to_image_fields(labels)
    np.testing.assert_array_equal(image_to_mono8(*fields), labels)
    height, width = labels.shape
    padded = np.zeros((height, width + 3), np.uint8)
    padded[:, :width] = labels
    read = image_to_mono8('8UC1', height, width, width + 3, padded.tobytes())
    np.testing.assert_array_equal(read, labels)
    assert read.flags.c_contiguous
    with pytest.raises(ImageConversionError, match="'rgb8' is not a single-channel"):
        image_to_mono8('rgb8', height, width, width * 3, bytes(height * width * 3))
    with pytest.raises(ImageConversionError, match='expected at least step'):
        image_to_mono8('mono8', height, width, width, bytes(width))
    with pytest.raises(ImageConversionError, match='step 2 is smaller'):
        image_to_mono8('mono8', height, width, 2, fields[4])
