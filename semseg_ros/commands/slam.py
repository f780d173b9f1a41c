"""``semseg slam``: a real ORB-SLAM3 (optional ``[slam]`` extra) maps keyframe selections.

``semseg slam --data-root DIR --split val --sequences 0016E5 --out OUT`` runs
:mod:`semseg_ros.slam.evaluate`; ``semseg slam vocabulary --data-root DIR --out FILE`` builds
a DBoW2 ORB vocabulary from a split's frames (:mod:`semseg_ros.slam.vocabulary`).
ORB-SLAM3 and its Python bindings (pyorbslam3) are GPL-3.0: ``pip install '.[slam]'``.
"""

import argparse
from pathlib import Path
import shlex
import sys
import time
from typing import List, Optional

from tqdm import tqdm

from semseg_ros.commands.options import add_label_options, segmenter_config
from semseg_ros.core.resources import config_dir
from semseg_ros.keyframes import offline
from semseg_ros.slam import vocabulary as vocabularies

EXIT_BAD_INPUT = 2
LICENSE_NOTE = ('ORB-SLAM3 runs through pyorbslam3 (GPL-3.0; install: pip install '
                "'.[slam]'); the rest of semseg_ros is Apache-2.0.")


def _sequences(text: str) -> List[str]:
    return [w for w in text.split(',') if w]


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    """Parse the options of the evaluation; the Segmenter they describe is ``args.segmenter``."""
    parser = argparse.ArgumentParser(
        prog='semseg slam', description=__doc__.split('\n')[0], epilog=LICENSE_NOTE +
        ' Example: semseg slam --data-root /data/camvid --split val --sequences 0016E5 '
        '--out slam_val. Vocabulary only: semseg slam vocabulary --help.')
    parser.add_argument('--data-root', type=Path, required=True,
                        help='data set folder holding <split>.txt (CamVid layout)')
    parser.add_argument('--split', default='val', help='split list name (default val)')
    parser.add_argument('--sequences', type=_sequences, default=[],
                        help='the sequence of the split to map (default: the only one)')
    parser.add_argument('--out', type=Path, required=True, help='output folder')
    parser.add_argument('--repeats', type=int, default=5,
                        help='paced ORB-SLAM3 runs per method (default 5): its threads make '
                             'runs differ')
    parser.add_argument('--match', choices=('orbslam', 'policy'), default='orbslam',
                        help="keyframe count: 'orbslam' (default): every selection at the "
                             "count of ORB-SLAM3's own keyframes; 'policy': the keyframe "
                             'configuration as it is, the baselines at its count')
    parser.add_argument('--masked', action='store_true',
                        help='also run every method with the dynamic classes painted out of '
                             'the frames')
    add_label_options(parser)
    parser.add_argument('--fps', type=float, default=30.0,
                        help='frame-number rate for the stamps (default 30, CamVid video; '
                             'frames are fed at the pace of their stamps)')
    parser.add_argument('--config', type=Path,
                        default=config_dir() / 'keyframes_mapping.yaml',
                        help='keyframe configuration YAML of the semantic policy (default: the '
                             'mapping profile, config/keyframes_mapping.yaml; '
                             'config/keyframes.yaml is the place-memory profile)')
    parser.add_argument('--set', metavar='KEY=VALUE', action='append', default=[],
                        help='override one key of the keyframe configuration; repeatable')
    parser.add_argument('--camera-info', type=Path,
                        default=config_dir() / 'camera_info' / 'camvid_480x360.yaml',
                        help='camera calibration YAML (sensor_msgs/CameraInfo fields, as ROS '
                             'camera calibration writes; default: the guessed CamVid pinhole)')
    for name in ('fx', 'fy', 'cx', 'cy'):
        parser.add_argument(f'--{name}', type=float, default=None,
                            help=f"{name} in pixels, instead of the calibration file's")
    parser.add_argument('--orb-features', type=int, default=1000,
                        help="ORB-SLAM3's ORBextractor.nFeatures (default 1000)")
    _add_vocabulary_options(parser)
    parser.add_argument('--vocabulary', type=Path, default=None,
                        help=f'ORB vocabulary (ORBvoc.txt); default ${vocabularies.VOCABULARY_ENV}'
                             ', else one built from --vocabulary-split and cached')
    parser.add_argument('--vocabulary-split', default='train',
                        help='split whose frames build the vocabulary (default train; the '
                             'evaluated split when that list is missing)')
    parser.add_argument('--settle', type=float, default=1.0,
                        help='seconds given to the local mapper after the last frame '
                             '(default 1)')
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f'--repeats must be >= 1, got {args.repeats}')
    if not args.fps > 0:
        parser.error(f'--fps must be positive, got {args.fps}')
    if args.orb_features < 100:
        parser.error(f'--orb-features must be >= 100, got {args.orb_features}')
    args.segmenter = segmenter_config(args)
    return args


def _add_vocabulary_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--vocabulary-depth', type=int, default=vocabularies.DEFAULT_DEPTH,
                        help=f'levels of a built vocabulary (default '
                             f'{vocabularies.DEFAULT_DEPTH}; {vocabularies.MIN_DEPTH} or more: '
                             'ORB-SLAM3 groups features 4 levels up)')


def parse_vocabulary_args(argv: List[str]) -> argparse.Namespace:
    """Parse ``semseg slam vocabulary`` options."""
    parser = argparse.ArgumentParser(
        prog='semseg slam vocabulary',
        description='build a DBoW2 ORB vocabulary (the text format ORB-SLAM2/3 load) from the '
                    'frames of a split: hierarchical k-majority, TF-IDF weights',
        epilog='Example: semseg slam vocabulary --data-root /data/camvid --split train '
               '--out camvid_voc.txt')
    parser.add_argument('--data-root', type=Path, required=True,
                        help='data set folder holding <split>.txt (CamVid layout)')
    parser.add_argument('--split', default='train', help='split list name (default train)')
    parser.add_argument('--out', type=Path, required=True, help='vocabulary file to write')
    _add_vocabulary_options(parser)
    parser.add_argument('--branching', type=int, default=vocabularies.DEFAULT_BRANCHING,
                        help=f'children per node (default {vocabularies.DEFAULT_BRANCHING})')
    parser.add_argument('--features', type=int, default=vocabularies.DEFAULT_FEATURES,
                        help=f'ORB features per frame (default {vocabularies.DEFAULT_FEATURES})')
    return parser.parse_args(argv)


def build_vocabulary(argv: List[str]) -> int:
    """Run ``semseg slam vocabulary``; return 0, or 2 on bad input."""
    args = parse_vocabulary_args(argv)
    started = time.monotonic()
    try:
        entries = offline.read_split(args.data_root, args.split)
        images = [args.data_root / e.image for e in entries]
        with tqdm(total=len(images), desc='ORB features', unit='frame', file=sys.stderr) as bar:
            descriptors = vocabularies.image_descriptors(images, args.features, bar.update)
        with tqdm(desc='clustering', unit='node', file=sys.stderr) as bar:
            tree = vocabularies.build_vocabulary(descriptors, k=args.branching,
                                                 depth=args.vocabulary_depth,
                                                 progress=bar.update)
        vocabularies.write_vocabulary(tree, args.out)
    except (offline.OfflineError, vocabularies.VocabularyError) as error:
        print(f'semseg slam vocabulary: {error}', file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f'{args.out}: {tree.words} words, k={args.branching}, depth {args.vocabulary_depth}, '
          f'from {sum(len(d) for d in descriptors)} ORB descriptors of {len(images)} frames '
          f'({time.monotonic() - started:.0f} s)')
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """Run ``semseg slam`` (or ``semseg slam vocabulary``); return 0, or 2 on bad input."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ['vocabulary']:
        return build_vocabulary(argv[1:])
    args = parse_args(argv)
    try:
        from semseg_ros.slam import evaluate
        from semseg_ros.slam.orbslam3 import version  # fails early, with the install hint
    except ImportError as error:
        print(f'semseg slam: {error}', file=sys.stderr)
        return EXIT_BAD_INPUT
    command = 'semseg slam ' + ' '.join(shlex.quote(str(w)) for w in argv)
    print(f'semseg slam: ORB-SLAM3 through pyorbslam3 {version()} (GPL-3.0)', file=sys.stderr)
    try:
        report, _ = evaluate.run(args, command)
    except evaluate.SlamError as error:
        print(f'semseg slam: {error}', file=sys.stderr)
        return EXIT_BAD_INPUT
    print(report)
    return 0


if __name__ == '__main__':
    sys.exit(main())
