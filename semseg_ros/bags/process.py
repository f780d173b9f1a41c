"""``semseg bag process``: segment every frame of a bag offline, deterministically.

No frame is dropped and nothing waits on a clock: frames are read in order and processed as
fast as the CPU allows. The output bag gets, for every image, with the image's header (stamp
and frame id) and record time:

* ``/segmentation_node/label_mask`` (mono8 class ids) and ``/segmentation_node/color_mask``
  (rgb8 palette colours), the topics the live segmentation node publishes, and once, before
  the first mask, ``/segmentation_node/label_info`` (vision_msgs/LabelInfo, recorded as
  latched: ``ros2 bag play`` republishes it transient-local, so Nav2's semantic segmentation
  layer can read the bag as it reads the node);
* with ``--keyframes``: ``/keyframe_node/scores`` (diagnostic_msgs/DiagnosticArray as the
  keyframe node publishes them: one status whose key/values are the score terms) and
  ``/keyframe_node/keyframe`` (std_msgs/Header with the keyframe's stamp, recorded at the
  frame whose arrival decided it, as the live policy would).

By default every input topic is copied too, so the output bag is self-contained (camera,
ground truth and results side by side in Foxglove); ``--no-copy-input`` writes the results
only. With ground truth (``/camera/labels`` as ``semseg bag make --labels`` writes, or
``--labels-topic``) it reports mIoU and per-class IoU.
"""

from dataclasses import asdict, dataclass, field
from pathlib import Path
import time
from typing import Dict, List, Optional

from tqdm import tqdm

from semseg_ros.bags.evaluate import AUTO, DEFAULT_LABELS_TOPIC, OutputTopics, TruthMatcher
from semseg_ros.bags.messages import (decode_labels, decode_rgb, header, label_info_message,
                                      labels_message, rgb_message, scores_message, stamp_ns)
from semseg_ros.bags.storage import (BagError, BagWriter, check_distinct, deserialize,
                                     DIAGNOSTIC_ARRAY, find_topic, has_topic, HEADER,
                                     IMAGE, IMAGE_TYPES, LABEL_INFO, LATCHED, message_count,
                                     read_messages, reading)
from semseg_ros.core.classes import colorize
from semseg_ros.core.segmenter import Segmenter
from semseg_ros.keyframes import KeyframePolicy, KeyframeScorer, load_keyframe_config
from semseg_ros.messages.conversions import ImageConversionError

# Undecodable images named one by one; the rest are counted in the summary.
REPORTED_BAD_FRAMES = 5


@dataclass
class ProcessReport:
    """What :func:`process_bag` did.

    Attributes:
        output: The bag written.
        frames: Images segmented.
        bad_frames: Images that could not be decoded (skipped; the first few reported).
        first_error: Why the first of them could not be decoded ('' if none).
        seconds: Wall time of the whole run (reading, segmenting, writing).
        fps: ``frames / seconds``.
        segment_ms: Mean Segmenter time per frame (pre-process, inference, post-process).
        accuracy: mIoU, per-class IoU and pixel accuracy, or None without ground truth.
        keyframes: One dict per keyframe: ``index``, ``stamp_ns``, ``reason``, ``total``.
        topics: Topic -> messages written.
        segmenter: The Segmenter's configuration and runtime.
    """

    output: str
    frames: int = 0
    bad_frames: int = 0
    first_error: str = ''
    seconds: float = 0.0
    fps: float = 0.0
    segment_ms: float = 0.0
    accuracy: Optional[Dict[str, object]] = None
    keyframes: List[Dict[str, object]] = field(default_factory=list)
    topics: Dict[str, int] = field(default_factory=dict)
    segmenter: Dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, object]:
        """Return the report as plain JSON types."""
        return asdict(self)


class _Keyframes:
    """Scores frames and runs the online policy, writing scores and decisions to the bag."""

    def __init__(self, bag: BagWriter, topics: OutputTopics, config_path: Optional[Path]):
        config = load_keyframe_config(config_path)
        self.scorer = KeyframeScorer(config)
        self.policy = KeyframePolicy.from_config(config)
        self.bag = bag
        self.scores = bag.add_topic(topics.scores, DIAGNOSTIC_ARRAY)
        self.keyframe = bag.add_topic(topics.keyframe, HEADER)
        self.chosen: List[Dict[str, object]] = []
        self.frames = 0
        self.status_name = f'/{topics.scores.strip("/").rsplit("/", 1)[0]}: keyframe score'

    def push(self, stamp: int, frame_id: str, record_ns: int, labels, rgb) -> None:
        score = self.scorer.score(labels, image=rgb, reference=self.policy.reference)
        terms = dict(score.as_dict(), frame_index=self.frames)
        self.frames += 1
        self.bag.write_message(self.scores, record_ns,
                               scores_message(stamp, frame_id, terms, self.status_name))
        features = None
        if self.policy.uses_overlap:
            features = self.policy.matcher.extract(rgb).outside(self.scorer.dynamic_mask(labels))
        self._write(self.policy.push(stamp, score, frame_id, features), record_ns)

    def flush(self, record_ns: int) -> None:
        self._write(self.policy.flush(), record_ns)

    def _write(self, decisions, record_ns: int) -> None:
        for decision in decisions:
            self.bag.write_message(self.keyframe, record_ns,
                                   header(decision.stamp_ns, decision.payload))
            self.chosen.append({'index': decision.index, 'stamp_ns': decision.stamp_ns,
                                'reason': decision.reason, 'total': decision.score.total})


def process_bag(in_bag, out_bag, segmenter: Segmenter, topic: str = '/camera/image_raw',
                labels_topic: str = AUTO, keyframes: bool = False,
                keyframe_config: Optional[Path] = None, copy_input: bool = True,
                topics: OutputTopics = OutputTopics(), storage: str = 'mcap',
                overwrite: bool = False, progress: bool = True) -> ProcessReport:
    """Segment every image of a bag and write the results to a new bag (atomically).

    Args:
        in_bag: The bag to read.
        out_bag: The bag folder to create.
        segmenter: The network to run.
        topic: Image topic (sensor_msgs/Image or CompressedImage).
        labels_topic: Ground-truth mono8 topic; ``'auto'``: ``/camera/labels`` if the bag
            has it; ``''``: none.
        keyframes: Also score frames and select keyframes.
        keyframe_config: Keyframe configuration file (None: the shipped one).
        copy_input: Copy every input topic to the output bag.
        topics: Names of the output topics.
        storage: ``mcap`` or ``sqlite3``.
        overwrite: Replace an existing output bag.
        progress: Show a progress bar.

    Raises:
        BagError: The input is missing, corrupt, or lacks the topics; the output exists; or
            not one image of the topic could be decoded (then no output bag is left).
    """
    check_distinct(in_bag, out_bag)
    report = ProcessReport(str(out_bag), segmenter=segmenter.describe())
    class_set = segmenter.class_set
    matcher = TruthMatcher(class_set)
    start = time.perf_counter()
    segment_ms = 0.0
    with reading(in_bag) as reader, BagWriter(out_bag, storage, overwrite) as bag:
        images = find_topic(reader, topic, IMAGE_TYPES)
        if labels_topic == AUTO:
            labels_topic = DEFAULT_LABELS_TOPIC if has_topic(reader, DEFAULT_LABELS_TOPIC) \
                else ''
        truths = find_topic(reader, labels_topic, (IMAGE,)) if labels_topic else []
        wanted = list(reader.connections) if copy_input else images + truths
        label_out = bag.add_topic(topics.label_mask, IMAGE)
        color_out = bag.add_topic(topics.color_mask, IMAGE)
        info_out = bag.add_topic(topics.label_info, LABEL_INFO, [LATCHED])
        selector = _Keyframes(bag, topics, keyframe_config) if keyframes else None
        bar = tqdm(total=message_count(images), desc='bag process', unit='frame',
                   disable=not progress)
        record_ns = 0
        for connection, record_ns, raw in read_messages(reader, wanted):
            if copy_input:
                bag.write(bag.copy_topic(connection), record_ns, raw)
            where = f'{in_bag}: {connection.topic} at {record_ns} ns'
            if connection.topic == labels_topic:
                message = deserialize(raw, IMAGE, where)
                try:
                    matcher.truth(stamp_ns(message), decode_labels(message))
                except ImageConversionError as error:
                    raise BagError(f'{where}: bad ground-truth labels: {error}') from error
            if connection.topic != topic:
                continue
            message = deserialize(raw, connection.msgtype, where)
            stamp, frame_id = stamp_ns(message), message.header.frame_id
            try:
                rgb = decode_rgb(message, connection.msgtype)
            except ImageConversionError as error:
                report.bad_frames += 1
                report.first_error = report.first_error or f'{where}: {error}'
                if report.bad_frames <= REPORTED_BAD_FRAMES:
                    tqdm.write(f'bag process: skipping the image {where}: {error}')
                bar.update()
                continue
            result = segmenter.segment(rgb)
            segment_ms += sum(result.timings_ms.values())
            labels = result.labels
            if not report.frames:
                bag.write_message(info_out, record_ns, label_info_message(class_set, stamp))
            bag.write_message(label_out, record_ns, labels_message(labels, stamp, frame_id))
            bag.write_message(color_out, record_ns,
                              rgb_message(colorize(labels, class_set), stamp, frame_id)[1])
            matcher.prediction(stamp, labels)
            if selector is not None:
                selector.push(stamp, frame_id, record_ns, labels, rgb)
            report.frames += 1
            bar.update()
        bar.close()
        if not report.frames:  # raised inside the writer: the empty output bag is removed
            raise BagError(_nothing_decoded(in_bag, topic, report))
        if selector is not None:
            selector.flush(record_ns)
            report.keyframes = selector.chosen
        report.topics = dict(bag.counts)
    report.seconds = time.perf_counter() - start
    report.fps = report.frames / report.seconds if report.seconds > 0 else 0.0
    report.segment_ms = segment_ms / report.frames if report.frames else 0.0
    report.accuracy = matcher.result()
    return report


def _nothing_decoded(in_bag, topic: str, report: ProcessReport) -> str:
    """Say why a bag gave no frame: no message on the topic, or none decodable."""
    if not report.bad_frames:
        return f'{in_bag}: no message on {topic}; no output bag written'
    return (f'{in_bag}: none of the {report.bad_frames} images on {topic} could be decoded; '
            f'no output bag written. The first: {report.first_error}')
