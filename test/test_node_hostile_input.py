"""The segmentation node under hostile input, over real DDS: log floods, bombs, damaged frames.

Two node subprocesses (raw and compressed input, an untrained network on PyTorch at a small
size) and a probe node; each test sends what an attacker or a broken driver would, then
checks the node's log and that the next good frame is served.
"""

import array
import signal
import struct
import time
import zlib

import cv2
import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.serialization import serialize_message
from sensor_msgs.msg import CompressedImage, Image

from ros_testing import (assert_clean_exit, image_msg, next_stamp, NodeProcess, Probe, send,
                         wait_ready)
from semseg_ros.messages import conversions

RAW_NODE = '/hostile_raw'
RAW_TOPIC = '/hostile_camera/image'
COMPRESSED_NODE = '/hostile_compressed'
COMPRESSED_TOPIC = '/hostile_camera2/image'
SIZE = 96  # frames are SIZE x SIZE
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


@pytest.fixture(scope='module')
def nodes(tmp_path_factory):
    """The raw-input and compressed-input nodes, started at once."""
    tmp_dir = tmp_path_factory.mktemp('hostile')
    quick = ['-p', 'weights:=none', '-p', 'backend:=torch', '-p', 'input_width:=64',
             '-p', 'input_height:=64', '-p', 'threads:=1']
    started = {
        'raw': NodeProcess(tmp_dir, 'raw', ['-r', '__node:=hostile_raw', '-r',
                                            f'image:={RAW_TOPIC}', *quick]),
        'compressed': NodeProcess(tmp_dir, 'compressed', [
            '-r', '__node:=hostile_compressed', '-r', f'image:={COMPRESSED_TOPIC}',
            '-p', 'input_transport:=compressed', *quick]),
    }
    yield started
    for node in started.values():
        node.signal(signal.SIGINT)
    for node in started.values():
        assert_clean_exit(node, node.wait_exit())


@pytest.fixture(scope='module')
def probe(nodes):
    """A probe node listening to both nodes' label masks."""
    probe = Probe()
    for name, node in ((RAW_NODE, nodes['raw']), (COMPRESSED_NODE, nodes['compressed'])):
        wait_ready(probe, node, name)
        probe.subscribe(Image, f'{name}/label_mask')
    yield probe
    probe.close()


@pytest.fixture(scope='module')
def picture():
    """A SIZE x SIZE RGB crop of a bundled CamVid frame."""
    from semseg_ros.core.resources import samples_dir
    path = sorted((samples_dir() / 'camvid_0016E5' / 'images').glob('*.jpg'))[0]
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)[100:100 + SIZE, 200:200 + SIZE]


def compressed(fmt, data) -> CompressedImage:
    """A CompressedImage with a fresh stamp."""
    msg = CompressedImage(format=fmt, data=array.array('B', bytes(data)))
    msg.header.stamp = next_stamp()
    return msg


def png_bomb(width: int, height: int, inflated: int) -> bytes:
    """A valid PNG header of ``width`` x ``height`` whose image data inflate to ``inflated`` B."""
    def chunk(kind, data):
        return (struct.pack('>I', len(data)) + kind + data
                + struct.pack('>I', zlib.crc32(kind + data) & 0xFFFFFFFF))
    header = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)
    return (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header)
            + chunk(b'IDAT', zlib.compress(bytes(inflated), 9)) + chunk(b'IEND', b''))


def refused(probe, node, publisher, bad, text: str, good):
    """Publish ``bad`` until the node logs an error containing ``text``; then ``good`` is served
    and ``bad`` never was. Return the error line."""
    errors = node.log().count(text)
    deadline = time.monotonic() + 30
    while node.log().count(text) == errors:
        assert time.monotonic() < deadline, f'no error {text!r}:\n{node.log()}'
        publisher.publish(bad)
        time.sleep(0.3)
    send(probe, publisher, good, COMPRESSED_NODE, ('label_mask',))
    assert not probe.stamped(f'{COMPRESSED_NODE}/label_mask', bad.header.stamp)
    return [line for line in node.log().splitlines() if text in line][-1]


def test_a_flood_of_bad_frames_is_logged_once_per_kind(probe, nodes, picture):
    """200 frames with ever-new, long encodings: one short error line, not 200 echoes."""
    node = nodes['raw']
    camera = probe.publisher(Image, RAW_TOPIC, RELIABLE)
    before = len(node.log())
    for index in range(200):
        camera.publish(image_msg((f'evil_{"x" * 2000}_{index}', 2, 2, 6,
                                  array.array('B', bytes(12)))))
        time.sleep(0.005)
    good = image_msg(conversions.rgb_to_image_fields(picture, 'rgb8'))
    send(probe, camera, good, RAW_NODE, ('label_mask',))
    flood = node.log()[before:]
    errors = [line for line in flood.splitlines() if 'dropped a frame' in line]
    assert 1 <= len(errors) <= 2, flood[:3000]
    assert "unsupported encoding 'evil_xxxxxxx" in errors[0]
    assert len(flood) < 2000 and 'x' * 100 not in flood, flood[:3000]
    probe.node.destroy_publisher(camera)


def test_a_damaged_serialized_frame_is_refused_and_the_next_served(probe, nodes, picture):
    """A serialized Image cut inside its data, published as it is: one error, then service."""
    node = nodes['raw']
    camera = probe.publisher(Image, RAW_TOPIC, RELIABLE)
    good = image_msg(conversions.rgb_to_image_fields(picture, 'rgb8'))
    damaged = serialize_message(good)[:-10]
    errors = node.log().count('damaged message')
    deadline = time.monotonic() + 30
    while node.log().count('damaged message') == errors:
        assert time.monotonic() < deadline, f'no damaged-message error:\n{node.log()}'
        camera.publish(damaged)
        time.sleep(0.3)
    line = [line for line in node.log().splitlines() if 'damaged message' in line][-1]
    assert 'serialized message ends inside data' in line
    good.header.stamp = next_stamp()
    send(probe, camera, good, RAW_NODE, ('label_mask',))
    probe.node.destroy_publisher(camera)


def test_a_png_bomb_is_refused_before_decoding(probe, nodes, picture):
    """A PNG declaring SIZE x SIZE whose data inflate to 300 MB: refused, the next one served."""
    camera = probe.publisher(CompressedImage, COMPRESSED_TOPIC + '/compressed', RELIABLE)
    fmt, data = conversions.encode_compressed(picture, 'png')
    bomb = compressed('png', png_bomb(SIZE, SIZE, 300_000_000))
    line = refused(probe, nodes['compressed'], camera, bomb, 'refused undecoded',
                   compressed(fmt, data))
    assert f'more than a {SIZE}x{SIZE} image can need' in line
    probe.node.destroy_publisher(camera)


def test_damaged_jpegs_are_refused_and_the_decoder_is_quiet(probe, nodes, picture):
    """A frame of another size and one libjpeg complains about: refused, logged in ROS' log."""
    node = nodes['compressed']
    camera = probe.publisher(CompressedImage, COMPRESSED_TOPIC + '/compressed', RELIABLE)
    fmt, data = conversions.encode_compressed(picture, 'jpeg')
    send(probe, camera, compressed(fmt, data), COMPRESSED_NODE, ('label_mask',))
    small_fmt, small = conversions.encode_compressed(picture[:8, :8].copy(), 'jpeg')
    line = refused(probe, node, camera, compressed(small_fmt, small),
                   "frame is 8x8 but the stream's frames are", compressed(fmt, data))
    assert f'are {SIZE}x{SIZE}' in line
    damaged = bytearray(data)
    middle = len(damaged) // 2
    damaged[middle:middle + 3] = b'\xff\xd3\x00'  # a restart marker inside the scan
    line = refused(probe, node, camera, compressed(fmt, damaged),
                   'the decoder reports: Corrupt JPEG data', compressed(fmt, data))
    assert '[ERROR]' in line
    stray = [text for text in node.log().splitlines() if text and not text.startswith('[')]
    assert not stray, f'decoder output outside the ROS log: {stray}'
    probe.node.destroy_publisher(camera)
