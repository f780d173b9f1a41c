"""``semseg segment``: segment image files to label, colour and overlay PNGs."""

import argparse
from pathlib import Path
import sys
from typing import List, Optional

import cv2

from semseg_ros.commands.options import add_segmenter_options, segmenter_config
from semseg_ros.core.classes import colorize, overlay
from semseg_ros.core.files import write_png
from semseg_ros.core.segmenter import Segmenter


def main(argv: Optional[List[str]] = None) -> int:
    """Run ``semseg segment``."""
    parser = argparse.ArgumentParser(prog='semseg segment', description=__doc__.split('\n')[0])
    parser.add_argument('images', nargs='+', type=Path, help='image files (PNG, JPEG...)')
    add_segmenter_options(parser)
    parser.add_argument('--alpha', type=float, default=0.5, help='overlay alpha (default 0.5)')
    parser.add_argument('--out', type=Path, default=Path('segment_out'),
                        help='output folder (default segment_out/)')
    args = parser.parse_args(argv)
    if not 0.0 <= args.alpha <= 1.0:
        parser.error(f'--alpha must be in [0, 1], got {args.alpha}')
    try:
        segmenter = Segmenter(segmenter_config(args))
    except (ValueError, FileNotFoundError) as error:
        print(f'semseg segment: {error}', file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    failures = 0
    for path in args.images:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            print(f'semseg segment: {path}: cannot read as an image (missing file or not an '
                  'image format OpenCV reads)', file=sys.stderr)
            failures += 1
            continue
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        result = segmenter.segment(rgb)
        colors = colorize(result.labels, segmenter.class_set)
        write_png(args.out / f'{path.stem}_labels.png', result.labels)
        write_png(args.out / f'{path.stem}_color.png', colors)
        write_png(args.out / f'{path.stem}_overlay.png', overlay(rgb, colors, args.alpha))
        timing = ', '.join(f'{k} {v:.1f} ms' for k, v in result.timings_ms.items())
        print(f'{path} -> {args.out}/{path.stem}_{{labels,color,overlay}}.png ({timing})')
    return 2 if failures else 0
