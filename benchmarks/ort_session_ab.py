"""ONNX Runtime session options on the CPU: interleaved latency against the current backend.

Every variant is an ONNX Runtime session on the same deployment graph (uint8 image in, labels
out; built or found in the graph cache as the node does), differing from the package's own
:class:`~semseg_ros.core.backends.OnnxRuntimeBackend` session in one option. All run in this
one process, in turn, in a new random order each round (two runs each per round), so a
background load, and any spinning threads a variant leaves behind, hit them alike.
``current (A/A)`` is a second session built like the backend's: its spread against
``current`` is the noise floor. Per variant the table gives the median, p10 and p90 of the
network call, and the median and p10-p90 of the per-round ratio to ``current`` (ratio < 1:
faster). The labels of every variant are compared with ``current``'s
(share of equal pixels) on the shipped sample frames
(``semseg_ros/data/samples/camvid_0016E5``), resized to the network input::

    python benchmarks/ort_session_ab.py --rounds 150
    python benchmarks/ort_session_ab.py --precision int8 --rounds 150
"""

import os
from pathlib import Path
import sys

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

# The scripts' shared module, importable once the repository root is on the path.
from benchmarks.common import (  # noqa: E402, I100
    EagerRun, interleaved_latency, network_parser, sample_batches)

from semseg_ros.core.bench import machine_description  # noqa: E402
from semseg_ros.core.segmenter import Segmenter, SegmenterConfig  # noqa: E402


def parse_args(argv):
    """Parse the command line."""
    parser = network_parser(__doc__.split('\n\n')[0], rounds=100)
    parser.add_argument('--precision', default='fp32', choices=('fp32', 'int8'))
    parser.add_argument('--gap-ms', type=float, default=2.0,
                        help='pause (untimed) after each variant, so spinning threads of one '
                        'variant do not run into the next')
    parser.add_argument('--eager-threads', type=int, nargs='*', default=[1],
                        help='thread counts of the eager PyTorch rows (none: no such row; '
                        'with more than one thread its OpenMP pool fights a shared machine)')
    return parser.parse_args(argv)


def session_variants(ort, cores):
    """Return ``[(name, options)]``: each a change to the backend's session options.

    ``options`` holds ``threads`` (the backend's when absent; 0 is ONNX Runtime's default, one
    per physical core), ``spinning``, ``level`` and optional SessionOptions attributes /
    config entries, applied by :func:`make_session`.
    """
    extended = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    return [
        ('current (A/A)', {'threads': 0}),
        (f'{cores} threads given (not 0)', {'threads': cores}),
        (f'{cores} threads, spinning on', {'spinning': True}),
        (f'{cores} threads, spinning on only inside run()',
         {'spinning': True, 'entries': {'session.force_spinning_stop': '1'}}),
        ('1 thread', {'threads': 1}),
        ('set_denormal_as_zero', {'entries': {'session.set_denormal_as_zero': '1'}}),
        ('enable_mem_pattern off', {'attrs': {'enable_mem_pattern': False}}),
        ('enable_cpu_mem_arena off', {'attrs': {'enable_cpu_mem_arena': False}}),
        ('dynamic_block_base 4', {'entries': {'session.dynamic_block_base': '4'}}),
        ('graph optimization EXTENDED', {'level': extended}),
    ]


def make_session(ort, path, threads, options):
    """Return a CPU session on ``path``: the backend's options changed by ``options``."""
    so = ort.SessionOptions()
    so.graph_optimization_level = options.get('level',
                                              ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = options.get('threads', threads)
    so.inter_op_num_threads = 1
    so.add_session_config_entry('session.intra_op.allow_spinning',
                                '1' if options.get('spinning') else '0')
    for key, value in options.get('entries', {}).items():
        so.add_session_config_entry(key, value)
    for attr, value in options.get('attrs', {}).items():
        setattr(so, attr, value)
    return ort.InferenceSession(str(path), so, providers=['CPUExecutionProvider'])


def main(argv=None):
    """Run the comparison; print a Markdown table."""
    import onnxruntime as ort
    args = parse_args(argv)
    cores = os.cpu_count() or 1
    segmenter = Segmenter(SegmenterConfig(model=args.model, weights=args.weights,
                                          input_width=args.size[0],
                                          input_height=args.size[1],
                                          precision=args.precision))
    backend = segmenter.backend
    path = backend._graphs.path(False)
    variants = [('current', backend.run)]
    sessions = {}
    for name, options in session_variants(ort, cores):
        session = make_session(ort, path, backend.threads, options)
        sessions[name] = session
        variants.append((name, lambda batch, s=session: s.run(None, {'image': batch})[0]))
    if args.eager_threads:
        eager = Segmenter(SegmenterConfig(model=args.model, weights=args.weights,
                                          input_width=args.size[0],
                                          input_height=args.size[1], backend='torch')).backend
        for threads in args.eager_threads:
            variants.append((f'eager PyTorch, {threads} thread{"s" if threads > 1 else ""}',
                             EagerRun(eager, threads)))

    batches = sample_batches(args.size)
    reference = [backend.run(batch) for batch in batches]
    same = {}
    for name, run in variants:
        getattr(run, 'prepare', lambda: None)()
        same[name] = np.mean([np.mean(run(batch) == ref)
                              for batch, ref in zip(batches, reference)])

    times = interleaved_latency(variants, batches[0], args.rounds, args.gap_ms / 1e3)
    current = np.median(times['current'], axis=1)
    print(f'{args.model} {args.size[0]}x{args.size[1]} {args.precision}; {machine_description()}; '
          f'onnxruntime {ort.__version__}, torch {torch.__version__}; {args.rounds} rounds '
          f'x 2 runs per variant, {args.gap_ms:g} ms apart; load average '
          f'{os.getloadavg()[0]:.1f}')
    print('| variant | median ms | p10 | p90 | per-round ratio to current, median '
          '[p10, p90] | labels equal to current on the samples |')
    print('|---|---|---|---|---|---|')
    for name, _ in variants:
        ms = np.asarray(times[name]).ravel()
        ratio = np.median(times[name], axis=1) / current
        print(f'| {name} | {np.median(ms):.2f} | {np.percentile(ms, 10):.2f} | '
              f'{np.percentile(ms, 90):.2f} | {np.median(ratio):.3f} '
              f'[{np.percentile(ratio, 10):.3f}, {np.percentile(ratio, 90):.3f}] | '
              f'{100 * same[name]:.3f} % |')
    return 0


if __name__ == '__main__':
    sys.exit(main())
