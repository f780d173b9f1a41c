"""``semseg bench``: the networks alone, or with ``--node`` the segmentation node end to end.

Without ``--node`` this is :mod:`semseg_ros.core.bench` (parameters, GMACs, latency, FPS of
each network). With ``--node`` it starts the segmentation node as a process, publishes camera
frames to it and reports publish-to-label-mask latency next to the Segmenter alone
(:mod:`semseg_ros.live.node_bench`)::

    semseg bench --model mininet_v2_cpu --backend all --precision all
    semseg bench --node --model mininet_v2_cpu --frames 200 --json node.json
"""

import argparse
import json
import os
from pathlib import Path
import sys
from typing import List, Optional

from semseg_ros.commands.options import add_segmenter_options, segmenter_config
from semseg_ros.core import bench
from semseg_ros.core.backends import (available_backends, BACKENDS, INT8_BACKENDS,
                                      ONNX_BACKENDS, PRECISIONS)
from semseg_ros.core.files import write_text_atomic
from semseg_ros.core.sizes import parse_size
from semseg_ros.models import check_input_size, list_models


INT8_ONLY = f'--precision int8 runs on the {" or ".join(ONNX_BACKENDS)} backend only'


def build_node_parser() -> argparse.ArgumentParser:
    """Return the parser of ``semseg bench --node``."""
    parser = argparse.ArgumentParser(
        prog='semseg bench',
        description='Time the segmentation node end to end (publish -> label mask) and the '
                    'Segmenter alone in turns, on the same frame and configuration, after the '
                    'transport floor (an echo node that does no work).')
    parser.add_argument('--node', action='store_true', required=True,
                        help='measure the node (this mode)')
    add_segmenter_options(parser, names=['model', 'weights', 'backend', 'precision', 'size',
                                         'threads'], defaults={'size': None},
                          helps={'weights': "('none': untrained, the same speed)"})
    parser.add_argument('--camera', type=parse_size, default=(640, 480),
                        help='camera frame WxH, rgb8 (default 640x480)')
    parser.add_argument('--image', type=Path,
                        help='an image to publish (resized to --camera); default: a gradient')
    parser.add_argument('--rate', type=float, default=0.0,
                        help='frames per second (default 0: one every three Segmenter '
                             'medians, so the node is not saturated)')
    parser.add_argument('--frames', type=int, default=200, help='frames to publish')
    parser.add_argument('--warmup', type=int, default=20, help='leading frames not counted')
    parser.add_argument('--reliable', action='store_true',
                        help='reliable camera and subscription (default: best effort, as '
                             "camera drivers publish, over the package's Fast DDS profile)")
    parser.add_argument('--json', type=Path, help='also write every figure to this JSON file')
    return parser


def _read_image(path: Path, size):
    import cv2
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f'{path}: not a readable image')
    return cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), size, interpolation=cv2.INTER_AREA)


def node_main(argv: List[str]) -> int:
    """Run ``semseg bench --node``; return the exit code."""
    parser = build_node_parser()
    args = parser.parse_args(argv)
    if args.frames <= args.warmup or args.warmup < 0 or args.rate < 0:
        parser.error('--frames must exceed --warmup; --warmup and --rate must not be negative')
    if args.precision == 'int8' and args.backend not in INT8_BACKENDS:
        parser.error(INT8_ONLY)
    width, height = args.size or bench.DEFAULT_SIZES.get(args.model, (512, 256))
    try:
        check_input_size(args.model, width, height)
        frame = _read_image(args.image, args.camera) if args.image else None
    except ValueError as error:
        parser.error(str(error))
    # One process on loopback unless the user says otherwise (ROS 2's defaults would
    # discover, and be disturbed by, every robot on the network).
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    from semseg_ros.live.node_bench import NodeBenchConfig, run
    config = NodeBenchConfig(
        segmenter_config(args, input_width=width, input_height=height),
        camera_width=args.camera[0], camera_height=args.camera[1], rate_hz=args.rate,
        frames=args.frames, warmup=args.warmup, reliable=args.reliable)
    machine = bench.machine_description()
    print(f'machine: {machine}', flush=True)
    try:
        record = run(config, frame, report=lambda line: print(line, flush=True))
    except (RuntimeError, ValueError, OSError) as error:
        print(f'semseg bench --node: {error}', file=sys.stderr)
        return 1
    node, segmenter = record['node'], record['segmenter']
    if node['median_ms'] is None:
        print('semseg bench --node: no label mask arrived from the node', file=sys.stderr)
        return 1
    print(f'Segmenter alone   median {segmenter["median_ms"]:.2f} ms   '
          f'p95 {segmenter["p95_ms"]:.2f} ms (here, between the node\'s frames; back to '
          f'back: median {record["segmenter_back_to_back"]["median_ms"]:.2f} ms)')
    print(f'node end-to-end   median {node["median_ms"]:.2f} ms   p95 {node["p95_ms"]:.2f} ms')
    print(f'node served {node["served"]}/{node["counted"]} counted frames '
          f'({node["counted"] - node["served"]} dropped or lost), '
          f'{node["published_hz"]:.1f} Hz published')
    if node['node_counts']:
        print('node counts: ' + ', '.join(f'{k} {v}' for k, v in node['node_counts'].items()))
    if node['stages_ms']:
        print('node stages, median ms: ' + ', '.join(
            f'{stage} {ms:.2f}' for stage, ms in node['stages_ms'].items()))
    floor = record['transport_over_segmenter']
    print(f'end-to-end / Segmenter median: {record["node_over_segmenter"]:.2f}x' + (
        f' (of which the transport floor: +{floor:.2f}x)' if floor is not None else ''))
    if args.json:
        write_text_atomic(args.json, json.dumps(dict(record, machine=machine), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of ``semseg bench`` (the networks)."""
    parser = argparse.ArgumentParser(
        prog='semseg bench', description='Measure parameters, GMACs, latency, FPS, peak '
        'memory and the speed-up over the eager PyTorch path of the networks: each (model, '
        'backend, precision) in a process of its own, the variants of a model timed in '
        'interleaved rounds.',
        epilog='semseg bench --node --help: the segmentation node end to end instead')
    add_segmenter_options(
        parser, names=['model', 'backend', 'precision', 'size', 'threads', 'weights', 'device',
                       'fp16'],
        defaults={'model': 'all', 'size': None, 'weights': 'auto'},
        extra_choices={'model': ('all',), 'backend': ('all',), 'precision': ('all',)},
        helps={'precision': f'int8 runs on {" and ".join(ONNX_BACKENDS)} only.',
               'weights': "'auto': shipped if present, else untrained."})
    parser.add_argument('--runs', type=int, default=50,
                        help=f'timed runs per variant, in rounds of {bench.RUNS_PER_TURN} '
                             '(default 50)')
    parser.add_argument('--warmup', type=int, default=5, help='untimed runs first (default 5)')
    parser.add_argument('--no-eager', dest='eager', action='store_false',
                        help='do not time the eager PyTorch path beside the variants (no '
                             'speed-up column)')
    parser.add_argument('--json', type=Path,
                        help='also write the rows and the machine to this JSON file')
    return parser


def variants_of(model: str, size, backends: List[str], precisions: List[str], device: str,
                fp16: bool, eager: bool) -> List[bench.Variant]:
    """Return one model's variants to time, the eager PyTorch path first when wanted."""
    variants = [bench.Variant(model, backend, precision, size, device, fp16)
                for backend in backends for precision in precisions
                # no int8 PyTorch path; --precision all compares on ONNX graphs
                if precision != 'int8' or backend in INT8_BACKENDS]
    if eager:
        reference = bench.Variant(model, 'torch', 'fp32', size, device)
        variants = [reference] + [v for v in variants if v != reference]
    return variants


def networks_main(argv: List[str]) -> int:
    """Run ``semseg bench`` over the networks; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    models = list_models() if args.model == 'all' else [args.model]
    backends = available_backends() if args.backend == 'all' else [args.backend]
    precisions = list(PRECISIONS) if args.precision == 'all' else [args.precision]
    if args.precision == 'int8' and not set(INT8_BACKENDS) & set(backends):
        parser.error(INT8_ONLY)
    if args.runs < 1 or args.warmup < 0:
        parser.error('--runs must be >= 1, --warmup >= 0')
    machine = bench.machine_description()
    print(f'machine: {machine}', flush=True)
    for missing in sorted(set(BACKENDS) - set(backends)) if args.backend == 'all' else ():
        print(f'backend {missing} is not installed here: skipped (pip install {missing})',
              flush=True)
    rows, failures = [], []

    def failed(variant: bench.Variant, reason: str) -> None:
        failures.append(variant)
        print(f'semseg bench: {variant.name()} failed: {reason}', file=sys.stderr, flush=True)

    for model in models:
        size = args.size or bench.DEFAULT_SIZES.get(model, (512, 256))
        variants = variants_of(model, size, backends, precisions, args.device, args.fp16,
                               args.eager)
        print(f'{model} at {size[0]}x{size[1]}: {len(variants)} variants, '
              f'{args.runs} runs each, interleaved', flush=True)
        rows += bench.measure_interleaved(variants, args.runs, args.warmup, args.threads,
                                          args.weights, on_failure=failed)
    if rows:
        print(bench.format_table(rows))
    if args.json:
        write_text_atomic(args.json, json.dumps({'machine': machine, 'rows': rows}, indent=2))
    return 1 if failures else 0


def main(argv: Optional[List[str]] = None) -> int:
    """Run ``semseg bench`` (the networks) or ``semseg bench --node`` (the node)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if '--node' in argv:
        return node_main(argv)
    return networks_main(argv)


if __name__ == '__main__':
    sys.exit(main())
