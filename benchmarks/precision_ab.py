"""fp32 against int8 on the CPU: interleaved latency, and labels/mIoU on CamVid val.

Latency: every variant (ONNX Runtime fp32 and int8 at 1 and 2 threads, eager PyTorch at
1 thread) is built in this one process, then they run in turn, in alternating order each
round, so a background load (another job on the cores) hits them alike; the table gives
medians of the network call (uint8 image to labels). Accuracy (``--data-root``): every val
frame through fp32 and int8 ``segment()`` at the same input size, pixel agreement and the
mIoU of each against the ground truth::

    python benchmarks/precision_ab.py --weights runs/mininet_v2_cpu/best.pt \\
        --data-root /path/to/camvid
    python benchmarks/precision_ab.py --model enet --size 480x360 --weights none --rounds 20
"""

import os
from pathlib import Path
import sys
import time

import cv2
import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

# The scripts' shared module, importable once the repository root is on the path.
from benchmarks.common import network_parser  # noqa: E402, I100

from semseg_ros.core.segmenter import Segmenter, SegmenterConfig  # noqa: E402


def parse_args(argv):
    """Parse the command line."""
    parser = network_parser(__doc__.split('\n\n')[0], rounds=60)
    parser.add_argument('--data-root', type=Path,
                        help='CamVid (SegNet layout) folder: also compare on its val split')
    return parser.parse_args(argv)


def build_variants(args):
    """Return ``[(name, run)]``: ONNX Runtime fp32/int8 at 1 and 2 threads, eager PyTorch."""
    def segmenter(**kwargs):
        return Segmenter(SegmenterConfig(model=args.model, weights=args.weights,
                                         input_width=args.size[0], input_height=args.size[1],
                                         **kwargs))
    variants = []
    for threads in (1, 2):
        for precision in ('fp32', 'int8'):
            backend = segmenter(precision=precision, threads=threads).backend
            plural = 's' if threads > 1 else ''
            variants.append((f'onnxruntime {precision}, {threads} thread{plural}', backend.run))
    eager = segmenter(backend='torch', threads=1).backend  # sets torch's threads to 1
    variants.append(('eager PyTorch, 1 thread', eager.run))
    return variants


def interleaved_latency(variants, batch, rounds):
    """Return ``{name: [ms, ...]}`` from alternating rounds of two runs per variant."""
    for _, run in variants:
        for _ in range(3):
            run(batch)
    times = {name: [] for name, _ in variants}
    for index in range(rounds):
        for name, run in (variants if index % 2 == 0 else variants[::-1]):
            for _ in range(2):
                start = time.perf_counter()
                run(batch)
                times[name].append(1e3 * (time.perf_counter() - start))
    return times


def compare_on_val(args):
    """Print fp32 and int8 mIoU on CamVid val and their pixel agreement."""
    from semseg_ros.core.metrics import ConfusionMatrix
    from semseg_ros.data.datasets import camvid_pairs, read_image, read_label
    segmenters = {p: Segmenter(SegmenterConfig(
        model=args.model, weights=args.weights, input_width=args.size[0],
        input_height=args.size[1], precision=p, threads=1)) for p in ('fp32', 'int8')}
    classes = segmenters['fp32'].class_set
    matrices = {p: ConfusionMatrix(classes.num_classes, classes.ignore_index)
                for p in segmenters}
    agreements = []
    pairs = camvid_pairs(args.data_root, 'val')
    for image_path, label_path in pairs:
        rgb, truth = read_image(image_path), read_label(label_path)
        labels = {p: s.segment(rgb).labels for p, s in segmenters.items()}
        for precision, matrix in matrices.items():
            matrix.update(labels[precision], truth)
        agreements.append(np.mean(labels['fp32'] == labels['int8']))
    fp32, int8 = (100 * matrices[p].miou() for p in ('fp32', 'int8'))
    print(f'\nCamVid val, {len(pairs)} frames at {args.size[0]}x{args.size[1]}: '
          f'mIoU fp32 {fp32:.2f}, int8 {int8:.2f} ({int8 - fp32:+.2f} points); '
          f'labels agree on {100 * np.mean(agreements):.2f}% of pixels '
          f'(worst frame {100 * np.min(agreements):.2f}%)')


def main(argv=None):
    """Run the comparison; print a Markdown table."""
    args = parse_args(argv)
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (args.size[1], args.size[0], 3), dtype=np.uint8)
    if args.data_root is not None:
        from semseg_ros.data.datasets import camvid_pairs, read_image
        frame = cv2.resize(read_image(camvid_pairs(args.data_root, 'val')[0][0]), args.size,
                           interpolation=cv2.INTER_LINEAR)
    variants = build_variants(args)
    times = interleaved_latency(variants, np.ascontiguousarray(frame)[None], args.rounds)
    reference = np.median(times[variants[0][0]])
    eager = np.median(times[variants[-1][0]])
    print(f'{args.model} {args.size[0]}x{args.size[1]}, {2 * args.rounds} runs per variant, '
          f'load average {os.getloadavg()[0]:.1f}')
    print('| variant | median ms | p10 | p90 | vs fp32 1 thread | speed-up vs eager |')
    print('|---|---|---|---|---|---|')
    for name, _ in variants:
        ms = np.asarray(times[name])
        median = np.median(ms)
        print(f'| {name} | {median:.2f} | {np.percentile(ms, 10):.2f} | '
              f'{np.percentile(ms, 90):.2f} | {median / reference:.3f} | '
              f'{eager / median:.2f}x |')
    if args.data_root is not None:
        compare_on_val(args)
    return 0


if __name__ == '__main__':
    sys.exit(main())
