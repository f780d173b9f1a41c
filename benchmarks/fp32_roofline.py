"""How close the CPU fp32 path is to the machine's own fp32 ceiling, and what 4x eager needs.

Times, interleaved in one process, the package's ONNX Runtime fp32 and int8 graphs and eager
PyTorch (all cores and 1 thread) on the network call only (uint8 image in, labels out), then
measures the rate of a large fp32 matrix product on all cores (``torch.mm``, MKL: close to
what the cores can do). It prints each variant's median, its speed-up over eager PyTorch
(median of the per-round ratios) and, for fp32, the GFLOP/s it reaches; then the time a
given speed-up over eager would take and the fp32 rate that time needs, as a share of the
matrix product's::

    python benchmarks/fp32_roofline.py --rounds 60
"""

import os
from pathlib import Path
import sys
import time

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# The scripts' shared module, importable once the repository root is on the path.
from benchmarks.common import (  # noqa: E402, I100
    EagerRun, interleaved_latency, network_parser, sample_batches)

from semseg_ros.core.bench import machine_description  # noqa: E402
from semseg_ros.core.segmenter import Segmenter, SegmenterConfig  # noqa: E402
from semseg_ros.models import create_model  # noqa: E402
from semseg_ros.models.complexity import count_gmacs  # noqa: E402


def gemm_gflops(size: int, threads: int, repeats: int = 15) -> float:
    """Return the median fp32 GFLOP/s of a ``size``-square matrix product on ``threads``."""
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * size ** 3 / float(np.median(times)) / 1e9


def main(argv=None) -> int:
    """Run the comparison and print the tables."""
    parser = network_parser(__doc__.splitlines()[0], rounds=60)
    parser.add_argument('--speed-up', type=float, default=4.0,
                        help='the speed-up over eager PyTorch to price (default 4)')
    args = parser.parse_args(argv)
    cores = len(os.sched_getaffinity(0))
    width, height = args.size

    def backend(name, precision):
        return Segmenter(SegmenterConfig(model=args.model, weights=args.weights, backend=name,
                                         precision=precision, input_width=width,
                                         input_height=height)).backend

    variants = [('onnxruntime fp32', backend('onnxruntime', 'fp32').run),
                ('onnxruntime int8', backend('onnxruntime', 'int8').run)]
    eager = backend('torch', 'fp32')
    variants += [(f'eager PyTorch, {cores} threads', EagerRun(eager, cores)),
                 ('eager PyTorch, 1 thread', EagerRun(eager, 1))]
    batch = sample_batches(args.size)[0]
    times = interleaved_latency(variants, batch, args.rounds, gap_s=0.002)
    gemm = max(gemm_gflops(size, cores) for size in (2048, 3072))
    gflop = 2 * count_gmacs(create_model(args.model).eval(), width, height)

    print(f'{args.model} {width}x{height}, {gflop:.2f} GFLOP per frame; {machine_description()};'
          f' {args.rounds} rounds x 2 runs; fp32 matrix product on {cores} cores: '
          f'{gemm:.0f} GFLOP/s')
    medians = {name: float(np.median(pairs)) for name, pairs in times.items()}
    print('| variant | median ms | speed-up over eager, all cores [p10, p90] | '
          'speed-up over eager, 1 thread | fp32 GFLOP/s | share of the matrix product |')
    print('|---|---|---|---|---|---|')
    eager_all, eager_one = (np.median(times[name], axis=1) for name, _ in variants[2:])
    for name, pairs in times.items():
        own = np.median(pairs, axis=1)
        over_all, over_one = eager_all / own, eager_one / own
        rate = gflop / (medians[name] / 1e3) if 'int8' not in name else None
        print(f'| {name} | {medians[name]:.2f} | {np.median(over_all):.2f}x '
              f'[{np.percentile(over_all, 10):.2f}, {np.percentile(over_all, 90):.2f}] | '
              f'{np.median(over_one):.2f}x | '
              + ('- | - |' if rate is None else f'{rate:.0f} | {rate / gemm:.0%} |'))
    for name in (variants[2][0], variants[3][0]):
        target = medians[name] / args.speed_up
        needed = gflop / (target / 1e3)
        print(f'{args.speed_up:g}x {name}: {target:.2f} ms a frame, which needs {needed:.0f} '
              f'fp32 GFLOP/s = {needed / gemm:.2f}x the rate of the matrix product')
    return 0


if __name__ == '__main__':
    sys.exit(main())
