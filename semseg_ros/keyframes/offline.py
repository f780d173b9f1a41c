"""Keyframe selection offline over image sequences, compared with baselines (``semseg keyframes``).

Reads a split list (``<data-root>/<split>.txt``, lines ``image label`` relative to the data
root, CamVid's layout), orders each sequence by the frame number in its file names
(``0016E5_07959.png``: sequence ``0016E5``, frame 7959), labels every frame (with the network, or
with the data set's ground-truth label PNGs to check the selection itself), scores it
(:class:`~semseg_ros.keyframes.scoring.KeyframeScorer`) and selects keyframes with
:class:`~semseg_ros.keyframes.policy.KeyframePolicy`. The same number of keyframes per sequence
is then chosen by uniform sampling and by an ORB-SLAM2-like rule (a keyframe every ``m``
frames, or earlier when the class histograms drift by ``tau`` from the last keyframe; ``m``
and ``tau`` are searched for that count, ``m`` as close as possible to one second of frames,
ORB-SLAM2's ``mMaxFrames = fps``) and the selected frames are compared:

* semantic: mean weighted coverage of useful classes (``FrameScore.semantic``), higher is
  better;
* class coverage: fraction of the class set present (>= 0.1 % of a frame's pixels) in at
  least one keyframe of the sequence, averaged over sequences, higher is better;
* sharpness: mean normalised variance of the Laplacian, higher is better;
* dynamic: mean fraction of pixels of moving classes, lower is better;
* redundancy: mean histogram intersection of the whole-frame class histograms of consecutive
  keyframes, lower is better.

Outputs in ``--out``: ``report.md`` (also printed), ``report.json``, ``keyframes.csv``
(``index,stamp,score,reason,...``: the semantic keyframes), ``frames.csv`` (every frame's
scores and whether it was chosen), ``keyframes_<sequence>.txt`` (TUM ``rgb.txt`` style
``timestamp filename`` lines, for ORB-SLAM2's ``mono_tum``) and ``contact_sheet.png``.
Stamps are ``frame number / --fps`` seconds (CamVid's video runs at 30 Hz).

Example::

    semseg keyframes --data-root /data/camvid --split val --labels ground-truth --out kf_val
"""

import argparse
import csv
from dataclasses import dataclass, replace
import io
import json
from pathlib import Path
import re
import sys
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import cv2
import numpy as np
from tqdm import tqdm
import yaml

from semseg_ros.core.classes import colorize, overlay
from semseg_ros.core.files import write_png
from semseg_ros.core.segmenter import Segmenter
from semseg_ros.keyframes.config import load_keyframe_config, validate_keyframe_config
from semseg_ros.keyframes.downstream import (downstream_measures, DownstreamOptions, PairCache,
                                             plot_sweep)
from semseg_ros.keyframes.matching import OrbFeatures, OrbMatcher
from semseg_ros.keyframes.policy import (KeyframeDecision, KeyframePolicy,
                                         max_interval_selection, uniform_selection)
from semseg_ros.keyframes.scoring import FrameScore, KeyframeScorer

METHODS = ('semantic', 'uniform', 'max_interval', 'overlap')
METHOD_TITLES = {'semantic': 'semantic (this package)', 'uniform': 'uniform sampling',
                 'max_interval': 'ORB-SLAM2-like max interval',
                 'overlap': 'visual overlap, no semantics'}
# min_shared_features values of the recall-against-keyframes sweep.
DEFAULT_SWEEP = (20, 30, 40, 50, 70, 100, 150, 250)
# A class counts as seen in a frame from this fraction of its pixels on.
PRESENCE_FRACTION = 0.001
# Novelty thresholds the max-interval baseline may use to reach the requested count.
_THRESHOLDS = tuple(round(0.02 * i, 2) for i in range(1, 51))
_NAME = re.compile(r'^(?P<sequence>.+)_(?P<prefix>[A-Za-z]*)(?P<number>\d+)$')
EXIT_BAD_INPUT = 2


class OfflineError(Exception):
    """Bad input (missing data, unreadable file...); the message names it."""


@dataclass(frozen=True)
class SplitEntry:
    """One frame of a split list.

    Attributes:
        image: Image path relative to the data root (as written in the list).
        label: Label path relative to the data root.
        sequence: Sequence name from the file name (``0016E5``).
        frame: Frame number from the file name (``7959``).
    """

    image: str
    label: str
    sequence: str
    frame: int


def read_split(data_root: Path, split: str) -> List[SplitEntry]:
    """Read ``<data_root>/<split>.txt`` (lines ``image label``, relative to the data root).

    Raises:
        OfflineError: Missing data root or list, a malformed line, or a file name without
            ``<sequence>_<frame number>``.
    """
    if not data_root.is_dir():
        raise OfflineError(f'data root {data_root} does not exist or is not a folder')
    path = data_root / f'{split}.txt'
    if not path.is_file():
        found = sorted(p.stem for p in data_root.glob('*.txt'))
        raise OfflineError(f'split list {path} not found; splits in {data_root}: '
                           f'{", ".join(found) or "none"}')
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith('#'):
            continue
        parts = line.split()
        if len(parts) != 2:
            raise OfflineError(f'{path}:{number}: expected "image label" paths, got {line!r}')
        match = _NAME.match(Path(parts[0]).stem)
        if match is None:
            raise OfflineError(f'{path}:{number}: cannot read a sequence and frame number '
                               f'from {parts[0]!r}; expected <sequence>_<frame>, e.g. '
                               '0016E5_07959.png')
        entries.append(SplitEntry(parts[0], parts[1], match['sequence'],
                                  int(match['number'])))
    if not entries:
        raise OfflineError(f'{path} lists no frames')
    return entries


def order_sequences(entries: Sequence[SplitEntry], every: int = 1,
                    max_frames: Optional[int] = None) -> Dict[str, List[SplitEntry]]:
    """Group frames by sequence, sorted by frame number; keep every ``every``-th frame.

    Args:
        entries: The split list.
        every: Keep frames 0, every, 2 * every... of each sequence.
        max_frames: Keep at most this many frames in all (sequences in name order).

    Raises:
        OfflineError: A frame number repeated within a sequence.
    """
    sequences: Dict[str, List[SplitEntry]] = {}
    for entry in entries:
        sequences.setdefault(entry.sequence, []).append(entry)
    ordered, left = {}, max_frames
    for name in sorted(sequences):
        frames = sorted(sequences[name], key=lambda e: e.frame)
        numbers = [e.frame for e in frames]
        if len(set(numbers)) != len(numbers):
            raise OfflineError(f'sequence {name} lists a frame number twice')
        frames = frames[::every]
        if left is not None:
            frames, left = frames[:left], left - len(frames[:left])
        if frames:
            ordered[name] = frames
    return ordered


@dataclass
class FrameRecord:
    """A scored frame.

    Attributes:
        entry: Its split entry.
        index: Position in its (subsampled) sequence.
        stamp_ns: Stamp: frame number / fps.
        score: Its score (novelty 1.0: no reference; the policy re-bases it).
        histogram: Whole-frame class histogram (void last), summing to 1.
        thumbnail: Small RGB image for the contact sheet.
        features: ORB features of the policy's extractor (whole frame).
        static_features: Those off the dynamic classes' mask (what the policy matches).
        eval_features: ORB features of the downstream measure's extractor.
    """

    entry: SplitEntry
    index: int
    stamp_ns: int
    score: FrameScore
    histogram: np.ndarray
    thumbnail: np.ndarray
    features: OrbFeatures
    static_features: OrbFeatures
    eval_features: OrbFeatures


def _read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise OfflineError(f'{path}: cannot read the image (missing or not an image file)')
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _read_labels(path: Path, shape: Tuple[int, int]) -> np.ndarray:
    labels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if labels is None:
        raise OfflineError(f'{path}: cannot read the label PNG (missing or not an image file)')
    if labels.ndim != 2 or labels.dtype != np.uint8:
        raise OfflineError(f'{path}: expected a single-channel 8-bit label PNG of class ids, '
                           f'got shape {labels.shape} of {labels.dtype}')
    if labels.shape != shape:
        raise OfflineError(f'{path}: labels are {labels.shape[1]}x{labels.shape[0]}, the image '
                           f'{shape[1]}x{shape[0]}')
    return labels


class FrameLabeller:
    """Labels frames with a network or from ground-truth PNGs."""

    def __init__(self, args: argparse.Namespace, class_set_name: str):
        self.ground_truth = args.labels == 'ground-truth'
        self.segmenter = None
        if not self.ground_truth:
            config = replace(args.segmenter, class_set=class_set_name)
            try:
                self.segmenter = Segmenter(config)
            except (ValueError, OSError) as error:
                raise OfflineError(f'cannot load {config.model}: {error}') from error

    def __call__(self, data_root: Path, entry: SplitEntry, rgb: np.ndarray
                 ) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """Return (labels, confidence or None) for one frame."""
        if self.ground_truth:
            return _read_labels(data_root / entry.label, rgb.shape[:2]), None
        result = self.segmenter.segment(rgb, 'input', with_confidence=True)
        return result.labels, result.confidence


def score_sequence(data_root: Path, frames: Sequence[SplitEntry], scorer: KeyframeScorer,
                   labeller: FrameLabeller, fps: float, thumb_width: int, sheet_overlay: float,
                   progress: tqdm, matchers: Tuple[OrbMatcher, OrbMatcher]
                   ) -> List[FrameRecord]:
    """Label, score and extract the features of the frames of one sequence, in order.

    ``matchers`` are the policy's and the downstream measure's (the same one: extracted once).
    """
    records = []
    for index, entry in enumerate(frames):
        rgb = _read_rgb(data_root / entry.image)
        labels, confidence = labeller(data_root, entry, rgb)
        try:
            score = scorer.score(labels, rgb, confidence)
        except ValueError as error:
            raise OfflineError(f'{data_root / entry.label}: {error}') from error
        thumb_height = max(1, round(rgb.shape[0] * thumb_width / rgb.shape[1]))
        thumbnail = rgb
        if sheet_overlay > 0:
            thumbnail = overlay(rgb, colorize(labels, scorer.class_set), sheet_overlay)
        thumbnail = cv2.resize(thumbnail, (thumb_width, thumb_height),
                               interpolation=cv2.INTER_AREA)
        histogram = score.histograms.mean(axis=0)
        features = matchers[0].extract(rgb)
        eval_features = features if matchers[1] is matchers[0] else matchers[1].extract(rgb)
        records.append(FrameRecord(entry, index, round(entry.frame / fps * 1e9), score,
                                   histogram / histogram.sum(), thumbnail, features,
                                   features.outside(scorer.dynamic_mask(labels)),
                                   eval_features))
        progress.update(1)
    return records


def matched_max_interval(scores: Sequence[FrameScore], count: int, interval: int,
                         metric: str) -> Tuple[List[int], Dict[str, Any]]:
    """Run the ORB-SLAM2-like rule with the parameters that give ``count`` keyframes.

    Interval candidates are tried from the closest to ``interval`` outwards; for each, no
    novelty trigger first, then the thresholds from high to low. The first exact count wins; if
    none is exact, the closest count (ties: more keyframes) is returned.

    Returns:
        ``(indices, {'max_frames': m, 'novelty_threshold': tau or None, 'exact': bool})``.
    """
    best: Optional[Tuple[int, List[int], Dict[str, Any]]] = None
    for max_frames in sorted(range(1, len(scores) + 1), key=lambda m: (abs(m - interval), m)):
        for threshold in (None, *reversed(_THRESHOLDS)):
            chosen = max_interval_selection(scores, max_frames, 0, threshold, metric)
            params = {'max_frames': max_frames, 'novelty_threshold': threshold}
            if len(chosen) == count:
                return chosen, dict(params, exact=True)
            miss = (abs(len(chosen) - count), len(chosen) < count)
            if best is None or miss < best[0]:
                best = (miss, chosen, dict(params, exact=False))
            if len(chosen) > count:
                break  # lower thresholds only add keyframes
    return best[1], best[2]


def matched_overlap(config: Mapping[str, Any], records: Sequence[FrameRecord],
                    cache: PairCache, count: int) -> Tuple[List[int], Dict[str, Any]]:
    """Run the visual-overlap rule without semantics with the threshold that gives ``count``.

    Whole-frame features (no mask) and ``window_frames`` 0 (the last frame that still overlaps,
    whatever its score); ``min_shared_features`` is searched by :func:`matched_policy`.

    Returns:
        ``(indices, {'min_shared_features': t, 'exact': bool})``.
    """
    return matched_policy(dict(config, window_frames=0), records, cache, count)


def matched_policy(config: Mapping[str, Any], records: Sequence[FrameRecord],
                   cache: PairCache, count: int) -> Tuple[List[int], Dict[str, Any]]:
    """Run a visual-overlap policy with the ``min_shared_features`` that gives ``count``.

    The threshold is searched by bisection (more keyframes as it rises); the first exact count
    wins, else the closest (ties: more keyframes). ``cache`` holds the features the policy
    matches (the static ones for the semantic policy).

    Returns:
        ``(indices, {'min_shared_features': t, 'exact': bool})``.
    """
    stamps, scores = [r.stamp_ns for r in records], [r.score for r in records]
    tried: Dict[int, List[int]] = {}

    def select(threshold):
        if threshold not in tried:
            policy = KeyframePolicy.from_config(
                dict(config, min_shared_features=threshold), overlap=cache.inliers)
            tried[threshold] = [d.index for d in policy.run(stamps, scores,
                                                            features=range(len(records)))]
        return tried[threshold]

    low, high = 1, max(2, config['orb_features'])
    while low < high:
        middle = (low + high) // 2
        if len(select(middle)) < count:
            low = middle + 1
        else:
            high = middle
    candidates = [t for t in (low - 1, low, low + 1) if t >= 1]
    best = min(candidates, key=lambda t: (abs(len(select(t)) - count), -len(select(t))))
    return select(best), {'min_shared_features': best, 'exact': len(select(best)) == count}


def select_methods(config: Mapping[str, Any], sequences: Dict[str, List[FrameRecord]],
                   caches: Dict[str, Tuple[PairCache, PairCache]]
                   ) -> Tuple[Dict[str, Dict[str, List[int]]],
                              Dict[str, List[KeyframeDecision]], Dict[str, Dict[str, Any]]]:
    """Select keyframes with every method, each at the semantic policy's count per sequence.

    Args:
        config: The keyframe configuration of the semantic policy.
        sequences: Scored frames per sequence.
        caches: Per sequence, the pair caches of the static features (the policy's) and of the
            whole-frame features (the overlap baseline's).

    Returns:
        ``(method -> sequence -> indices, sequence -> semantic decisions,
        sequence -> baseline parameters)``; the overlap baseline only in visual-overlap mode.
    """
    methods = METHODS if config['min_shared_features'] > 0 else METHODS[:3]
    chosen: Dict[str, Dict[str, List[int]]] = {m: {} for m in methods}
    decisions, params = {}, {}
    for name, records in sequences.items():
        static, plain = caches[name]
        scores = [r.score for r in records]
        policy = KeyframePolicy.from_config(config, overlap=static.inliers)
        decisions[name] = policy.run([r.stamp_ns for r in records], scores,
                                     features=range(len(records)))
        count = len(decisions[name])
        # ORB-SLAM2's mMaxFrames is the camera rate: one second of frames.
        seconds = (records[-1].stamp_ns - records[0].stamp_ns) / 1e9
        interval = max(1, round((len(records) - 1) / seconds)) if seconds > 0 else 1
        chosen['semantic'][name] = [d.index for d in decisions[name]]
        chosen['uniform'][name] = uniform_selection(len(records), count)
        chosen['max_interval'][name], params[name] = matched_max_interval(
            scores, count, interval, config['novelty_metric'])
        if 'overlap' in chosen:
            chosen['overlap'][name], params[name]['overlap'] = matched_overlap(
                config, records, plain, count)
    return chosen, decisions, params


def _similarity(first: np.ndarray, second: np.ndarray) -> float:
    """Histogram intersection of two normalised histograms (1 = same content)."""
    return float(np.minimum(first, second).sum())


def selection_metrics(selections: Sequence[Tuple[List[FrameRecord], List[int]]],
                      num_classes: int) -> Dict[str, float]:
    """Return the comparison metrics of chosen frames over several sequences.

    Args:
        selections: Per sequence, its records and the chosen indices (ascending).
        num_classes: Size of the class set (void excluded).
    """
    chosen = [records[i] for records, indices in selections for i in indices]
    coverages, similarities = [], []
    for records, indices in selections:
        if not indices:
            continue
        histograms = np.stack([records[i].histogram[:num_classes] for i in indices])
        coverages.append(float((histograms >= PRESENCE_FRACTION).any(axis=0).mean()))
        similarities += [_similarity(records[a].histogram, records[b].histogram)
                         for a, b in zip(indices, indices[1:])]

    def mean(values):
        values = [v for v in values if v is not None]
        return float(np.mean(values)) if values else float('nan')

    return {
        'keyframes': len(chosen),
        'semantic': mean(r.score.semantic for r in chosen),
        'class_coverage': mean(coverages),
        'sharpness': mean(r.score.sharpness for r in chosen),
        'quality': mean(r.score.quality for r in chosen),
        'dynamic': mean(r.score.dynamic for r in chosen),
        'redundancy': mean(similarities),
    }


TABLE_COLUMNS = (('keyframes', 'keyframes', '{:d}'), ('semantic', 'semantic ↑', '{:.3f}'),
                 ('class_coverage', 'class coverage ↑', '{:.3f}'),
                 ('sharpness', 'sharpness ↑', '{:.3f}'), ('dynamic', 'dynamic ↓', '{:.3f}'),
                 ('redundancy', 'redundancy ↓', '{:.3f}'))


def markdown_table(metrics: Dict[str, Dict[str, float]]) -> str:
    """Return the comparison as a Markdown table, one row per method."""
    lines = ['| method | ' + ' | '.join(title for _, title, _ in TABLE_COLUMNS) + ' |',
             '|---|' + '---:|' * len(TABLE_COLUMNS)]
    for method in metrics:
        cells = [fmt.format(metrics[method][key]) for key, _, fmt in TABLE_COLUMNS]
        lines.append(f'| {METHOD_TITLES[method]} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def downstream_table(metrics: Dict[str, Dict[str, Any]], per_sequence: List[Dict[str, Any]],
                     options: DownstreamOptions) -> str:
    """Return the downstream measures as Markdown: all sequences, then each sequence."""
    lines = [f'Downstream (plain ORB, {options.orb_features} features, >= '
             f'{options.min_inliers} verified inliers, {options.neighbours} nearest '
             'keyframes):', '',
             '| sequence | method | keyframes | map features | relocalisation recall ↑ | '
             'continuity ↑ |', '|---|---|---:|---:|---:|---:|']
    rows = [('all', {m: v['downstream'] for m, v in metrics.items()})]
    if len(per_sequence) > 1:
        rows += [(e['sequence'], e['downstream']) for e in per_sequence]
    for sequence, measures in rows:
        for method, m in measures.items():
            lines.append(f'| {sequence} | {METHOD_TITLES[method]} | {m["keyframes"]} | '
                         f'{m["map_features"]} | {m["recall"]:.3f} | {m["continuity"]:.3f} |')
    return '\n'.join(lines)


def downstream_sweep(config: Mapping[str, Any], sequences: Dict[str, List[FrameRecord]],
                     caches: Dict[str, Tuple[PairCache, PairCache, PairCache]],
                     values: Sequence[int], options: DownstreamOptions
                     ) -> List[Dict[str, Any]]:
    """Measure every method at the counts the policy reaches with each ``min_shared_features``.

    Returns:
        One entry per value: ``{'min_shared_features': v, 'methods': {method: measures}}``;
        empty when the policy is not in visual-overlap mode (it has no such knob then).
    """
    if config['min_shared_features'] <= 0:
        return []
    points = []
    for value in values:
        chosen, _, _ = select_methods(dict(config, min_shared_features=value), sequences,
                                      {n: c[:2] for n, c in caches.items()})
        points.append({'min_shared_features': value, 'methods': {
            m: downstream_measures([(caches[n][2], chosen[m][n]) for n in sequences], options)
            for m in chosen}})
    return points


def _sweep_report(sweep: List[Dict[str, Any]]) -> str:
    """Return the sweep as Markdown (recall / continuity per method and threshold)."""
    if not sweep:
        return ''
    methods = list(sweep[0]['methods'])
    lines = ['## Recall against keyframe count (`recall_vs_keyframes.png`)', '',
             'Each row: the policy with that `min_shared_features`, and every other method at '
             'its keyframe count per sequence. Cells: recall / continuity.', '',
             '| min_shared_features | keyframes | ' + ' | '.join(
                 METHOD_TITLES[m] for m in methods) + ' |',
             '|---:|---:|' + '---|' * len(methods)]
    for point in sweep:
        measures = point['methods']
        cells = [f'{measures[m]["recall"]:.3f} / {measures[m]["continuity"]:.3f}'
                 for m in methods]
        lines.append(f'| {point["min_shared_features"]} | '
                     f'{measures["semantic"]["keyframes"]} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def _write_text(path: Path, text: str) -> None:
    """Write a text file atomically (temporary name, then rename)."""
    tmp = path.with_name(path.name + '.part')
    tmp.write_text(text)
    tmp.replace(path)


_TERMS = ('quality', 'sharpness', 'exposure', 'semantic', 'diversity', 'dynamic', 'novelty',
          'void')


def _term(score: FrameScore, name: str) -> str:
    value = getattr(score, name)
    return '' if value is None else f'{value:.4f}'


def keyframes_csv(sequences: Dict[str, List[FrameRecord]],
                  decisions: Dict[str, List[KeyframeDecision]]) -> str:
    """Return ``keyframes.csv``: one row per semantic keyframe, stamps in seconds."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator='\n')
    writer.writerow(['index', 'stamp', 'score', 'reason', 'sequence', 'frame', 'image',
                     'gap_frames', 'decided_at', *_TERMS])
    for name, records in sequences.items():
        for decision in decisions[name]:
            record = records[decision.index]
            writer.writerow([decision.index, f'{decision.stamp_ns / 1e9:.6f}',
                             f'{decision.score.total:.4f}', decision.reason, name,
                             record.entry.frame, record.entry.image,
                             '' if decision.gap_frames is None else decision.gap_frames,
                             decision.decided_at,
                             *(_term(decision.score, t) for t in _TERMS)])
    return out.getvalue()


def frames_csv(sequences: Dict[str, List[FrameRecord]],
               decisions: Dict[str, List[KeyframeDecision]]) -> str:
    """Return ``frames.csv``: every frame's scores (novelty without reference) and its choice."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator='\n')
    writer.writerow(['index', 'stamp', 'sequence', 'frame', 'image', 'keyframe', 'reason',
                     'score', 'laplacian_var', *_TERMS])
    for name, records in sequences.items():
        reasons = {d.index: d.reason for d in decisions[name]}
        for record in records:
            score = record.score
            writer.writerow([record.index, f'{record.stamp_ns / 1e9:.6f}', name,
                             record.entry.frame, record.entry.image,
                             int(record.index in reasons), reasons.get(record.index, ''),
                             f'{score.total:.4f}', _term(score, 'laplacian_var'),
                             *(_term(score, t) for t in _TERMS)])
    return out.getvalue()


def tum_list(name: str, split: str, records: List[FrameRecord],
             decisions: List[KeyframeDecision]) -> str:
    """Return a TUM ``rgb.txt``-style list of a sequence's keyframes: ``timestamp filename``.

    Three comment lines come first, as in TUM's files (ORB-SLAM2's ``mono_tum`` skips three).
    """
    lines = [f'# semantic keyframes of sequence {name}, split {split} (semseg keyframes)',
             f'# {len(decisions)} of {len(records)} frames; stamp = frame number / fps',
             '# timestamp filename']
    lines += [f'{d.stamp_ns / 1e9:.6f} {records[d.index].entry.image}' for d in decisions]
    return '\n'.join(lines) + '\n'


def contact_sheet(tiles: Sequence[Tuple[np.ndarray, Sequence[str]]], columns: int = 6
                  ) -> np.ndarray:
    """Return a grid of thumbnails, each above its caption lines (RGB, white background)."""
    if not tiles:
        return np.full((40, 320, 3), 255, np.uint8)
    height = max(t.shape[0] for t, _ in tiles)
    width = max(t.shape[1] for t, _ in tiles)
    lines = max(len(c) for _, c in tiles)
    line_height, margin = 16, 6
    cell_h, cell_w = height + lines * line_height + 2 * margin, width + 2 * margin
    rows = (len(tiles) + columns - 1) // columns
    columns = min(columns, len(tiles))
    sheet = np.full((rows * cell_h, columns * cell_w, 3), 255, np.uint8)
    for i, (thumb, caption) in enumerate(tiles):
        top, left = (i // columns) * cell_h + margin, (i % columns) * cell_w + margin
        sheet[top:top + thumb.shape[0], left:left + thumb.shape[1]] = thumb
        for j, text in enumerate(caption):
            cv2.putText(sheet, text, (left, top + height + (j + 1) * line_height - 3),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    return sheet


def keyframe_configuration(path: Optional[Path], overrides: Sequence[str]) -> Dict[str, Any]:
    """Load the keyframe configuration and apply ``KEY=VALUE`` overrides (validated)."""
    try:
        config = load_keyframe_config(path)
        changed = dict(config)
        for item in overrides:
            key, separator, text = item.partition('=')
            if not separator:
                raise ValueError(f'--set {item!r}: expected KEY=VALUE')
            changed[key.strip()] = yaml.safe_load(text)
        return validate_keyframe_config(changed, source='--set') if overrides else config
    except (ValueError, yaml.YAMLError) as error:
        raise OfflineError(str(error)) from error


def run(args: argparse.Namespace, command: str) -> Tuple[str, Dict[str, Any]]:
    """Do the evaluation and write every output; return (Markdown report, JSON report).

    Raises:
        OfflineError: Bad input, naming it.
    """
    config = keyframe_configuration(args.config, args.set)
    ordered = order_sequences(read_split(args.data_root, args.split), args.every,
                              args.max_frames)
    if args.sequences:
        unknown = sorted(set(args.sequences) - set(ordered))
        if unknown:
            raise OfflineError(f'--sequences: {", ".join(unknown)} not in split {args.split} '
                               f'(its sequences: {", ".join(ordered)})')
        ordered = {n: f for n, f in ordered.items() if n in args.sequences}
    options = DownstreamOptions(args.min_inliers, args.orb_features, args.neighbours)
    policy_matcher = OrbMatcher(n_features=config['orb_features'])
    matchers = (policy_matcher, policy_matcher if args.orb_features == config['orb_features']
                else OrbMatcher(n_features=args.orb_features))
    scorer = KeyframeScorer(config)
    labeller = FrameLabeller(args, config['class_set'])
    total = sum(len(f) for f in ordered.values())
    sequences: Dict[str, List[FrameRecord]] = {}
    with tqdm(total=total, desc='scoring frames', unit='frame', file=sys.stderr) as progress:
        for name, frames in ordered.items():
            sequences[name] = score_sequence(args.data_root, frames, scorer, labeller,
                                             args.fps, 240, args.sheet_overlay, progress,
                                             matchers)

    caches = {}
    for name, records in sequences.items():
        static = PairCache(matchers[0], [r.static_features for r in records])
        plain = PairCache(matchers[0], [r.features for r in records])
        evaluated = (plain if matchers[1] is matchers[0]
                     else PairCache(matchers[1], [r.eval_features for r in records]))
        caches[name] = (static, plain, evaluated)
    chosen, decisions, params = select_methods(
        config, sequences, {n: c[:2] for n, c in caches.items()})
    methods = tuple(chosen)
    per_sequence = []
    for name, records in sequences.items():
        per_sequence.append({
            'sequence': name, 'frames': len(records), 'first_frame': records[0].entry.frame,
            'last_frame': records[-1].entry.frame, 'keyframes': len(decisions[name]),
            'max_interval_params': params[name],
            'selections': {m: chosen[m][name] for m in methods},
            'downstream': {m: downstream_measures([(caches[name][2], chosen[m][name])],
                                                  options) for m in methods},
            'reasons': [d.reason for d in decisions[name]]})

    num_classes = scorer.class_set.num_classes
    metrics = {m: selection_metrics([(sequences[n], chosen[m][n]) for n in sequences],
                                    num_classes) for m in methods}
    for method in methods:
        metrics[method]['downstream'] = downstream_measures(
            [(caches[n][2], chosen[method][n]) for n in sequences], options)
    equal = len({metrics[m]['keyframes'] for m in methods}) == 1
    sweep = downstream_sweep(config, sequences, caches, args.sweep, options)
    table = markdown_table(metrics) + '\n\n' + downstream_table(metrics, per_sequence, options)
    report = _markdown_report(args, command, sequences, per_sequence, table, equal, total)
    report += _sweep_report(sweep)
    summary = {
        'command': command, 'data_root': str(args.data_root), 'split': args.split,
        'labels': args.labels,
        'model': None if args.labels == 'ground-truth' else args.model,
        'weights': None if args.labels == 'ground-truth' else args.weights,
        'every': args.every, 'max_frames': args.max_frames, 'fps': args.fps,
        'frames': total, 'equal_counts': equal, 'presence_fraction': PRESENCE_FRACTION,
        'methods': metrics, 'sequences': per_sequence, 'config': config,
        'downstream_options': vars(options), 'sweep': sweep,
    }
    _write_outputs(args, sequences, decisions, report, summary)
    return report, summary


def _markdown_report(args, command, sequences, per_sequence, table, equal, total) -> str:
    labels = ('ground-truth label PNGs' if args.labels == 'ground-truth'
              else f'{args.model} (weights {args.weights}) at {args.size[0]}x{args.size[1]}')
    lines = [f'# Keyframe selection: {args.split} split', '',
             f'`{command}`', '',
             f'{total} frames in {len(sequences)} sequence(s), labels from {labels}; '
             f'stamps = frame number / {args.fps:g} s. Every method selects the same number of '
             "keyframes per sequence (the semantic policy's).", '', table, '']
    if not equal:
        lines += ['**A baseline could not reach the same count in every sequence; its count '
                  'is shown.**', '']
    lines += ['| sequence | frames | keyframes | max-interval m | max-interval tau |',
              '|---|---:|---:|---:|---:|']
    for entry in per_sequence:
        params = entry['max_interval_params']
        tau = params['novelty_threshold']
        lines.append(f'| {entry["sequence"]} | {entry["frames"]} | {entry["keyframes"]} | '
                     f'{params["max_frames"]} | {"-" if tau is None else f"{tau:.2f}"} |')
    lines += ['', 'semantic: weighted coverage of useful classes; class coverage: fraction of '
              f'the classes present (>= {PRESENCE_FRACTION:.1%} of the pixels) in at least one '
              'keyframe; sharpness: normalised variance of the Laplacian; dynamic: fraction of '
              'moving-class pixels; redundancy: histogram intersection of consecutive '
              "keyframes' class histograms.", '']
    return '\n'.join(lines)


def _write_outputs(args, sequences, decisions, report, summary) -> None:
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    _write_text(out / 'keyframes.csv', keyframes_csv(sequences, decisions))
    _write_text(out / 'frames.csv', frames_csv(sequences, decisions))
    for name, records in sequences.items():
        _write_text(out / f'keyframes_{name}.txt',
                    tum_list(name, args.split, records, decisions[name]))
    tiles = []
    for name, records in sequences.items():
        for decision in decisions[name]:
            record = records[decision.index]
            tiles.append((record.thumbnail, [
                f'{Path(record.entry.image).stem}  t={decision.stamp_ns / 1e9:.2f}s',
                f'score {decision.score.total:.3f}  {decision.reason}',
                f'q {decision.score.quality:.2f} sem {decision.score.semantic:.2f} '
                f'dyn {decision.score.dynamic:.2f}']))
    write_png(out / 'contact_sheet.png', contact_sheet(tiles))
    if summary['sweep']:
        points = {m: [p['methods'][m] for p in summary['sweep']]
                  for m in summary['sweep'][0]['methods']}
        tmp = out / 'recall_vs_keyframes.part'
        plot_sweep(points, METHOD_TITLES, tmp, f'semseg keyframes, {args.split} '
                   f'({", ".join(sequences)}), labels {args.labels}; >= {args.min_inliers} '
                   f'inliers, {args.neighbours} nearest keyframes')
        tmp.replace(out / 'recall_vs_keyframes.png')
    _write_text(out / 'report.json', json.dumps(summary, indent=2) + '\n')
    _write_text(out / 'report.md', report)  # last: a complete report means complete outputs
