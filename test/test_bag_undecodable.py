"""``semseg bag process`` on a bag none of whose images decodes: exit 2, a reason, no bag."""

import array

from rclpy.serialization import serialize_message
from sensor_msgs.msg import CompressedImage

from semseg_ros.bags.storage import BagWriter, COMPRESSED_IMAGE
from semseg_ros.cli import main as semseg

TOPIC = '/camera/image_raw/compressed'


def write_bag(path, payloads):
    """Write a bag with one CompressedImage per payload on TOPIC."""
    with BagWriter(path) as bag:
        connection = bag.add_topic(TOPIC, COMPRESSED_IMAGE)
        for index, payload in enumerate(payloads):
            message = CompressedImage(format='jpeg', data=array.array('B', payload))
            message.header.stamp.sec = index + 1
            bag.write(connection, (index + 1) * 10 ** 9, serialize_message(message))
    return path


def test_a_bag_without_a_decodable_frame_fails_and_leaves_nothing(tmp_path, capsys):
    """Every image corrupt, then no image at all: exit 2, the topic, the count, the first error."""
    network = ['--weights', 'none', '--backend', 'torch', '--size', '64x64', '--threads', '1']
    broken = write_bag(tmp_path / 'broken', [b'\xff\xd8\xff' + bytes(40), b'not an image'])
    out = tmp_path / 'out'
    code = semseg(['bag', 'process', str(broken), '--topic', TOPIC, *network,
                   '--out', str(out)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f'none of the 2 images on {TOPIC} could be decoded; no output bag written' in err
    assert 'The first: ' in err and 'corrupt jpeg payload' in err
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ['broken']

    empty = write_bag(tmp_path / 'empty', [])
    code = semseg(['bag', 'process', str(empty), '--topic', TOPIC, *network,
                   '--out', str(out)])
    err = capsys.readouterr().err
    assert code == 2 and f'no message on {TOPIC}; no output bag written' in err, err
    assert not out.exists()
