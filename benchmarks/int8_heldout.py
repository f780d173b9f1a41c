"""INT8 against fp32 on a sequence that neither the weights nor the calibration saw.

CamVid's val frames share sequence 0016E5 with training, and the shipped calibration frames
come from all three training sequences, so an INT8 loss measured there can hide what happens
on a new street. This script takes weights trained with ``semseg train --holdout SEQ``,
calibrates INT8 graphs on frames of the *other* sequences only (several recipes), and scores
fp32 and each INT8 graph on every frame of the held-out sequence, as the Segmenter runs them
(image resized to the network input, labels back to the frame's size)::

    python benchmarks/int8_heldout.py --weights RUN/last.pt --data-root DATA_ROOT \\
        --split train+val --sequences 0006R0
"""

from pathlib import Path
import sys
import tempfile

import cv2
import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

# The scripts' shared module, importable once the repository root is on the path.
from benchmarks.common import network_parser  # noqa: E402, I100

from semseg_ros.core.backends import InferenceGraph  # noqa: E402
from semseg_ros.core.metrics import ConfusionMatrix  # noqa: E402
from semseg_ros.core.weights import load_weights  # noqa: E402
from semseg_ros.data.datasets import (  # noqa: E402
    build_dataset, parse_sequences, select_sequences)
from semseg_ros.export.deploy import int8_deployable  # noqa: E402
from semseg_ros.export.onnx_export import export_module  # noqa: E402
from semseg_ros.export.quantize import quantize_graph  # noqa: E402
from semseg_ros.models import create_model  # noqa: E402


def parse_args(argv):
    """Parse the command line."""
    parser = network_parser(__doc__.split('\n\n')[0], rounds=0)
    parser.add_argument('--data-root', type=Path, required=True, help='CamVid (SegNet layout)')
    parser.add_argument('--split', default='train+val', help='split(s) holding the frames')
    parser.add_argument('--sequences', required=True,
                        help='held-out sequence(s) to score (never seen by the weights)')
    parser.add_argument('--calibration-counts', default='16,64',
                        help='numbers of calibration frames to try, from the other sequences')
    return parser.parse_args(argv)


def frames(dataset):
    """Yield (RGB image, label) of every pair."""
    for index in range(len(dataset)):
        yield dataset.load_pair(index)


def evenly(items, count):
    """Return ``count`` items spread evenly over ``items`` (all when fewer)."""
    if count >= len(items):
        return list(items)
    return [items[int(i * len(items) / count)] for i in range(count)]


def score(session, dataset, size, num_classes, ignore_index):
    """Return (mIoU, labels per frame) of an ONNX Runtime session over the dataset."""
    matrix = ConfusionMatrix(num_classes, ignore_index)
    outputs = []
    for image, label in frames(dataset):
        batch = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)[None]
        labels = session.run(['labels'], {'image': batch})[0][0]
        labels = cv2.resize(labels, (label.shape[1], label.shape[0]),
                            interpolation=cv2.INTER_NEAREST)
        matrix.update(labels, label)
        outputs.append(labels)
    return matrix.as_dict()['miou'], outputs


def main(argv=None) -> int:
    """Build the graphs, score them, print a table."""
    import onnxruntime as ort
    args = parse_args(argv)
    width, height = args.size
    held_out = parse_sequences(args.sequences)
    scored = select_sequences(build_dataset('camvid', args.data_root, args.split),
                              include=held_out)
    others = select_sequences(build_dataset('camvid', args.data_root, args.split),
                              exclude=held_out)
    network = create_model(args.model, scored.num_classes)
    load_weights(network, args.weights, args.model, scored.num_classes)
    network.eval()
    example = torch.zeros(1, height, width, 3, dtype=torch.uint8)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    with tempfile.TemporaryDirectory(prefix='int8_heldout_') as work:
        work = Path(work)
        fp32 = export_module(InferenceGraph(network).eval(), (example,), work / 'fp32.onnx',
                             ['image'], ['labels'])
        rewritten = export_module(InferenceGraph(int8_deployable(network, width, height)).eval(),
                                  (example,), work / 'rewritten.onnx', ['image'], ['labels'])
        variants = [('fp32', fp32)]
        for count in (int(c) for c in args.calibration_counts.split(',')):
            pairs = evenly(list(range(len(others))), count)
            batches = [cv2.resize(others.load_pair(i)[0], (width, height),
                                  interpolation=cv2.INTER_LINEAR)[None] for i in pairs]
            for logit_range in (True, False):
                name = f'int8, {len(batches)} frames, ' + \
                    ('logit range' if logit_range else 'full logit range')
                path = work / f'int8_{count}_{int(logit_range)}.onnx'
                quantize_graph(rewritten, path, width, height, {}, batches=batches,
                               logit_range=logit_range)
                variants.append((name, path))
        print(f'{args.model} {width}x{height}, weights {args.weights}; scored on '
              f'{scored.name} ({len(scored)} frames), calibrated on {others.name}')
        print('| graph | mIoU | change vs fp32 | pixel agreement with fp32 |')
        print('|---|---|---|---|')
        reference = None
        for name, path in variants:
            session = ort.InferenceSession(str(path), options,
                                           providers=['CPUExecutionProvider'])
            miou, labels = score(session, scored, (width, height), scored.num_classes,
                                 scored.ignore_index)
            if reference is None:
                reference = (miou, labels)
            agreement = np.mean([np.mean(a == b) for a, b in zip(labels, reference[1])])
            print(f'| {name} | {100 * miou:.2f} | {100 * (miou - reference[0]):+.2f} | '
                  f'{100 * agreement:.2f} % |', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
