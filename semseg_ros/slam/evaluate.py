"""``semseg slam``: a real ORB-SLAM3 maps keyframe selections of a sequence, with repeats.

For one sequence of a split (CamVid layout), every frame is labelled and scored as by
``semseg keyframes``; then, in processes of their own (:mod:`semseg_ros.slam.orbslam3`), a
monocular ORB-SLAM3 is fed frames at the pace of their stamps, ``repeats`` times each:

* ``all_frames``: every frame. ORB-SLAM3 chooses its own keyframes (the paper's baseline);
  the repeat with the median keyframe count gives ``orbslam``'s selection and the count every
  other selection is made to match.
* ``semantic`` (the keyframe policy, its ``min_shared_features`` searched for that count),
  ``uniform``, ``max_interval`` (the ORB-SLAM2-like rule of ``semseg keyframes``) and
  ``orbslam``: only the selected frames, at their real times, as the frames a robot shares.
  Then, mapping stopped (localisation-only mode), every frame of the sequence is tracked
  against that map: the fraction tracked is ``localised``.
* with ``--masked``, the same with the dynamic classes (the scorer's dilated mask of the
  labels) painted out of every frame ORB-SLAM3 sees (``NAME_masked``).

Outputs in ``--out``: ``report.json`` (``methods.NAME.frames``: the image files fed;
``methods.NAME.repeats``: ``initialised_at`` (sequence index or null), ``tracked``,
``localised``, ``points``, ``keyframes``...; ``summary``: mean, standard deviation, min and
max), ``report.md`` (the table), ``contact_sheet.png`` (each selection's frames in a row,
ORB-SLAM3's own among them) and ``logs/`` (ORB-SLAM3's output of each run).
"""

import argparse
from dataclasses import dataclass
import json
import math
from pathlib import Path
import statistics
import subprocess
import sys
import tempfile
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from tqdm import tqdm

from semseg_ros.core.files import write_png, write_text_atomic
from semseg_ros.keyframes import offline
from semseg_ros.keyframes.downstream import PairCache
from semseg_ros.keyframes.matching import OrbMatcher
from semseg_ros.keyframes.policy import KeyframePolicy, uniform_selection
from semseg_ros.keyframes.scoring import KeyframeScorer
from semseg_ros.slam.masking import paint_out
from semseg_ros.slam.settings import Intrinsics, SettingsError
from semseg_ros.slam.vocabulary import vocabulary_for, VocabularyError

SELECTIONS = ('semantic', 'uniform', 'max_interval', 'orbslam')
TITLES = {'all_frames': 'ORB-SLAM3 fed every frame', 'semantic': 'semantic (this package)',
          'uniform': 'uniform sampling', 'max_interval': 'ORB-SLAM2-like max interval',
          'orbslam': "ORB-SLAM3's own keyframes"}
MEASURES = ('tracked', 'localised', 'points', 'keyframes')
EXIT_BAD_INPUT = 2


class SlamError(Exception):
    """Bad input or a failed set-up; the message names the file and the problem."""


@dataclass
class Job:
    """One method's frames: what ORB-SLAM3 is fed."""

    name: str
    indices: List[int]
    masked: bool = False


class _KeepingLabeller:
    """A :class:`~semseg_ros.keyframes.offline.FrameLabeller` that keeps each frame's labels."""

    def __init__(self, labeller: offline.FrameLabeller):
        self.labeller = labeller
        self.labels: Dict[str, np.ndarray] = {}

    def __call__(self, data_root, entry, rgb):
        labels, confidence = self.labeller(data_root, entry, rgb)
        self.labels[entry.image] = labels
        return labels, confidence


def summarise(values: Sequence[Optional[float]]) -> Dict[str, Optional[float]]:
    """Return mean, standard deviation (sample), min and max of the values that are not None."""
    kept = [float(v) for v in values if v is not None]
    if not kept:
        return {'mean': None, 'std': None, 'min': None, 'max': None, 'n': 0}
    return {'mean': statistics.fmean(kept),
            'std': statistics.stdev(kept) if len(kept) > 1 else 0.0,
            'min': min(kept), 'max': max(kept), 'n': len(kept)}


def stamps_to_indices(keyframe_stamps: Sequence[float], stamps: Sequence[float]) -> List[int]:
    """Map keyframe stamps (s) to the indices of the nearest frame stamps, ascending, distinct."""
    stamps = np.asarray(stamps, np.float64)
    return sorted({int(np.abs(stamps - s).argmin()) for s in keyframe_stamps})


def median_repeat(repeats: Sequence[Dict[str, Any]]) -> int:
    """Return the position of the repeat whose keyframe count is the median (the first such)."""
    counts = [len(r.get('keyframe_indices', [])) for r in repeats]
    median = sorted(counts)[(len(counts) - 1) // 2]
    return counts.index(median)


class Runner:
    """Runs paced ORB-SLAM3 jobs, one process each, and keeps their logs."""

    def __init__(self, out: Path, vocabulary: Path, settings: Path, image_paths: List[Path],
                 stamps: List[float], masked_paths: Optional[List[Path]], settle_s: float,
                 progress: Callable[[], None]):
        self.out, self.vocabulary, self.settings = out, vocabulary, settings
        self.image_paths, self.stamps, self.masked_paths = image_paths, stamps, masked_paths
        self.settle_s, self.progress = settle_s, progress
        (out / 'logs').mkdir(parents=True, exist_ok=True)

    def run(self, job: Job, repeat: int) -> Dict[str, Any]:
        """Feed the job's frames to a fresh ORB-SLAM3, then localise every frame.

        Returns the run's result; ``error`` set and nothing tracked when the process failed.
        """
        paths = self.masked_paths if job.masked else self.image_paths
        first = self.stamps[0]
        spec = {'vocabulary': str(self.vocabulary), 'settings': str(self.settings),
                'images': [str(paths[i]) for i in job.indices],
                'stamps': [self.stamps[i] - first for i in job.indices],
                'indices': job.indices, 'settle_s': self.settle_s,
                'localise': [str(p) for p in paths]}
        log = self.out / 'logs' / f'{job.name}_{repeat + 1}.log'
        duration = self.stamps[-1] - first
        with tempfile.TemporaryDirectory(prefix='semseg_slam_') as folder:
            job_file, result_file = Path(folder) / 'job.json', Path(folder) / 'result.json'
            job_file.write_text(json.dumps(spec))
            with open(log, 'w') as handle:
                try:
                    code = subprocess.run(
                        [sys.executable, '-m', 'semseg_ros.slam.orbslam3', str(job_file),
                         str(result_file)], stdout=handle, stderr=subprocess.STDOUT,
                        timeout=2 * duration + 120).returncode
                except subprocess.TimeoutExpired:
                    code = 'timeout'
            if code == 0 and result_file.is_file():
                result = json.loads(result_file.read_text())
            else:
                result = {'error': f'ORB-SLAM3 run failed ({code}; see {log})',
                          'initialised_at': None, 'tracked': 0, 'localised': 0.0,
                          'points': 0.0, 'keyframe_stamps': [], 'states': [], 'late_s': None}
        result['keyframe_indices'] = stamps_to_indices(
            [s + first for s in result.pop('keyframe_stamps')], self.stamps)
        result['keyframes'] = len(result['keyframe_indices'])
        self.progress()
        return result


def _intrinsics(args: argparse.Namespace) -> Intrinsics:
    """Return the camera of ``--camera-info`` or ``--fx/--fy/--cx/--cy``."""
    values = [args.fx, args.fy, args.cx, args.cy]
    try:
        camera = Intrinsics.from_yaml(args.camera_info)
        if any(v is not None for v in values):
            if None in values:
                raise SlamError('--fx, --fy, --cx and --cy go together: give all four')
            camera = Intrinsics(camera.width, camera.height, *values, camera.distortion)
        return camera
    except SettingsError as error:
        raise SlamError(str(error)) from error


def run(args: argparse.Namespace, command: str) -> Tuple[str, Dict[str, Any]]:
    """Do the evaluation and write every output; return (Markdown report, JSON report).

    Raises:
        SlamError: Bad input, naming it.
    """
    try:
        return _run(args, command)
    except (offline.OfflineError, VocabularyError) as error:
        raise SlamError(str(error)) from error


def _run(args: argparse.Namespace, command: str) -> Tuple[str, Dict[str, Any]]:
    config = offline.keyframe_configuration(args.config, args.set)
    ordered = offline.order_sequences(offline.read_split(args.data_root, args.split))
    names = args.sequences or list(ordered)
    unknown = sorted(set(names) - set(ordered))
    if unknown:
        raise SlamError(f'--sequences: {", ".join(unknown)} not in split {args.split} '
                        f'(its sequences: {", ".join(ordered)})')
    if len(names) != 1:
        raise SlamError(f'semseg slam maps one sequence at a time; split {args.split} has '
                        f'{", ".join(names)}: choose one with --sequences')
    sequence, frames = names[0], ordered[names[0]]
    camera = _intrinsics(args)
    first_image = cv2.imread(str(args.data_root / frames[0].image))
    if first_image is None:
        raise SlamError(f'{args.data_root / frames[0].image}: cannot read the image')
    if first_image.shape[:2] != (camera.height, camera.width):
        raise SlamError(f'{args.camera_info}: the camera is {camera.width}x{camera.height}, the '
                        f'frames {first_image.shape[1]}x{first_image.shape[0]}')

    vocabulary = _vocabulary(args)
    scorer = KeyframeScorer(config)
    labeller = _KeepingLabeller(offline.FrameLabeller(args, config['class_set']))
    matcher = OrbMatcher(n_features=config['orb_features'])
    with tqdm(total=len(frames), desc='scoring frames', unit='frame', file=sys.stderr) as bar:
        records = offline.score_sequence(args.data_root, frames, scorer, labeller, args.fps, 96,
                                         0.0, bar, (matcher, matcher))
    stamps = [r.stamp_ns / 1e9 for r in records]
    rate = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if stamps[-1] > stamps[0] else args.fps

    args.out.mkdir(parents=True, exist_ok=True)
    settings = camera.write_settings(args.out / 'orbslam3_settings.yaml', rate,
                                     args.orb_features)
    image_paths = [args.data_root / f.image for f in frames]
    with tempfile.TemporaryDirectory(prefix='semseg_slam_masked_') as masked_dir:
        masked_paths = None
        if args.masked:
            masked_paths = _write_masked(image_paths, [labeller.labels[f.image] for f in frames],
                                         scorer, Path(masked_dir))
        total = args.repeats * (2 if args.masked else 1) * (1 + len(SELECTIONS))
        with tqdm(total=total, desc='ORB-SLAM3 runs', unit='run', file=sys.stderr) as bar:
            runner = Runner(args.out, vocabulary, settings, image_paths, stamps, masked_paths,
                            args.settle, bar.update)
            results = _run_methods(runner, records, config, args.repeats, args.masked,
                                   args.match)
    report, summary = _reports(args, command, sequence, records, results, vocabulary, camera,
                               rate, config)
    _write_outputs(args.out, records, results, report, summary)
    return report, summary


def _vocabulary(args: argparse.Namespace) -> Path:
    """Return ``--vocabulary``, ``$PYORBSLAM3_VOCAB``, or a vocabulary built and cached.

    A built one comes from the frames of ``--vocabulary-split`` (the evaluated split's when
    that list is absent).
    """
    split = args.vocabulary_split
    if not (args.data_root / f'{split}.txt').is_file():
        split = args.split
    images = [args.data_root / e.image for e in offline.read_split(args.data_root, split)]
    return vocabulary_for(images, given=args.vocabulary, depth=args.vocabulary_depth,
                          progress=lambda text: print(f'semseg slam: {text}', file=sys.stderr))


def _write_masked(paths: Sequence[Path], labels: Sequence[np.ndarray], scorer: KeyframeScorer,
                  folder: Path) -> List[Path]:
    """Write each frame with its dynamic classes painted out; return the new paths (PNG)."""
    out = []
    for path, label in zip(paths, labels):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        target = folder / (path.stem + '.png')
        cv2.imwrite(str(target), paint_out(image, scorer.dynamic_mask(label)))
        out.append(target)
    return out


def _run_methods(runner: Runner, records, config, repeats: int, masked: bool, match: str
                 ) -> Dict[str, Dict[str, Any]]:
    """Run every method ``repeats`` times: every frame first, then the selections interleaved.

    The selections are made once, from the unmasked run; with ``masked``, the same frames are
    also fed with the dynamic classes painted out (``NAME_masked``).
    """
    results: Dict[str, Dict[str, Any]] = {}
    variants = ('', '_masked') if masked else ('',)
    for suffix in variants:
        everything = Job('all_frames' + suffix, list(range(len(records))), bool(suffix))
        results[everything.name] = {'indices': everything.indices,
                                    'repeats': [runner.run(everything, r)
                                                for r in range(repeats)]}
    runs = results['all_frames']['repeats']
    own = runs[median_repeat(runs)]['keyframe_indices']
    selections, params = _selections(records, config, own, match)
    jobs = [Job(name + suffix, selections[name], bool(suffix))
            for suffix in variants for name in SELECTIONS]
    for job in jobs:
        results[job.name] = {'indices': job.indices, 'repeats': [],
                             'params': params.get(job.name.removesuffix('_masked'))}
    for repeat in range(repeats):  # interleaved: drifts of the machine's load hit all alike
        for job in jobs:
            results[job.name]['repeats'].append(runner.run(job, repeat))
    return results


def _selections(records, config, own: List[int], match: str
                ) -> Tuple[Dict[str, List[int]], Dict[str, Any]]:
    """Return each selection's frame indices, and the parameters that gave them.

    ``match`` 'orbslam': every selection at the count of ORB-SLAM3's own keyframes (``own``),
    the semantic policy's ``min_shared_features`` searched for it; 'policy': the keyframe
    configuration as it is, and the baselines at its count (ORB-SLAM3's own set as it is).
    """
    n = len(records)
    static = PairCache(OrbMatcher(n_features=config['orb_features']),
                       [r.static_features for r in records])
    if match == 'policy':
        policy = KeyframePolicy.from_config(config, overlap=static.inliers)
        decisions = policy.run([r.stamp_ns for r in records], [r.score for r in records],
                               features=range(n))
        semantic = [d.index for d in decisions]
        semantic_params = {'min_shared_features': config['min_shared_features'],
                           'exact': True}
        count = len(semantic)
    else:
        count = max(1, min(len(own), n))
        semantic, semantic_params = offline.matched_policy(config, records, static, count)
    seconds = (records[-1].stamp_ns - records[0].stamp_ns) / 1e9
    interval = max(1, round((n - 1) / seconds)) if seconds > 0 else 1
    max_interval, interval_params = offline.matched_max_interval(
        [r.score for r in records], count, interval, config['novelty_metric'])
    return ({'semantic': semantic, 'uniform': uniform_selection(n, count),
             'max_interval': max_interval, 'orbslam': own},
            {'semantic': semantic_params, 'max_interval': interval_params})


def _method_summary(entry: Dict[str, Any], records) -> Dict[str, Any]:
    repeats = entry['repeats']
    initialised = [r['initialised_at'] for r in repeats]
    summary = {m: summarise([r.get(m) for r in repeats]) for m in MEASURES}
    summary['initialised'] = sum(i is not None for i in initialised)
    summary['initialised_at'] = summarise(initialised)
    summary['fed'] = len(entry['indices'])
    return summary


def _reports(args, command, sequence, records, results, vocabulary, camera, rate, config
             ) -> Tuple[str, Dict[str, Any]]:
    num_classes = KeyframeScorer(config).class_set.num_classes
    methods = {}
    for name, entry in results.items():
        methods[name] = {
            'frames': [Path(records[i].entry.image).name for i in entry['indices']],
            'indices': entry['indices'], 'params': entry.get('params'),
            'repeats': entry['repeats'],
            'summary': _method_summary(entry, records),
            'scores': offline.selection_metrics([(records, entry['indices'])], num_classes)}
    summary = {'command': command, 'data_root': str(args.data_root), 'split': args.split,
               'sequence': sequence, 'frames': len(records), 'rate_hz': rate,
               'labels': args.labels, 'repeats': args.repeats, 'match': args.match,
               'vocabulary': str(vocabulary),
               'camera': camera.camera_info_fields(), 'orb_features': args.orb_features,
               'methods': methods, 'config': config}
    return _markdown(summary), summary


def _cell(stats: Dict[str, Optional[float]], digits: int = 1, scale: float = 1.0) -> str:
    if stats['mean'] is None:
        return '-'
    return (f'{stats["mean"] * scale:.{digits}f} ± {stats["std"] * scale:.{digits}f} '
            f'({stats["min"] * scale:.{digits}f}-{stats["max"] * scale:.{digits}f})')


def _markdown(summary: Dict[str, Any]) -> str:
    lines = [f'# ORB-SLAM3 on keyframe selections: {summary["split"]} {summary["sequence"]}', '',
             f'`{summary["command"]}`', '',
             f'{summary["frames"]} frames at {summary["rate_hz"]:.1f} Hz, fed at that pace; '
             f'{summary["repeats"]} repeats per method (mean ± standard deviation, (min-max)); '
             f'labels: {summary["labels"]}; vocabulary {Path(summary["vocabulary"]).name}. '
             + ("Every selection has the count of ORB-SLAM3's own keyframes (its median "
                'repeat fed every frame).' if summary['match'] == 'orbslam' else
                'The semantic policy as configured; uniform and max interval at its count.'),
             '',
             '| method | frames fed | initialised | init. frame | tracked | localised % | '
             'map keyframes | points/frame | semantic | sharpness | dynamic |',
             '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|']
    for name, entry in summary['methods'].items():
        s, scores = entry['summary'], entry['scores']
        title = TITLES.get(name.removesuffix('_masked'), name)
        if name.endswith('_masked'):
            title += ', dynamic classes painted out'
        lines.append(f'| {title} | {s["fed"]} | {s["initialised"]}/{summary["repeats"]} | '
                     f'{_cell(s["initialised_at"], 0)} | {_cell(s["tracked"])} | '
                     f'{_cell(s["localised"], 1, 100)} | {_cell(s["keyframes"])} | '
                     f'{_cell(s["points"], 0)} | {scores["semantic"]:.3f} | '
                     f'{scores["sharpness"]:.3f} | {scores["dynamic"]:.3f} |')
    lines += ['', 'tracked: frames fed that ORB-SLAM3 tracked (state OK) while mapping; '
              'localised: the fraction of all frames of the sequence tracked afterwards against '
              "that map in localisation-only mode; map keyframes: ORB-SLAM3's keyframes after "
              "mapping; semantic, sharpness, dynamic: the selected frames' mean scores "
              '(`semseg keyframes`).', '']
    return '\n'.join(lines)


def _write_outputs(out: Path, records, results, report: str, summary: Dict[str, Any]) -> None:
    rows = [name for name in results if name != 'all_frames' and not name.endswith('_masked')]
    width = max(len(results[n]['indices']) for n in rows)
    columns = min(width, 12)
    tiles = []
    blank = np.full_like(records[0].thumbnail, 255)
    for name in rows:
        indices = results[name]['indices']
        for j in range(math.ceil(max(len(indices), 1) / columns) * columns):
            if j < len(indices):
                record = records[indices[j]]
                caption = [f'{name if j == 0 else ""}', f'#{indices[j]} {record.entry.frame}']
                tiles.append((record.thumbnail, caption))
            else:
                tiles.append((blank, ['', '']))
    write_png(out / 'contact_sheet.png', offline.contact_sheet(tiles, columns))
    write_text_atomic(out / 'report.json', json.dumps(summary, indent=1) + '\n')
    write_text_atomic(out / 'report.md', report)  # last: a complete report, complete outputs
