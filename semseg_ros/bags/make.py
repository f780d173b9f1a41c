"""``semseg bag make``: turn an ordered image sequence (and its labels) into a rosbag2 bag.

Frame ``i`` gets the stamp ``start + i / rate`` on both the image topic and, when labels are
given, the label topic (mono8 class ids), so ground truth matches its image by stamp. The
record time of each message is its stamp, as if a recorder had received it on time.
"""

from dataclasses import dataclass, field
import math
from pathlib import Path
import re
import time
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np
from tqdm import tqdm

from semseg_ros.bags.messages import COMPRESSED_ENCODINGS, ENCODINGS, labels_message, rgb_message
from semseg_ros.bags.storage import BagWriter, IMAGE

IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.ppm', '.webp')
DEFAULT_TOPIC = '/camera/image_raw'
DEFAULT_LABELS_TOPIC = '/camera/labels'


class SequenceError(ValueError):
    """The image sequence or its labels cannot be read (the message names the file)."""


@dataclass(frozen=True)
class Frame:
    """One frame of a sequence: an image file and, optionally, its label file."""

    image: Path
    label: Optional[Path] = None


@dataclass
class MakeSummary:
    """What :func:`make_bag` wrote.

    Attributes:
        path: The bag folder.
        frames: Number of images written.
        topics: Topic -> message count.
        start_ns: Stamp of the first frame.
        duration_s: Stamp span of the sequence.
        size_bytes: Size of the bag on disk.
    """

    path: Path
    frames: int
    topics: Dict[str, int] = field(default_factory=dict)
    start_ns: int = 0
    duration_s: float = 0.0
    size_bytes: int = 0


def natural_key(name: str):
    """Sort key that orders embedded numbers by value: ``f2`` < ``f10``, CamVid frame order."""
    return [(1, int(part), '') if part.isdigit() else (0, 0, part.lower())
            for part in re.split(r'(\d+)', name) if part]


def _image_files(folder: Path) -> List[Path]:
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    return sorted(files, key=lambda p: natural_key(p.name))


def _read_list(path: Path) -> List[Frame]:
    """Read a list file: one ``image [label]`` per line, relative to the list's folder."""
    frames = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        words = line.split('#', 1)[0].split()
        if not words:
            continue
        if len(words) > 2:
            raise SequenceError(f'{path}:{number}: expected "image [label]", got {line!r}')
        label = path.parent / words[1] if len(words) == 2 else None
        frames.append(Frame(path.parent / words[0], label))
    return frames


def _label_for(image: Path, folder: Path) -> Path:
    """Return the label file in folder with the image's stem (PNG preferred)."""
    exact = folder / f'{image.stem}.png'
    if exact.is_file():
        return exact
    matches = sorted(p for p in folder.glob(f'{image.stem}.*')
                     if p.suffix.lower() in IMAGE_SUFFIXES)
    if not matches:
        raise SequenceError(f'no label for {image.name} in {folder} (expected {exact.name})')
    return matches[0]


def collect_frames(images, labels=None) -> List[Frame]:
    """Return the frames of a sequence, in order.

    Args:
        images: A folder of images (sorted by the numbers in their names, i.e. frame
            number) or a list file (one ``image [label]`` per line, paths relative to the list
            file's folder, kept in the list's order).
        labels: A folder with one label image per image, same file stem (overrides labels
            given in a list file), or None.

    Raises:
        SequenceError: A missing folder or file, no images, or an image without a label.
    """
    images = Path(images)
    if images.is_dir():
        frames = [Frame(p) for p in _image_files(images)]
        if not frames:
            raise SequenceError(f'{images}: no image files ({", ".join(IMAGE_SUFFIXES)})')
    elif images.is_file():
        frames = _read_list(images)
        if not frames:
            raise SequenceError(f'{images}: the list names no images')
    else:
        raise SequenceError(f'{images}: no such folder or list file')
    if labels is not None:
        labels = Path(labels)
        if not labels.is_dir():
            raise SequenceError(f'{labels}: no such label folder')
        frames = [Frame(f.image, _label_for(f.image, labels)) for f in frames]
    for frame in frames:
        for path in (frame.image, frame.label):
            if path is not None and not path.is_file():
                raise SequenceError(f'{path}: no such file')
    return frames


def read_rgb(path: Path) -> np.ndarray:
    """Read an image file as ``H x W x 3`` uint8 RGB; raise SequenceError naming it."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SequenceError(f'{path}: cannot read as an image')
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_labels(path: Path, size=None) -> np.ndarray:
    """Read a label image (8-bit class ids, one channel) and check its size (W, H).

    Raises:
        SequenceError: Unreadable, not 8-bit single channel, or another size.
    """
    labels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if labels is None:
        raise SequenceError(f'{path}: cannot read as an image')
    if labels.ndim == 3 and labels.shape[2] in (3, 4) and np.array_equal(labels[..., 0],
                                                                         labels[..., 1]):
        labels = labels[..., 0]  # grey stored as colour
    if labels.ndim != 2 or labels.dtype != np.uint8:
        raise SequenceError(f'{path}: a label image must hold 8-bit class ids in one channel, '
                            f'got {labels.dtype} of shape {labels.shape}')
    if size is not None and (labels.shape[1], labels.shape[0]) != tuple(size):
        raise SequenceError(f'{path}: labels are {labels.shape[1]}x{labels.shape[0]}, the '
                            f'image is {size[0]}x{size[1]}')
    return labels


def image_topic_for(topic: str, encoding: str) -> str:
    """Return the topic images go on: ``<topic>/compressed`` for jpeg/png (image_transport)."""
    if encoding in COMPRESSED_ENCODINGS and not topic.endswith('/compressed'):
        return topic.rstrip('/') + '/compressed'
    return topic


def make_bag(frames: Sequence[Frame], out, rate: float, topic: str = DEFAULT_TOPIC,
             labels_topic: str = DEFAULT_LABELS_TOPIC, encoding: str = 'rgb8',
             frame_id: str = 'camera', start_ns: Optional[int] = None, storage: str = 'mcap',
             overwrite: bool = False, progress: bool = True) -> MakeSummary:
    """Write frames to a new bag, one image (and label) message per frame.

    Args:
        frames: The sequence (see :func:`collect_frames`).
        out: The bag folder to create (written atomically).
        rate: Frames per second; frame ``i`` is stamped ``start_ns + i / rate``.
        topic: Image topic (``/compressed`` is appended for jpeg/png).
        labels_topic: Topic of the mono8 label masks (frames with labels only).
        encoding: Raw encoding of sensor_msgs/Image, or ``jpeg``/``png`` (CompressedImage).
        frame_id: Header frame id.
        start_ns: Stamp of the first frame; None = now.
        storage: ``mcap`` or ``sqlite3``.
        overwrite: Replace an existing bag at ``out``.
        progress: Show a progress bar.

    Raises:
        SequenceError: An image or label file cannot be used.
        ValueError: Bad rate or encoding; BagError for the output.
    """
    if not (isinstance(rate, (int, float)) and math.isfinite(rate) and rate > 0):
        raise ValueError(f'rate must be a positive number of frames per second, got {rate!r}')
    if encoding not in ENCODINGS:
        raise ValueError(f'unknown encoding {encoding!r}; valid: {", ".join(ENCODINGS)}')
    if not frames:
        raise SequenceError('no frames to write')
    start_ns = time.time_ns() if start_ns is None else int(start_ns)
    period_ns = 1e9 / rate
    topic = image_topic_for(topic, encoding)
    with BagWriter(out, storage, overwrite) as bag:
        image_connection = None
        labels_connection = None
        for index, frame in enumerate(tqdm(frames, desc='bag make', unit='frame',
                                           disable=not progress)):
            stamp = start_ns + int(round(index * period_ns))
            rgb = read_rgb(frame.image)
            try:
                msgtype, message = rgb_message(rgb, stamp, frame_id, encoding)
            except ValueError as error:
                raise SequenceError(f'{frame.image}: {error}') from error
            image_connection = image_connection or bag.add_topic(topic, msgtype)
            bag.write_message(image_connection, stamp, message)
            if frame.label is not None:
                labels = read_labels(frame.label, (rgb.shape[1], rgb.shape[0]))
                labels_connection = labels_connection or bag.add_topic(labels_topic, IMAGE)
                bag.write_message(labels_connection, stamp, labels_message(labels, stamp,
                                                                           frame_id))
        counts = dict(bag.counts)
    size = sum(p.stat().st_size for p in Path(out).iterdir())
    return MakeSummary(Path(out), len(frames), counts, start_ns,
                       (len(frames) - 1) / rate, size)
