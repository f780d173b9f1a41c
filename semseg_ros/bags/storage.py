"""Opening rosbag2 bags with clear errors, and writing them atomically.

Every failure a user can cause (a missing path, a folder that is not a bag, a truncated or
corrupt file, a missing topic, a topic of the wrong type) raises :class:`BagError` with a
message naming the bag and what is wrong; CLIs print it and exit 2.

Bags are written by :class:`BagWriter` into a hidden temporary folder beside the target and
renamed into place only once complete, so an interrupted run never leaves a bag that looks
finished.
"""

from contextlib import contextmanager
import functools
import os
from pathlib import Path
import shutil
import tempfile
import threading
from typing import Dict, Iterable, Iterator, List, Sequence, Tuple

from rosbags.interfaces import (Connection, MessageDefinitionFormat, Qos, QosDurability,
                                QosHistory, QosLiveliness, QosReliability, QosTime)
from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin, Writer, WriterError
from rosbags.typesys import get_types_from_msg, get_typestore, Stores

IMAGE = 'sensor_msgs/msg/Image'
COMPRESSED_IMAGE = 'sensor_msgs/msg/CompressedImage'
DIAGNOSTIC_ARRAY = 'diagnostic_msgs/msg/DiagnosticArray'
HEADER = 'std_msgs/msg/Header'
STRING = 'std_msgs/msg/String'
LABEL_INFO = 'vision_msgs/msg/LabelInfo'
IMAGE_TYPES = (IMAGE, COMPRESSED_IMAGE)

# Storage formats: MCAP is the default of ros2 bag since Iron and opens in Foxglove directly.
FORMATS = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}
# rosbag2 metadata version 8 is read by ros2 bag from Jazzy on (and by rosbags, Foxglove).
BAG_VERSION = 8


class BagError(ValueError):
    """A bag cannot be used: missing, not a bag, corrupt, or without the topic asked for."""


# vision_msgs 4.1.1's LabelInfo and VisionClass (third_party/vision_msgs; comments left out,
# they are not part of the type): rosbags' Kilted store lacks vision_msgs. Same RIHS01 hash as
# the released package (test/test_bags.py checks it, and against the generated package's).
VISION_MSGS_DEFINITIONS = {
    'vision_msgs/msg/VisionClass': 'uint16 class_id\nstring class_name\n',
    LABEL_INFO: 'std_msgs/Header header\nvision_msgs/VisionClass[] class_map\n'
                'float32 threshold\n',
}
_NO_TIME = QosTime(sec=0, nsec=0)
# What a latched publisher offers (reliable, transient-local, depth 1): recorded with a topic,
# ros2 bag play publishes it so, and late subscribers (Nav2's layer) still get the message.
LATCHED = Qos(history=QosHistory.KEEP_LAST, depth=1, reliability=QosReliability.RELIABLE,
              durability=QosDurability.TRANSIENT_LOCAL, deadline=_NO_TIME, lifespan=_NO_TIME,
              liveliness=QosLiveliness.AUTOMATIC, liveliness_lease_duration=_NO_TIME,
              avoid_ros_namespace_conventions=False)


@functools.lru_cache(maxsize=1)
def typestore():
    """Return the rosbags type store of ROS 2 Kilted (the rclpy wheels'), plus LabelInfo."""
    store = get_typestore(Stores.ROS2_KILTED)
    for name, definition in VISION_MSGS_DEFINITIONS.items():
        store.register(get_types_from_msg(definition, name))
    return store


def _describe_path(path: Path) -> str:
    """Say what lies at a path that is not a readable bag."""
    if not path.exists():
        return 'no such file or folder'
    if path.is_dir():
        return 'a folder without metadata.yaml (not a rosbag2 bag)'
    return f'a file ending in {path.suffix or "nothing"!r} (a bag is a folder, .mcap or .db3)'


def open_bag(path) -> Reader:
    """Open a rosbag2 bag (folder with metadata.yaml, or a bare .mcap / .db3 file).

    Args:
        path: The bag.

    Returns:
        An open ``rosbags.rosbag2.Reader``; close it (or use :func:`reading`).

    Raises:
        BagError: The path is missing, not a bag, or its files are truncated or corrupt.
    """
    path = Path(path)
    bare = path.is_file() and path.suffix in ('.mcap', '.db3')
    if not (path.is_dir() and (path / 'metadata.yaml').is_file()) and not bare:
        raise BagError(f'{path}: not a rosbag2 bag: {_describe_path(path)}')
    try:
        reader = Reader(path)
        reader.open()
    except (ReaderError, OSError) as error:
        raise BagError(f'{path}: corrupt, truncated or unsupported bag: {error}') from error
    except Exception as error:  # sqlite3, MCAP and YAML parsers raise their own types
        raise BagError(f'{path}: corrupt or truncated bag ({type(error).__name__}: {error})'
                       ) from error
    return reader


@contextmanager
def reading(path) -> Iterator[Reader]:
    """Open a bag for the duration of a ``with`` block (see :func:`open_bag`)."""
    reader = open_bag(path)
    try:
        yield reader
    finally:
        reader.close()


def describe_topics(reader: Reader) -> str:
    """Return the bag's topics as ``/topic (type, N msgs)``, comma separated."""
    topics = sorted((c.topic, c.msgtype, c.msgcount) for c in reader.connections)
    if not topics:
        return 'none (the bag is empty)'
    return ', '.join(f'{topic} ({msgtype}, {count} msgs)' for topic, msgtype, count in topics)


def find_topic(reader: Reader, topic: str, msgtypes: Sequence[str]) -> List[Connection]:
    """Return the bag's connections on a topic, checking the message type.

    Args:
        reader: An open bag.
        topic: The topic name.
        msgtypes: Accepted message types, e.g. ``('sensor_msgs/msg/Image',)``.

    Raises:
        BagError: The topic is missing (the message lists the topics present) or carries
            another type.
    """
    connections = [c for c in reader.connections if c.topic == topic]
    if not connections:
        raise BagError(f'{reader.path}: no topic {topic!r} in the bag; topics present: '
                       f'{describe_topics(reader)}')
    wrong = sorted({c.msgtype for c in connections} - set(msgtypes))
    if wrong:
        raise BagError(f'{reader.path}: topic {topic} carries {", ".join(wrong)}, expected '
                       f'{" or ".join(msgtypes)}')
    return connections


def has_topic(reader: Reader, topic: str) -> bool:
    """Whether the bag holds any message connection on a topic."""
    return any(c.topic == topic for c in reader.connections)


def message_count(connections: Iterable[Connection]) -> int:
    """Number of messages on the given connections, as the bag's metadata says."""
    return sum(c.msgcount for c in connections)


def read_messages(reader: Reader, connections: Sequence[Connection]
                  ) -> Iterator[Tuple[Connection, int, bytes]]:
    """Yield ``(connection, timestamp_ns, raw CDR bytes)`` in time order.

    Raises:
        BagError: The storage file turns out truncated or corrupt while reading (the message
            says after how many messages).
    """
    count = 0
    try:
        for connection, timestamp, raw in reader.messages(connections=connections):
            yield connection, timestamp, raw
            count += 1
    except BagError:
        raise
    except Exception as error:  # storage back ends raise their own types on bad data
        raise BagError(f'{reader.path}: corrupt or truncated bag: reading failed after '
                       f'{count} messages ({type(error).__name__}: {error})') from error


def deserialize(raw: bytes, msgtype: str, where: str):
    """Deserialize CDR bytes to a rosbags message object.

    Args:
        raw: The serialized message.
        msgtype: Its type name.
        where: What to name in an error (bag, topic, timestamp).

    Raises:
        BagError: The bytes are not a valid message of that type.
    """
    try:
        return typestore().deserialize_cdr(raw, msgtype)
    except Exception as error:  # the CDR decoder raises assorted errors on bad bytes
        raise BagError(f'{where}: corrupt {msgtype} message ({type(error).__name__}: '
                       f'{error})') from error


def serialize(message, msgtype: str) -> bytes:
    """Serialize a rosbags message object to CDR bytes."""
    return bytes(typestore().serialize_cdr(message, msgtype))


def check_distinct(source, target) -> None:
    """Raise BagError if an output bag would replace the bag it is made from."""
    if Path(source).resolve() == Path(target).resolve():
        raise BagError(f'{target}: the output bag must not be the input bag')


class BagWriter:
    """Write a rosbag2 bag atomically: into a temporary folder, renamed into place at the end.

    Use as a context manager; if the block raises, nothing is left at ``path``::

        with BagWriter(out, 'mcap') as bag:
            images = bag.add_topic('/camera/image_raw', IMAGE)
            bag.write(images, stamp_ns, raw_bytes)

    ``write`` may be called from several threads.
    """

    def __init__(self, path, storage: str = 'mcap', overwrite: bool = False):
        """Prepare the writer.

        Args:
            path: The bag folder to create.
            storage: ``'mcap'`` or ``'sqlite3'``.
            overwrite: Replace an existing bag at ``path`` (only once the new one is complete).

        Raises:
            BagError: Unknown storage format, or ``path`` exists and ``overwrite`` is False.
        """
        if storage not in FORMATS:
            raise BagError(f'unknown bag format {storage!r}; valid: {", ".join(FORMATS)}')
        self.path = Path(path)
        self.storage = storage
        self.overwrite = overwrite
        self.counts: Dict[str, int] = {}
        self._connections: Dict[Tuple[str, str], Connection] = {}
        self._lock = threading.Lock()
        self._writer = None
        self._tmpdir = None
        self._check_target()

    def _check_target(self) -> None:
        if self.path.exists() and not self.overwrite:
            raise BagError(f'{self.path} exists already; choose another output or remove it')
        if self.path.exists() and not (self.path / 'metadata.yaml').is_file():
            raise BagError(f'{self.path} exists and is not a rosbag2 bag; not replacing it')

    def __enter__(self) -> 'BagWriter':
        """Create the temporary folder and open the storage file."""
        self._check_target()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmpdir = Path(tempfile.mkdtemp(prefix=f'.{self.path.name}.partial-',
                                             dir=self.path.parent))
        try:
            self._writer = Writer(self._tmpdir / self.path.name, version=BAG_VERSION,
                                  storage_plugin=FORMATS[self.storage])
            self._writer.open()
        except (WriterError, OSError) as error:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            raise BagError(f'{self.path}: cannot create the bag: {error}') from error
        return self

    def add_topic(self, topic: str, msgtype: str, qos: Sequence[Qos] = ()) -> Connection:
        """Register a topic (once per topic and type); return its connection.

        Args:
            topic: The topic name.
            msgtype: Its type (``sensor_msgs/msg/Image``).
            qos: The profiles its publisher offered (e.g. ``[LATCHED]``); empty: unknown, ros2
                bag play then publishes with its defaults.
        """
        key = (topic, msgtype)
        if key not in self._connections:
            self._connections[key] = self._writer.add_connection(
                topic, msgtype, typestore=typestore(), offered_qos_profiles=qos)
            self.counts[topic] = 0
        return self._connections[key]

    def copy_topic(self, source: Connection) -> Connection:
        """Register a topic like a connection of another bag (its definition and hash).

        Types the ROS 2 Kilted type store lacks (custom messages) are copied with the source
        bag's own definition.

        Raises:
            BagError: The type is unknown and the source bag holds no definition of it.
        """
        key = (source.topic, source.msgtype)
        if key in self._connections:
            return self._connections[key]
        if source.msgtype in typestore().types:
            return self.add_topic(source.topic, source.msgtype)
        if source.msgdef.format == MessageDefinitionFormat.NONE or not source.digest:
            raise BagError(f'cannot copy {source.topic}: its type {source.msgtype} is not a '
                           'standard ROS 2 type and the bag holds no definition of it')
        self._connections[key] = self._writer.add_connection(
            source.topic, source.msgtype, msgdef=source.msgdef.data, rihs01=source.digest)
        self.counts[source.topic] = 0
        return self._connections[key]

    def write(self, connection: Connection, timestamp_ns: int, raw: bytes) -> None:
        """Append one serialized message at a receive/record time in nanoseconds."""
        with self._lock:
            self._writer.write(connection, int(timestamp_ns), raw)
            self.counts[connection.topic] += 1

    def write_message(self, connection: Connection, timestamp_ns: int, message) -> None:
        """Serialize a rosbags message object and append it."""
        self.write(connection, timestamp_ns, serialize(message, connection.msgtype))

    def __exit__(self, exc_type, exc, traceback) -> bool:
        """Finish and rename into place, or, after an exception, delete everything."""
        writer, self._writer = self._writer, None
        tmpdir, self._tmpdir = self._tmpdir, None
        if exc_type is not None:
            try:
                writer.abort()
            finally:
                shutil.rmtree(tmpdir, ignore_errors=True)
            return False
        try:
            writer.close()
            _replace_dir(tmpdir / self.path.name, self.path)
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)
        return False


def _replace_dir(source: Path, target: Path) -> None:
    """Move a finished folder to target, replacing an old one only after the move is sure."""
    if not target.exists():
        os.replace(source, target)
        return
    old = source.parent / f'{target.name}.old'
    os.replace(target, old)
    try:
        os.replace(source, target)
    except OSError:
        os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)
