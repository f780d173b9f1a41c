"""Serialized images read and written directly, checked against rclpy's own (de)serializer.

rclpy's ``serialize_message``/``deserialize_message`` run the middleware's typesupport (Fast
DDS here), the same code that serializes a camera's frames and deserializes the node's
outputs in a subscriber; every case goes through it both ways.
"""

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CompressedImage, Image

from semseg_ros.messages import cdr, conversions
from semseg_ros.nodes.segmentation_node import read_frame

# Frame ids of every length mod 4 move the fields after them to each alignment case.
FRAME_IDS = ['', 'c', 'ca', 'cam', 'camera', 'kamera_\u00e9\u20ac']


def image(encoding, height, width, step, frame_id='cam', sec=12, nanosec=34, is_bigendian=0,
          seed=0):
    """Return an Image of random pixels with ``step`` bytes per row (padding included)."""
    data = np.random.default_rng(seed).integers(0, 256, step * height, np.uint8)
    msg = Image(height=height, width=width, encoding=encoding, is_bigendian=is_bigendian,
                step=step, data=data.tobytes())
    msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nanosec
    msg.header.frame_id = frame_id
    return msg


@pytest.mark.parametrize('frame_id', FRAME_IDS)
@pytest.mark.parametrize('encoding,width,step', [
    ('rgb8', 5, 15), ('rgb8', 5, 17), ('bgr8', 4, 12), ('bgr8', 3, 13),
    ('mono8', 7, 7), ('mono8', 7, 9), ('mono16', 3, 8)])
def test_read_image_gives_rclpy_fields_and_a_view_of_the_payload(
        frame_id, encoding, width, step):
    """Every field as rclpy deserializes it; the pixels are the payload's own memory."""
    msg = image(encoding, 3, width, step, frame_id=frame_id, sec=-7, nanosec=999_999_999,
                is_bigendian=1 if encoding == 'mono16' else 0)
    payload = serialize_message(msg)
    read = cdr.read_image(payload)
    assert (read.header.sec, read.header.nanosec, read.header.frame_id) == (
        -7, 999_999_999, frame_id)
    assert (read.height, read.width, read.encoding, read.is_bigendian, read.step) == (
        msg.height, msg.width, msg.encoding, msg.is_bigendian, msg.step)
    assert read.data.tobytes() == bytes(msg.data)
    assert np.shares_memory(read.data, np.frombuffer(payload, np.uint8))
    assert not read.data.flags.writeable
    # The conversion reads the view as it reads rclpy's array: padding skipped, same pixels.
    assert np.array_equal(
        conversions.image_to_rgb(read.encoding, read.height, read.width, read.step, read.data,
                                 bool(read.is_bigendian)),
        conversions.image_to_rgb(msg.encoding, msg.height, msg.width, msg.step, msg.data,
                                 bool(msg.is_bigendian)))


def test_unpadded_rgb8_reaches_the_segmenter_without_a_copy():
    """An unpadded rgb8 frame converts to a view of the serialized payload itself."""
    payload = serialize_message(image('rgb8', 4, 6, 18))
    read = cdr.read_image(payload)
    rgb = conversions.image_to_rgb(read.encoding, read.height, read.width, read.step, read.data)
    assert rgb.shape == (4, 6, 3) and rgb.flags.c_contiguous
    assert np.shares_memory(rgb, np.frombuffer(payload, np.uint8))


@pytest.mark.parametrize('frame_id', FRAME_IDS)
def test_read_compressed_image_gives_rclpy_fields(frame_id):
    """Header, format and data of a CompressedImage as rclpy serialized them."""
    msg = CompressedImage(format='rgb8; jpeg compressed bgr8', data=b'\xff\xd8\xff\xe0abc')
    msg.header.frame_id, msg.header.stamp.sec = frame_id, 5
    read = cdr.read_compressed_image(serialize_message(msg))
    assert (read.header.frame_id, read.header.sec, read.image_format) == (
        frame_id, 5, msg.format)
    assert read.data.tobytes() == bytes(msg.data)


@pytest.mark.parametrize('frame_id', FRAME_IDS)
@pytest.mark.parametrize('shape,encoding', [((3, 5), 'mono8'), ((4, 7, 3), 'rgb8'),
                                            ((1, 1), 'mono8')])
def test_written_images_deserialize_with_the_input_header(frame_id, shape, encoding):
    """rclpy reads the written bytes as an Image with the input's header and packed rows."""
    source = serialize_message(image('bgr8', 2, 2, 6, frame_id=frame_id, sec=3, nanosec=4))
    header = cdr.read_image(source).header
    pixels = np.random.default_rng(1).integers(0, 256, shape, np.uint8)
    msg = deserialize_message(cdr.write_image(header, encoding, pixels), Image)
    assert (msg.header.frame_id, msg.header.stamp.sec, msg.header.stamp.nanosec) == (
        frame_id, 3, 4)
    channels = 1 if len(shape) == 2 else 3
    assert (msg.height, msg.width, msg.encoding, msg.is_bigendian, msg.step) == (
        shape[0], shape[1], encoding, 0, shape[1] * channels)
    assert bytes(msg.data) == pixels.tobytes()


def test_a_written_image_equals_rclpys_serialization():
    """The same length and message as rclpy's serialization of it (only padding may differ)."""
    labels = np.arange(12, dtype=np.uint8).reshape(3, 4)
    header = cdr.header_of(9, 10, 'cam1')  # frame id of 4 + NUL: 3 padding bytes follow
    written = cdr.write_image(header, 'mono8', labels)
    typed = Image(height=3, width=4, encoding='mono8', step=4, data=labels.tobytes())
    typed.header.stamp.sec, typed.header.stamp.nanosec = 9, 10
    typed.header.frame_id = 'cam1'
    expected = serialize_message(typed)
    assert len(written) == len(expected)
    assert deserialize_message(written, Image) == typed
    assert cdr.read_image(written).data.tobytes() == labels.tobytes()


def test_strided_pixels_are_packed_when_written():
    """A strided view (every other column) is written as the packed image it shows."""
    rgb = np.random.default_rng(2).integers(0, 256, (5, 8, 3), np.uint8)
    header = cdr.header_of(0, 0, 'f')
    msg = deserialize_message(cdr.write_image(header, 'rgb8', rgb[:, ::2]), Image)
    assert msg.step == 12
    assert bytes(msg.data) == np.ascontiguousarray(rgb[:, ::2]).tobytes()


def test_big_endian_payloads_are_read_and_written_in_their_byte_order():
    """A big-endian header is carried over into a big-endian output that rclpy reads back."""
    header = cdr.header_of(70000, 5, 'be', byte_order='>')
    written = cdr.write_image(header, 'mono8', np.full((2, 3), 7, np.uint8))
    assert written[:2] == b'\x00\x00'
    read = cdr.read_image(written)
    assert (read.header.sec, read.header.byte_order, read.height, read.width) == (
        70000, '>', 2, 3)
    msg = deserialize_message(written, Image)
    assert (msg.header.stamp.sec, msg.height, msg.width, bytes(msg.data)) == (
        70000, 2, 3, bytes([7] * 6))


def test_every_cut_of_a_payload_is_refused_as_damaged():
    """A payload cut anywhere raises CdrError naming where it ends, never another error."""
    payload = serialize_message(image('rgb8', 2, 2, 6, frame_id='cam'))
    for size in range(len(payload)):
        with pytest.raises(cdr.CdrError) as raised:
            cdr.read_image(payload[:size])
        assert not raised.value.unsupported_encapsulation


def test_inconsistent_string_lengths_are_refused():
    """A string length past the end or over the limit, or without its NUL, is damaged input."""
    payload = bytearray(serialize_message(image('mono8', 1, 1, 1, frame_id='ab')))
    for length, text in ((10 ** 9, b'ab\0'), (cdr.MAX_STRING_BYTES + 1, b'ab\0'),
                         (3, b'abc')):
        damaged = bytearray(payload)
        damaged[12:16] = length.to_bytes(4, 'little')
        damaged[16:19] = text
        with pytest.raises(cdr.CdrError):
            cdr.read_image(bytes(damaged))


def test_another_encapsulation_is_told_apart_and_read_through_the_middleware():
    """XCDR2 is not read here; the node's reader hands it to rclpy and gets the same frame."""
    msg = image('rgb8', 2, 3, 10, frame_id='xcdr2', sec=8)
    payload = bytearray(serialize_message(msg))
    payload[1] = 0x07  # PLAIN_CDR2, little-endian: same layout for these final types
    with pytest.raises(cdr.CdrError) as raised:
        cdr.read_image(bytes(payload))
    assert raised.value.unsupported_encapsulation
    header, frame = read_frame(bytes(payload), compressed=False)
    assert (header.frame_id, header.sec, frame.step) == ('xcdr2', 8, 10)
    assert bytes(frame.data) == bytes(msg.data)
    # The header is serialized again for the outputs.
    out = deserialize_message(cdr.write_image(header, 'mono8', np.zeros((1, 1), np.uint8)),
                              Image)
    assert (out.header.frame_id, out.header.stamp.sec) == ('xcdr2', 8)


def test_the_node_reader_reports_damage_as_a_bad_frame():
    """A damaged payload is an ImageConversionError of one kind, whatever the damage."""
    for payload in (b'', b'\x00\x01\x00\x00\x05', b'\x00\x07\x00\x00\x05', b'\x13\x37'):
        with pytest.raises(conversions.ImageConversionError) as raised:
            read_frame(payload, compressed=False)
        assert raised.value.kind == 'damaged message'
