"""``semseg bag``: make, process, evaluate and replay rosbag2 bags.

``make``, ``process`` and ``evaluate`` are offline and need no ROS graph
(:mod:`semseg_ros.bags`); ``replay`` publishes through DDS (:mod:`semseg_ros.live`) and loads
rclpy only when asked for.
"""

import argparse
import os
from pathlib import Path
import sys
from typing import Callable, Dict, List, Optional, Tuple

from semseg_ros.bags.evaluate import (AUTO, DEFAULT_LABELS_TOPIC, DEFAULT_TOPIC,
                                      evaluate_recording, OutputTopics, write_json)
from semseg_ros.bags.make import collect_frames, make_bag
from semseg_ros.bags.messages import ENCODINGS
from semseg_ros.bags.process import process_bag
from semseg_ros.bags.storage import check_distinct, find_topic, FORMATS, IMAGE_TYPES, reading
from semseg_ros.commands.options import add_segmenter_options, segmenter_config
from semseg_ros.core.options import declared_options
from semseg_ros.core.segmenter import Segmenter, SegmenterConfig

# The Segmenter options offered by process and replay.
SEGMENTER_FLAGS = ['model', 'weights', 'class_set', 'backend', 'device', 'size', 'threads',
                   'fp16', 'precision', 'graph_cache']


def add_make_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``semseg bag make``'s options."""
    parser.add_argument('--images', required=True, type=Path,
                        help='folder of images (ordered by the frame numbers in their names) '
                             'or a list file of "image [label]" lines')
    parser.add_argument('--labels', type=Path,
                        help='folder of ground-truth label images (8-bit class ids), one per '
                             'image with the same file stem')
    parser.add_argument('--rate', type=float, required=True, help='frame rate in Hz')
    parser.add_argument('--topic', default=DEFAULT_TOPIC,
                        help=f'image topic (default {DEFAULT_TOPIC}; jpeg/png go on '
                             '<topic>/compressed)')
    parser.add_argument('--labels-topic', default=DEFAULT_LABELS_TOPIC,
                        help=f'ground-truth topic (default {DEFAULT_LABELS_TOPIC})')
    parser.add_argument('--encoding', default='rgb8', choices=ENCODINGS,
                        help='sensor_msgs/Image encoding, or jpeg/png for CompressedImage '
                             '(default rgb8)')
    parser.add_argument('--frame-id', default='camera', help='header frame_id (default camera)')
    parser.add_argument('--start', type=float,
                        help='stamp of the first frame in seconds since the epoch '
                             '(default: now)')
    parser.add_argument('--format', default='mcap', choices=tuple(FORMATS),
                        help='storage format (default mcap)')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing bag')
    parser.add_argument('--out', required=True, type=Path, help='bag folder to create')


def run_make(args: argparse.Namespace) -> int:
    """Run ``semseg bag make`` with parsed arguments; errors propagate to the caller."""
    frames = collect_frames(args.images, args.labels)
    start_ns = None if args.start is None else int(round(args.start * 1e9))
    summary = make_bag(frames, args.out, args.rate, args.topic, args.labels_topic,
                       args.encoding, args.frame_id, start_ns, args.format, args.overwrite)
    topics = ', '.join(f'{t} ({n})' for t, n in summary.topics.items())
    print(f'wrote {summary.path}: {summary.frames} frames at {args.rate:g} Hz '
          f'({summary.duration_s:.2f} s), {args.format}, {summary.size_bytes / 1e6:.1f} MB; '
          f'topics: {topics}')
    return 0


def add_process_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``semseg bag process``'s options to a parser."""
    parser.add_argument('bag', type=Path, help='input bag')
    parser.add_argument('--topic', default='/camera/image_raw',
                        help='image topic (default /camera/image_raw)')
    add_segmenter_options(parser, names=SEGMENTER_FLAGS)
    parser.add_argument('--keyframes', action='store_true',
                        help='also score frames and select keyframes')
    parser.add_argument('--keyframe-config', type=Path,
                        help='keyframe configuration (default: the shipped keyframes.yaml)')
    parser.add_argument('--labels-topic', default=AUTO,
                        help=f'ground-truth topic for mIoU; "auto" (default): '
                             f'{DEFAULT_LABELS_TOPIC} if present; "" for none')
    parser.add_argument('--no-copy-input', dest='copy_input', action='store_false',
                        help='write only the results, not the input topics')
    parser.add_argument('--format', default='mcap', choices=tuple(FORMATS),
                        help='storage format of the output (default mcap)')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing bag')
    parser.add_argument('--report', type=Path, help='also write the figures to this JSON file')
    parser.add_argument('--out', required=True, type=Path, help='bag folder to create')


def run_process(args: argparse.Namespace) -> int:
    """Run ``semseg bag process`` with parsed arguments."""
    check_distinct(args.bag, args.out)  # check the input and output before loading a network
    with reading(args.bag) as reader:
        find_topic(reader, args.topic, IMAGE_TYPES)
    segmenter = Segmenter(segmenter_config(args))
    report = process_bag(args.bag, args.out, segmenter, args.topic, args.labels_topic,
                         args.keyframes, args.keyframe_config, args.copy_input,
                         storage=args.format, overwrite=args.overwrite)
    print(f'wrote {report.output}: {report.frames} frames in {report.seconds:.2f} s = '
          f'{report.fps:.1f} FPS (segmentation {report.segment_ms:.1f} ms/frame)')
    if report.bad_frames:
        print(f'skipped {report.bad_frames} undecodable images (the first: '
              f'{report.first_error})')
    if report.accuracy:
        print(f'mIoU {report.accuracy["miou"]:.3f} over {report.accuracy["frames"]} frames; '
              'per class: ' + ', '.join(
                  f'{name} {"n/a" if iou is None else f"{iou:.3f}"}'
                  for name, iou in report.accuracy['iou'].items()))
    if args.keyframes:
        print(f'{len(report.keyframes)} keyframes at frames '
              + ', '.join(f'{k["index"]} ({k["reason"]})' for k in report.keyframes))
    if args.report:
        write_json(args.report, report.to_dict())
        print(f'figures written to {args.report}')
    return 0


def add_topic_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the camera, output and ground-truth topic options (shared with replay)."""
    defaults = OutputTopics()
    parser.add_argument('--topic', default=DEFAULT_TOPIC,
                        help=f'camera topic (default {DEFAULT_TOPIC})')
    parser.add_argument('--labels-topic', default=AUTO,
                        help='ground-truth label topic; "auto" (default): '
                             f'{DEFAULT_LABELS_TOPIC} if present, "" for none')
    parser.add_argument('--label-mask-topic', default=defaults.label_mask,
                        help=f'segmentation output (default {defaults.label_mask})')
    parser.add_argument('--scores-topic', default=defaults.scores,
                        help=f'keyframe scores (default {defaults.scores})')
    parser.add_argument('--keyframe-topic', default=defaults.keyframe,
                        help=f'keyframe stamps (default {defaults.keyframe})')
    parser.add_argument('--class-set', default='camvid', help='class set (default camvid)')


def topics_from_args(args: argparse.Namespace) -> OutputTopics:
    """Return the OutputTopics named by :func:`add_topic_arguments`' options."""
    return OutputTopics(label_mask=args.label_mask_topic, scores=args.scores_topic,
                        keyframe=args.keyframe_topic)


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``semseg bag evaluate``'s options to a parser."""
    parser.add_argument('recording', type=Path,
                        help="bag with the camera topic and the nodes' outputs (e.g. from "
                             '`semseg bag replay --out` or `ros2 bag record`)')
    add_topic_arguments(parser)
    parser.add_argument('--ground-truth', type=Path,
                        help='the replayed bag, for its ground-truth labels when the '
                             'recording lacks them')
    parser.add_argument('--report', type=Path, help='also write the figures to this JSON file')


def run_evaluate(args: argparse.Namespace) -> int:
    """Run ``semseg bag evaluate`` with parsed arguments."""
    report = evaluate_recording(args.recording, args.topic, topics_from_args(args),
                                args.ground_truth, args.labels_topic, args.class_set)
    print('\n'.join(report.summary_lines()))
    if args.report:
        write_json(args.report, report.to_dict())
        print(f'figures written to {args.report}')
    return 0


def add_replay_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``semseg bag replay``'s options (the replayer, and with it rclpy, loads here)."""
    from semseg_ros.live.bag_replayer import DEFAULT_WAIT_S
    parser.add_argument('bag', type=Path, help='bag to replay')
    add_topic_arguments(parser)
    parser.add_argument('--rate-factor', type=float, default=1.0,
                        help='playback speed, 2 = twice as fast as recorded (default 1)')
    parser.add_argument('--launch-nodes', action=argparse.BooleanOptionalAction, default=True,
                        help='start the segmentation node (and with --keyframes the keyframe '
                             'node) as subprocesses; --no-launch-nodes uses running nodes '
                             '(default: launch)')
    parser.add_argument('--keyframes', action='store_true',
                        help='also start the keyframe node and record its outputs')
    add_segmenter_options(parser, names=[n for n in SEGMENTER_FLAGS if n != 'class_set'])
    parser.add_argument('--out', type=Path,
                        help='keep the recording (inputs and outputs) as this bag')
    parser.add_argument('--format', default='mcap', choices=tuple(FORMATS),
                        help='storage format of the recording (default mcap)')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing bag')
    parser.add_argument('--report', type=Path, help='also write the figures to this JSON file')
    parser.add_argument('--wait', type=float, default=DEFAULT_WAIT_S,
                        help=f'seconds to wait for the nodes (default {DEFAULT_WAIT_S:.0f})')
    parser.add_argument('--log-dir', type=Path, help="keep the launched nodes' logs here")


def launch_options(args: argparse.Namespace) -> Optional[object]:
    """Return the LaunchOptions of the parsed arguments (None with --no-launch-nodes)."""
    from semseg_ros.live.bag_replayer import LaunchOptions
    if not args.launch_nodes:
        return None
    segmenter_config(args).validate()  # a bad model or size fails here, not in a subprocess
    weights = args.weights
    if weights not in ('shipped', 'none'):
        if not Path(weights).is_file():
            raise ValueError(f'weights file not found: {weights}')
        weights = str(Path(weights).resolve())
    config = segmenter_config(args, weights=weights)
    params = {name: getattr(config, name) for name, (default, _)
              in declared_options(SegmenterConfig).items() if getattr(config, name) != default}
    return LaunchOptions(segmentation_params=params, keyframes=args.keyframes,
                         log_dir=args.log_dir)


def run_replay(args: argparse.Namespace) -> int:
    """Run ``semseg bag replay`` with parsed arguments (1 if the live run failed)."""
    from semseg_ros.live.bag_replayer import replay_bag, ReplayError
    if args.launch_nodes:
        # Nodes started here talk to this process only; keep their DDS traffic on loopback.
        os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    try:
        report = replay_bag(args.bag, args.topic, args.out, args.rate_factor,
                            launch_options(args), topics_from_args(args), args.labels_topic,
                            args.class_set, args.format, args.overwrite, args.wait)
    except ReplayError as error:
        print(f'semseg bag replay: {error}', file=sys.stderr)
        return 2 if error.exit_code == 2 else 1  # 2: a node refused its configuration
    print('\n'.join(report.summary_lines()))
    if args.out:
        print(f'recording written to {args.out}')
    if args.report:
        write_json(args.report, report.to_dict())
        print(f'figures written to {args.report}')
    return 0


# Sub-command -> (add its options, run it with parsed arguments, one-line help).
COMMANDS: Dict[str, Tuple[Callable, Callable, str]] = {
    'make': (add_make_arguments, run_make, 'build a bag from an image sequence (and labels)'),
    'process': (add_process_arguments, run_process,
                'segment every frame of a bag offline; masks, keyframes and mIoU'),
    'evaluate': (add_evaluate_arguments, run_evaluate,
                 'latency, drops, FPS and mIoU of a recording of the live nodes'),
    'replay': (add_replay_arguments, run_replay,
               'replay a bag live through the nodes, record and evaluate'),
}


def main(argv: Optional[List[str]] = None) -> int:
    """Run ``semseg bag <command>``; bad input prints one message and returns 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # Only the chosen command adds its options (replay's load rclpy).
    chosen = next((a for a in argv if not a.startswith('-')), None)
    parser = argparse.ArgumentParser(prog='semseg bag',
                                     description='make, process, evaluate and replay rosbag2 '
                                                 'bags')
    commands = parser.add_subparsers(dest='command', metavar='COMMAND')
    commands.required = True
    for name, (add_arguments, _, helptext) in COMMANDS.items():
        sub = commands.add_parser(name, help=helptext, description=helptext)
        if name == chosen:
            add_arguments(sub)
    args = parser.parse_args(argv)
    try:
        return int(COMMANDS[args.command][1](args) or 0)
    except (ValueError, OSError) as error:  # BagError, SequenceError, WeightsError...
        print(f'semseg bag {args.command}: error: {error}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f'semseg bag {args.command}: interrupted; no output was left behind',
              file=sys.stderr)
        return 130


if __name__ == '__main__':
    sys.exit(main())
