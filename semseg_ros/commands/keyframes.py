"""``semseg keyframes``: select keyframes offline over image sequences and compare with baselines.

The work is :mod:`semseg_ros.keyframes.offline`; this parses the options and prints the report.
"""

import argparse
from pathlib import Path
import shlex
import sys
from typing import List, Optional

from semseg_ros.commands.options import add_label_options, segmenter_config
from semseg_ros.keyframes import offline


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    """Parse the options; the Segmenter they describe is ``args.segmenter``."""
    parser = argparse.ArgumentParser(
        prog='semseg keyframes', description=__doc__.split('\n')[0],
        epilog='Example: semseg keyframes --data-root /data/camvid --split val '
               '--labels ground-truth --out kf_val')
    parser.add_argument('--data-root', type=Path, required=True,
                        help='data set folder holding <split>.txt (CamVid layout)')
    parser.add_argument('--split', default='val', help='split list name (default val)')
    add_label_options(parser, ' (checks the selection itself)')
    parser.add_argument('--every', type=int, default=1,
                        help='use every K-th frame of each sequence (default 1)')
    parser.add_argument('--max-frames', type=int, default=None,
                        help='use at most N frames in all (default: every frame)')
    parser.add_argument('--fps', type=float, default=30.0,
                        help='frame-number rate for the stamps (default 30, CamVid video)')
    parser.add_argument('--config', type=Path, default=None,
                        help='keyframe configuration YAML (default: the shipped '
                             'config/keyframes.yaml)')
    parser.add_argument('--set', metavar='KEY=VALUE', action='append', default=[],
                        help='override one key of the keyframe configuration (YAML value), '
                             'e.g. --set min_gap_frames=2; repeatable')
    parser.add_argument('--sheet-overlay', type=float, default=0.0,
                        help='colour-mask weight on the contact sheet thumbnails (0 = none)')
    parser.add_argument('--sequences', type=lambda t: [w for w in t.split(',') if w],
                        default=[], help='comma-separated sequences of the split to use '
                        '(default: all)')
    parser.add_argument('--min-inliers', type=int, default=50,
                        help='downstream: verified ORB inliers for two frames to match '
                             "(default 50, ORB-SLAM2's relocalisation minimum)")
    parser.add_argument('--orb-features', type=int, default=1000,
                        help='downstream: ORB features per frame (default 1000)')
    parser.add_argument('--neighbours', type=int, default=2,
                        help='downstream: nearest keyframes a frame is tried against '
                             '(default 2)')
    parser.add_argument('--sweep', type=lambda t: [int(w) for w in t.split(',') if w],
                        default=list(offline.DEFAULT_SWEEP),
                        help='min_shared_features values for the recall-against-keyframes '
                             'curve (default ' + ','.join(map(str, offline.DEFAULT_SWEEP))
                             + '; empty: none)')
    parser.add_argument('--out', type=Path, required=True, help='output folder')
    args = parser.parse_args(argv)
    for name in ('min_inliers', 'orb_features', 'neighbours'):
        if getattr(args, name) < (8 if name == 'orb_features' else 1):
            parser.error(f'--{name.replace("_", "-")} is too small: {getattr(args, name)}')
    if any(v < 1 for v in args.sweep):
        parser.error(f'--sweep values must be >= 1, got {args.sweep}')
    if args.every < 1:
        parser.error(f'--every must be >= 1, got {args.every}')
    if args.max_frames is not None and args.max_frames < 1:
        parser.error(f'--max-frames must be >= 1, got {args.max_frames}')
    if not args.fps > 0:
        parser.error(f'--fps must be positive, got {args.fps}')
    if not 0.0 <= args.sheet_overlay <= 1.0:
        parser.error(f'--sheet-overlay must be in [0, 1], got {args.sheet_overlay}')
    args.segmenter = segmenter_config(args)
    return args


def main(argv: Optional[List[str]] = None) -> int:
    """Run ``semseg keyframes``; return 0, or 2 on bad input (message on stderr)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    command = 'semseg keyframes ' + ' '.join(shlex.quote(str(w)) for w in argv)
    try:
        report, _ = offline.run(args, command)
    except offline.OfflineError as error:
        print(f'semseg keyframes: {error}', file=sys.stderr)
        return offline.EXIT_BAD_INPUT
    print(report)
    return 0


if __name__ == '__main__':
    sys.exit(main())
