"""``semseg bag evaluate``: how fast and how right the live nodes were, from a recording.

The recording holds the camera topic as it was published and the nodes' outputs as they
were received, each message timed by the recorder (its bag timestamp). The nodes copy the
input's header onto every output, so an output is matched to its input by header stamp and

* latency = record time of the output - record time of the input with the same stamp;
* processed frames = input stamps with a label or colour mask; dropped = published -
  processed (frames the node skipped to stay current);
* achieved FPS = (processed - 1) / (time between the first and last of them received);
* mIoU = label masks against ground truth with the same stamp (from the recording itself or
  from the bag that was replayed), over the processed frames.

``semseg bag replay`` writes such a recording (inputs timed at publish, outputs at receipt,
one clock); on a ROS machine ``ros2 bag play`` + ``ros2 bag record`` make one too (both timed
at the recorder's receipt), and this command evaluates either.
"""

from collections import OrderedDict
from dataclasses import asdict, dataclass, field
import heapq
import json
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import cv2
import numpy as np

from semseg_ros.bags.messages import (header_stamp_ns, label_stream, scores_from_message,
                                      stamp_ns)
from semseg_ros.bags.storage import (deserialize, DIAGNOSTIC_ARRAY, find_topic,
                                     has_topic, HEADER, IMAGE, IMAGE_TYPES, read_messages,
                                     reading)
from semseg_ros.core.classes import ClassSet, load_class_set
from semseg_ros.core.latency import latency_summary
from semseg_ros.core.metrics import ConfusionMatrix

AUTO = 'auto'
DEFAULT_TOPIC = '/camera/image_raw'
DEFAULT_LABELS_TOPIC = '/camera/labels'


@dataclass(frozen=True)
class OutputTopics:
    """Where the nodes publish (their ``~/`` topics under the default node names).

    Attributes:
        label_mask: Segmentation node's mono8 class ids.
        color_mask: Segmentation node's rgb8 colours.
        label_info: Segmentation node's class names (vision_msgs/LabelInfo, latched).
        scores: Keyframe node's per-frame scores (DiagnosticArray).
        keyframe: Keyframe node's selected stamps (std_msgs/Header).
    """

    label_mask: str = '/segmentation_node/label_mask'
    color_mask: str = '/segmentation_node/color_mask'
    label_info: str = '/segmentation_node/label_info'
    scores: str = '/keyframe_node/scores'
    keyframe: str = '/keyframe_node/keyframe'


class TruthMatcher:
    """Pairs predicted and ground-truth label masks by stamp and accumulates the IoU.

    Either side may arrive first; unpaired masks wait in small bounded caches (the oldest is
    dropped and counted once ``capacity`` are waiting).
    """

    def __init__(self, class_set: ClassSet, capacity: int = 64):
        """Start with an empty confusion matrix over ``class_set``."""
        self.class_set = class_set
        self.confusion = ConfusionMatrix(class_set.num_classes, class_set.ignore_index)
        self.capacity = capacity
        self.frames = 0
        self.unmatched = 0
        self._predictions: 'OrderedDict[int, np.ndarray]' = OrderedDict()
        self._truths: 'OrderedDict[int, np.ndarray]' = OrderedDict()

    def _add(self, stamp: int, labels: np.ndarray, mine: OrderedDict, other: OrderedDict,
             is_truth: bool) -> None:
        if stamp in other:
            paired = other.pop(stamp)
            truth, prediction = (labels, paired) if is_truth else (paired, labels)
            self._update(prediction, truth)
            return
        mine[stamp] = labels
        if len(mine) > self.capacity:
            mine.popitem(last=False)
            self.unmatched += 1

    def prediction(self, stamp: int, labels: np.ndarray) -> None:
        """Add a predicted mask."""
        self._add(stamp, labels, self._predictions, self._truths, is_truth=False)

    def truth(self, stamp: int, labels: np.ndarray) -> None:
        """Add a ground-truth mask."""
        self._add(stamp, labels, self._truths, self._predictions, is_truth=True)

    def _update(self, prediction: np.ndarray, truth: np.ndarray) -> None:
        if prediction.shape != truth.shape:  # e.g. output_resolution: network
            prediction = cv2.resize(prediction, (truth.shape[1], truth.shape[0]),
                                    interpolation=cv2.INTER_NEAREST)
        self.confusion.update(prediction, truth)
        self.frames += 1

    def result(self) -> Optional[Dict[str, object]]:
        """Return mIoU, per-class IoU and pixel accuracy, or None if no frame was paired."""
        if self.frames == 0:
            return None
        figures = self.confusion.as_dict(self.class_set.names)
        return {'frames': self.frames, 'miou': figures['miou'], 'iou': figures['iou'],
                'pixel_accuracy': figures['pixel_accuracy'],
                'unpaired': self.unmatched + len(self._predictions)}


@dataclass
class LiveReport:
    """Figures of one live run, from its recording (see the module docstring).

    Attributes:
        recording: The evaluated bag.
        image_topic: The camera topic.
        frames_published: Images published (distinct stamps).
        frames_processed: Images with a label or colour mask received.
        frames_dropped: ``frames_published - frames_processed``.
        input_fps: Rate the images were published at.
        achieved_fps: Rate the processed frames' first outputs arrived at.
        latency: :func:`latency_summary` of the label masks (input -> label mask received).
        latency_by_topic: The same for every recorded output topic with a header.
        unmatched_outputs: Outputs whose stamp matches no published image.
        outputs_lost: Per segmentation output topic, processed frames it never delivered
            (the node published them, the recorder did not receive them).
        accuracy: mIoU, per-class IoU and pixel accuracy on the processed frames with
            ground truth, or None without ground truth.
        scored_frames: Frames with a keyframe score.
        keyframes: One dict per keyframe: ``index`` (frame number in the replay), ``stamp_ns``,
            ``total`` score, ``decided_after_ms`` (keyframe message received - frame
            published).
        info: Anything the caller adds (model, rate factor...).
    """

    recording: str
    image_topic: str
    frames_published: int = 0
    frames_processed: int = 0
    frames_dropped: int = 0
    input_fps: Optional[float] = None
    achieved_fps: Optional[float] = None
    latency: Dict[str, Optional[float]] = field(default_factory=dict)
    latency_by_topic: Dict[str, Dict[str, Optional[float]]] = field(default_factory=dict)
    unmatched_outputs: int = 0
    outputs_lost: Dict[str, int] = field(default_factory=dict)
    accuracy: Optional[Dict[str, object]] = None
    scored_frames: int = 0
    keyframes: List[Dict[str, object]] = field(default_factory=list)
    info: Dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, object]:
        """Return the report as plain JSON types."""
        return asdict(self)

    def summary_lines(self) -> List[str]:
        """Return a short human-readable summary, one figure per line."""
        def number(value, unit=''):
            return 'n/a' if value is None else f'{value:.1f}{unit}'

        lines = [
            f'frames: {self.frames_published} published, {self.frames_processed} processed, '
            f'{self.frames_dropped} dropped',
            f'rate: input {number(self.input_fps, " Hz")}, achieved '
            f'{number(self.achieved_fps, " FPS")}',
            f'latency (input -> label mask): median {number(self.latency.get("median_ms"))} '
            f'ms, p95 {number(self.latency.get("p95_ms"))} ms',
        ]
        if self.accuracy:
            lines.append(f'mIoU: {self.accuracy["miou"]:.3f} over {self.accuracy["frames"]} '
                         'frames with ground truth')
        if self.scored_frames:
            lines.append(f'keyframes: {len(self.keyframes)} of {self.scored_frames} scored '
                         'frames (frame numbers '
                         f'{", ".join(str(k["index"]) for k in self.keyframes)})')
        for topic, lost in self.outputs_lost.items():
            if lost:
                lines.append(f'warning: {lost} processed frames never arrived on {topic} '
                             '(lost between the node and the recorder)')
        if self.unmatched_outputs:
            lines.append(f'warning: {self.unmatched_outputs} outputs matched no published '
                         'image stamp')
        return lines


def _truth_source(recording: Path, ground_truth: Optional[Path], labels_topic: str
                  ) -> Optional[Tuple[Path, str]]:
    """Return (bag, topic) of the ground truth, or None when there is none to use."""
    if not labels_topic:
        return None
    if labels_topic != AUTO:
        return (ground_truth or recording), labels_topic
    for bag in (recording, ground_truth):
        if bag is not None:
            with reading(bag) as reader:
                if has_topic(reader, DEFAULT_LABELS_TOPIC):
                    return bag, DEFAULT_LABELS_TOPIC
    return None


def score_against_truth(predictions: Iterator[Tuple[int, np.ndarray]],
                        truths: Iterator[Tuple[int, np.ndarray]], class_set: ClassSet
                        ) -> Optional[Dict[str, object]]:
    """Pair two stamp-ordered label streams by stamp; return :meth:`TruthMatcher.result`."""
    matcher = TruthMatcher(class_set)
    tagged = heapq.merge(((s, 0, m) for s, m in predictions), ((s, 1, m) for s, m in truths),
                         key=lambda item: (item[0], item[1]))
    for stamp, kind, labels in tagged:
        (matcher.truth if kind else matcher.prediction)(stamp, labels)
    return matcher.result()


def evaluate_recording(recording, image_topic: str = DEFAULT_TOPIC,
                       topics: OutputTopics = OutputTopics(), ground_truth=None,
                       labels_topic: str = AUTO, class_set: str = 'camvid') -> LiveReport:
    """Evaluate a recording of the live nodes (see the module docstring).

    Args:
        recording: Bag with the camera topic and the nodes' outputs.
        image_topic: The camera topic (sensor_msgs/Image or CompressedImage).
        topics: The nodes' output topics; scores and keyframes are optional.
        ground_truth: The replayed bag, when the recording lacks the labels.
        labels_topic: Ground-truth topic; ``'auto'``: ``/camera/labels`` of the recording,
            else of ``ground_truth``, else no accuracy; ``''`` for no accuracy.
        class_set: Class set of the label ids.

    Raises:
        BagError: A bag is unreadable or lacks the camera or label-mask topic.
    """
    recording = Path(recording)
    ground_truth = None if ground_truth is None else Path(ground_truth)
    report = LiveReport(str(recording), image_topic)
    published: Dict[int, int] = {}
    received: Dict[str, Dict[int, int]] = {}
    keyframe_times: List[Tuple[int, int]] = []
    totals: Dict[int, Optional[float]] = {}
    with reading(recording) as reader:
        inputs = find_topic(reader, image_topic, IMAGE_TYPES)
        outputs = find_topic(reader, topics.label_mask, (IMAGE,))
        for topic, types in ((topics.color_mask, (IMAGE,)),
                             (topics.scores, (DIAGNOSTIC_ARRAY,)), (topics.keyframe, (HEADER,))):
            if has_topic(reader, topic):
                outputs += find_topic(reader, topic, types)
        for connection, timestamp, raw in read_messages(reader, inputs + outputs):
            where = f'{recording}: {connection.topic} at {timestamp} ns'
            if connection.topic == topics.keyframe:
                keyframe_times.append((stamp_ns(deserialize(raw, HEADER, where)), timestamp))
                continue
            stamp = header_stamp_ns(raw, where)
            if connection.topic == image_topic:
                published.setdefault(stamp, timestamp)
                continue
            if connection.topic == topics.scores:
                terms = scores_from_message(deserialize(raw, DIAGNOSTIC_ARRAY, where))
                totals[stamp] = terms.get('total')
            received.setdefault(connection.topic, {}).setdefault(stamp, timestamp)
    _fill_timing(report, published, received, topics)
    order = {stamp: index for index, stamp in enumerate(sorted(published))}
    report.scored_frames = len(totals)
    report.keyframes = [
        {'index': order.get(stamp), 'stamp_ns': stamp, 'total': totals.get(stamp),
         'decided_after_ms': (timestamp - published[stamp]) / 1e6 if stamp in published
         else None}
        for stamp, timestamp in keyframe_times]
    source = _truth_source(recording, ground_truth, labels_topic)
    if source is not None and report.frames_processed:
        report.accuracy = score_against_truth(
            label_stream(recording, topics.label_mask), label_stream(*source),
            load_class_set(class_set))
        report.accuracy['ground_truth'] = f'{source[0]}:{source[1]}'
    return report


def _fill_timing(report: LiveReport, published: Dict[int, int],
                 received: Dict[str, Dict[int, int]], topics: OutputTopics) -> None:
    """Set frame counts, rates and latencies from publish and receive times (ns).

    A frame counts as processed when any segmentation output (label or colour mask) came
    back with its stamp; a processed frame missing on one of them was lost in transport.
    """
    segmentation = [t for t in (topics.label_mask, topics.color_mask) if t in received]
    first_receipt: Dict[int, int] = {}
    for topic in segmentation:
        for stamp, timestamp in received[topic].items():
            if stamp in published:
                first_receipt[stamp] = min(timestamp, first_receipt.get(stamp, timestamp))
    report.frames_published = len(published)
    report.frames_processed = len(first_receipt)
    report.frames_dropped = len(published) - len(first_receipt)
    report.outputs_lost = {t: len(set(first_receipt) - set(received[t])) for t in segmentation}
    report.unmatched_outputs = sum(len(set(times) - set(published))
                                   for times in received.values())
    if len(published) > 1:
        span = max(published.values()) - min(published.values())
        report.input_fps = (len(published) - 1) / (span / 1e9) if span else None
    if len(first_receipt) > 1:
        span = max(first_receipt.values()) - min(first_receipt.values())
        report.achieved_fps = (len(first_receipt) - 1) / (span / 1e9) if span else None
    for topic, times in received.items():
        report.latency_by_topic[topic] = latency_summary(
            [(t - published[s]) / 1e6 for s, t in times.items() if s in published])
    report.latency = report.latency_by_topic.get(topics.label_mask, latency_summary([]))


def write_json(path: Path, figures: Dict[str, object]) -> None:
    """Write figures as indented JSON atomically (temporary name, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f'.{path.name}.partial')
    tmp.write_text(json.dumps(figures, indent=2) + '\n')
    tmp.replace(path)
