"""``make demo``: the bundled CamVid sequence, live through the nodes, into ``demo_out/``.

1. The 48 bundled frames of CamVid val sequence 0016E5 (15 Hz, with ground truth; see
   ``semseg_ros/data/samples/camvid_0016E5/README.md``) become a rosbag2 bag.
2. The bag is replayed in real time through the segmentation node (mininet_v2_cpu with the
   shipped CamVid weights) and the keyframe node, both started as subprocesses talking DDS;
   what they publish is recorded.
3. ``demo_out/`` gets: ``demo.gif`` (image | colour mask | overlay; ``demo.png``: one frame
   at full resolution), ``keyframes.png`` (the keyframe contact sheet), ``replay_bag/`` (the
   recording: camera, masks, scores, keyframes), ``input_bag/``, ``report.md`` and
   ``report.json`` (latency, FPS, drops, mIoU, keyframe list), and ``logs/``.

``--frames N`` runs a shorter sequence (CI uses 8).
"""

import argparse
import os
from pathlib import Path
import sys
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np

from semseg_ros.bags.evaluate import LiveReport, OutputTopics, write_json
from semseg_ros.bags.make import collect_frames, make_bag
from semseg_ros.bags.messages import image_stream, label_stream
from semseg_ros.commands.options import add_segmenter_options
from semseg_ros.core.bench import machine_description
from semseg_ros.core.classes import colorize, load_class_set, overlay
from semseg_ros.core.files import write_png
from semseg_ros.core.resources import samples_dir, shipped_weights
from semseg_ros.keyframes.offline import contact_sheet

SAMPLE = samples_dir() / 'camvid_0016E5'
TOPIC = '/camera/image_raw'
RATE_HZ = 15.0
UNTRAINED_WARNING = (
    'WARNING: no shipped weights for {model} ({path}); the demo runs the UNTRAINED network, so '
    'its masks are noise and its mIoU is meaningless. Train them with `semseg train` (they '
    'ship with the release).')


def _banner(text: str) -> None:
    line = '!' * 78
    print(f'\n{line}\n{text}\n{line}\n', file=sys.stderr, flush=True)


def _resize(image: np.ndarray, width: int) -> np.ndarray:
    height = int(round(image.shape[0] * width / image.shape[1]))
    interpolation = cv2.INTER_AREA if image.ndim == 3 else cv2.INTER_NEAREST
    return cv2.resize(image, (width, height), interpolation=interpolation)


def gif_frames(input_bag: Path, recording: Path, topics: OutputTopics, class_set,
               panel_width: int = 200) -> List[np.ndarray]:
    """Return image | colour mask | overlay strips for every frame with a label mask.

    Frames the node dropped (no mask) are left out: the animation shows what it produced.
    """
    masks = dict(label_stream(recording, topics.label_mask))
    strips = []
    for index, (stamp, rgb) in enumerate(image_stream(input_bag, TOPIC)):
        labels = masks.get(stamp)
        if labels is None:
            continue
        image = _resize(rgb, panel_width)
        colors = colorize(_resize(labels, panel_width), class_set)
        blend = overlay(image, colors, 0.5)
        cv2.putText(image, f'frame {index}', (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    (255, 255, 255), 1, cv2.LINE_AA)
        strips.append(np.hstack([image, colors, blend]))
    return strips


def write_gif(path: Path, frames: Sequence[np.ndarray], fps: float) -> None:
    """Write an endlessly looping GIF atomically (temporary name, then rename)."""
    import imageio.v2 as imageio  # only the demo needs it
    tmp = path.with_name(f'.{path.name}.partial.gif')
    imageio.mimsave(tmp, list(frames), duration=1000.0 / fps, loop=0)
    tmp.replace(path)


def keyframe_sheet(input_bag: Path, keyframes: Sequence[Dict[str, object]],
                   names: Sequence[str]) -> np.ndarray:
    """Return the contact sheet of the keyframes (thumbnail, frame, file, score)."""
    wanted = {k['stamp_ns']: k for k in keyframes}
    tiles = []
    for index, (stamp, rgb) in enumerate(image_stream(input_bag, TOPIC)):
        if stamp in wanted:
            total = wanted[stamp]['total']
            caption = [f'frame {index}: {names[index] if index < len(names) else ""}',
                       'score ' + ('n/a' if total is None else f'{total:.3f}')]
            tiles.append((_resize(rgb, 200), caption))
    return contact_sheet(tiles, columns=4)


def _fmt(value, digits: int = 1, unit: str = '') -> str:
    return 'n/a' if value is None else f'{value:.{digits}f}{unit}'


def _runtime(report: LiveReport) -> str:
    """Return ' on <backend> [<providers>]' as the segmentation node reported it, or ''."""
    runtime = report.info.get('runtimes', {}).get('segmentation_node', {})
    if 'backend' not in runtime:
        return ''
    return f' on {runtime["backend"]} [{runtime.get("providers", "?")}]'


def markdown_report(report: LiveReport, model: str, weights: str, warning: Optional[str],
                    names: Sequence[str]) -> str:
    """Return report.md: the figures of the live run and the keyframe list."""
    latency = report.latency
    lines = ['# semseg_ros demo: CamVid 0016E5 replayed live through the nodes', '']
    if warning:
        lines += [f'> **{warning}**', '']
    lines += [
        f'{report.frames_published} frames of CamVid val sequence 0016E5 published at '
        f'{_fmt(report.input_fps)} Hz into the segmentation node ({model}{_runtime(report)}, '
        f'weights: {weights}) and the keyframe node, each in its own process, over DDS, on '
        f'{report.info.get("machine", "this machine")}.', '',
        '| figure | value |', '|---|---|',
        f'| frames published / processed / dropped | {report.frames_published} / '
        f'{report.frames_processed} / {report.frames_dropped} |',
        f'| achieved FPS | {_fmt(report.achieved_fps)} |',
        f'| latency image -> label mask, median | {_fmt(latency.get("median_ms"))} ms |',
        f'| latency image -> label mask, p95 | {_fmt(latency.get("p95_ms"))} ms |',
    ]
    scores = report.latency_by_topic.get(OutputTopics().scores)
    if scores and scores.get('count'):
        lines.append(f'| latency image -> keyframe score, median | '
                     f'{_fmt(scores["median_ms"])} ms |')
    accuracy = report.accuracy
    if accuracy:
        lines.append(f'| mIoU ({accuracy["frames"]} processed frames with ground truth) | '
                     f'{accuracy["miou"]:.3f} |')
    lost = {t: n for t, n in report.outputs_lost.items() if n}
    if lost:
        lines.append('| outputs lost in transport | '
                     + ', '.join(f'{t}: {n}' for t, n in lost.items()) + ' |')
    if accuracy:
        lines += ['', '## Per-class IoU', '', '| class | IoU |', '|---|---|']
        lines += [f'| {name} | {_fmt(iou, 3)} |' for name, iou in accuracy['iou'].items()]
    lines += ['', f'## Keyframes ({len(report.keyframes)} of {report.scored_frames} scored '
              'frames)', '', '| frame | file | stamp (s) | score | decided after (ms) |',
              '|---|---|---|---|---|']
    for keyframe in report.keyframes:
        index = keyframe['index']
        name = names[index] if index is not None and index < len(names) else '?'
        lines.append(f'| {index} | {name} | {keyframe["stamp_ns"] / 1e9:.3f} | '
                     f'{_fmt(keyframe["total"], 3)} | {_fmt(keyframe["decided_after_ms"], 0)} |')
    lines += ['', '## Files', '',
              '- `demo.gif`: image | colour mask | overlay of every processed frame',
              '- `demo.png`: the same for one frame at full resolution',
              '- `keyframes.png`: contact sheet of the keyframes',
              "- `replay_bag/`: the recording (camera as published, the nodes' outputs as "
              'received); open it in Foxglove or `ros2 bag info`',
              '- `input_bag/`: the bag that was replayed (images and ground truth)',
              "- `report.json`: every figure; `logs/`: the nodes' output", '']
    return '\n'.join(lines)


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    """Parse the demo's options."""
    parser = argparse.ArgumentParser(prog='semseg demo',
                                     description=__doc__.split('\n')[0])
    parser.add_argument('--out', type=Path, default=Path('demo_out'),
                        help='output folder (default demo_out/)')
    parser.add_argument('--frames', type=int, default=0,
                        help='use only the first N frames (default: all 48)')
    # One inference thread leaves the second core of a small machine to the replayer, the
    # keyframe node and DDS: measured on 2 busy cores, 7.3 FPS against 4.3 with two threads.
    add_segmenter_options(parser, names=['model', 'threads', 'precision'],
                          defaults={'threads': 1, 'precision': None},
                          helps={'threads': 'Those of the segmentation node here.',
                                 'precision': 'None: int8 for mininet_v2_cpu, as '
                                              'config/cpu_robot.yaml runs it; fp32 for the '
                                              'others.'})
    parser.add_argument('--rate-factor', type=float, default=1.0,
                        help='replay speed (default 1: real time, 15 Hz)')
    args = parser.parse_args(argv)
    if args.frames < 0:
        parser.error(f'--frames must be >= 0, got {args.frames}')
    if args.precision is None:
        args.precision = 'int8' if args.model == 'mininet_v2_cpu' else 'fp32'
    return args


def main(argv: Optional[List[str]] = None) -> int:
    """Run the demo; return 0, or 2 on bad options, 1 if the live run failed."""
    args = parse_args(argv)
    # Everything runs on this machine: keep DDS on loopback and logs in the output folder.
    out = args.out.resolve()
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    os.environ.setdefault('ROS_LOG_DIR', str(out / 'logs' / 'ros'))
    from semseg_ros.live.bag_replayer import LaunchOptions, replay_bag, ReplayError

    weights, warning = 'shipped', None
    if not shipped_weights(args.model).is_file():
        weights = 'none'
        warning = UNTRAINED_WARNING.format(model=args.model, path=shipped_weights(args.model))
        _banner(warning)
    frames = collect_frames(SAMPLE / 'images', SAMPLE / 'labels')
    frames = frames[:args.frames] if args.frames else frames
    names = [f.image.name for f in frames]
    out.mkdir(parents=True, exist_ok=True)
    input_bag, recording = out / 'input_bag', out / 'replay_bag'
    print(f'[1/4] {len(frames)} frames of CamVid 0016E5 -> {input_bag}', flush=True)
    make_bag(frames, input_bag, RATE_HZ, TOPIC, overwrite=True)
    print(f'[2/4] replaying live through segmentation_node ({args.model}) and keyframe_node',
          flush=True)
    params = {'model': args.model, 'weights': weights, 'threads': args.threads,
              'precision': args.precision}
    try:
        report = replay_bag(input_bag, TOPIC, recording, args.rate_factor,
                            LaunchOptions(segmentation_params=params, keyframes=True,
                                          log_dir=out / 'logs'),
                            overwrite=True)
    except ReplayError as error:
        print(f'demo: the live replay failed: {error}', file=sys.stderr)
        return 1
    report.info.update(model=args.model, weights=weights, precision=args.precision,
                       untrained_warning=warning, machine=machine_description())
    print('\n'.join(report.summary_lines()), flush=True)
    print('[3/4] rendering demo.gif and keyframes.png', flush=True)
    class_set = load_class_set('camvid')
    topics = OutputTopics()
    write_gif(out / 'demo.gif', gif_frames(input_bag, recording, topics, class_set), RATE_HZ)
    # One full-resolution strip (the middle processed frame) for documents.
    strips = gif_frames(input_bag, recording, topics, class_set, panel_width=480)
    if strips:
        write_png(out / 'demo.png', strips[len(strips) // 2])
    write_png(out / 'keyframes.png', keyframe_sheet(input_bag, report.keyframes, names))
    print('[4/4] writing report.md and report.json', flush=True)
    write_json(out / 'report.json', report.to_dict())
    tmp = out / '.report.md.partial'
    tmp.write_text(markdown_report(report, f'{args.model}, {args.precision}', weights, warning,
                                   names))
    tmp.replace(out / 'report.md')
    if warning:
        _banner(warning)
    print(f'\nDone. Look at {out}/: report.md (figures), demo.gif, keyframes.png, '
          f'replay_bag/ (ros2 bag info / Foxglove).')
    return 0


if __name__ == '__main__':
    sys.exit(main())
