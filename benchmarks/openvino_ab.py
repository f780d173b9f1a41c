"""OpenVINO against ONNX Runtime and eager PyTorch on the CPU, on the package's own graphs.

The OpenVINO variants compile the very deployment graphs the package's ONNX Runtime backend
runs (fp32 and the QDQ int8 one, uint8 image in, labels out; built or found in the graph cache
as the node does) with OpenVINO's CPU plugin, performance hint LATENCY, at 1 and 2 inference
threads, with the inference precision hint f32 and bf16 (the plugin's default on CPUs with
AMX or AVX-512 BF16, where it runs float layers in bfloat16), and with thread pinning off
(it is on by default). All variants run in this one process in a new random order each round,
two runs each (``benchmarks.common.interleaved_latency``); ``onnxruntime fp32 (A/A)`` is a
second package backend identical to the reference: its spread is the noise floor. The table
gives the median, p10 and p90 of the network call, the per-round ratio to the package's ONNX
Runtime fp32 backend, and the speed-up over eager PyTorch (1 thread: more fight a shared
machine). Labels are compared with the ONNX Runtime graph of the same precision on the shipped
sample frames; with ``--data-root`` every CamVid val frame also goes through ``segment()``
with each runtime, and the mIoU of each is printed (``semseg eval``'s metric: void ignored,
labels at the frame's size)::

    python benchmarks/openvino_ab.py --rounds 100 --data-root /path/to/camvid
    python benchmarks/openvino_ab.py --model enet --size 480x360 --rounds 30 \\
        --data-root /path/to/camvid
"""

import os
from pathlib import Path
import sys

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

# The scripts' shared module, importable once the repository root is on the path.
from benchmarks.common import (  # noqa: E402, I100
    EagerRun, interleaved_latency, network_parser, sample_batches)

from semseg_ros.core.bench import machine_description  # noqa: E402
from semseg_ros.core.segmenter import Segmenter, SegmenterConfig  # noqa: E402

PRECISIONS = ('fp32', 'int8')


def parse_args(argv):
    """Parse the command line."""
    parser = network_parser(__doc__.split('\n\n')[0], rounds=100)
    parser.add_argument('--threads', type=int, nargs='+', default=[1, 2],
                        help='OpenVINO inference thread counts')
    parser.add_argument('--gap-ms', type=float, default=2.0,
                        help='untimed pause after each variant')
    parser.add_argument('--data-root', type=Path,
                        help='CamVid (SegNet layout) folder: also compare mIoU on its val split')
    return parser.parse_args(argv)


class OpenVinoRun:
    """A deployment graph compiled by OpenVINO's CPU plugin, called like a backend's ``run``."""

    def __init__(self, core, model, threads, precision_hint, pinning=True):
        self.compiled = core.compile_model(model, 'CPU', {
            'PERFORMANCE_HINT': 'LATENCY', 'INFERENCE_NUM_THREADS': threads,
            'INFERENCE_PRECISION_HINT': precision_hint, 'ENABLE_CPU_PINNING': pinning})
        self.request = self.compiled.create_infer_request()

    def run(self, batch, with_confidence=False):
        """Run ``1 x H x W x 3`` uint8 images; return the labels."""
        return self.request.infer({0: batch}, share_inputs=True)[0]

    __call__ = run


def openvino_models(core, backends, width, height):
    """Return ``{precision: (OpenVINO model, source)}`` of the package's graphs.

    The ONNX graph is read where OpenVINO's ONNX frontend converts it; it has no MaxUnpool
    (ENet), so there the fp32 network is converted from ``torch.export`` of the same
    :class:`~semseg_ros.core.backends.InferenceGraph` instead, and int8 is left out.
    """
    import torch
    from semseg_ros.core.backends import InferenceGraph
    models = {}
    for precision, backend in backends.items():
        path = backend._graphs.path(False)
        try:
            models[precision] = (core.read_model(str(path)), 'ONNX graph')
        except RuntimeError as error:
            reason = str(error).split('Summary:')[-1].strip().splitlines()[0]
            print(f'openvino cannot read the {precision} graph {path.name}: {reason}')
            if precision != 'fp32':
                continue
            import openvino
            graph = InferenceGraph(backend._graphs.network.eval()).eval()
            example = torch.zeros(1, height, width, 3, dtype=torch.uint8)
            models[precision] = (openvino.convert_model(torch.export.export(graph, (example,))),
                                 'torch.export')
    return models


def segmenter(args, **config):
    """Return a Segmenter of the benchmarked network with ``config``."""
    return Segmenter(SegmenterConfig(model=args.model, weights=args.weights,
                                     input_width=args.size[0], input_height=args.size[1],
                                     **config))


def openvino_variants(core, models, threads):
    """Return ``[(name, precision, run)]``: OpenVINO on each graph, hint, thread count."""
    variants = []
    for precision, (model, source) in models.items():
        label = f'openvino {precision}' + (f' ({source})' if source != 'ONNX graph' else '')
        for count in threads:
            for hint in ('f32', 'bf16'):
                name = f'{label}, {hint}, {count} thread{"s" * (count > 1)}'
                variants.append((name, precision, OpenVinoRun(core, model, count, hint)))
        count = max(threads)
        variants.append((f'{label}, f32, {count} threads, pinning off', precision,
                         OpenVinoRun(core, model, count, 'f32', pinning=False)))
    return variants


def spread(ratios):
    """Return per-round ratios as ``median [p10, p90]``."""
    return (f'{np.median(ratios):.3f} [{np.percentile(ratios, 10):.3f}, '
            f'{np.percentile(ratios, 90):.3f}]')


def compare_on_val(args, runs):
    """Print the mIoU of each ``(name, run)`` on CamVid val and its agreement with the first."""
    from semseg_ros.core.metrics import ConfusionMatrix
    from semseg_ros.data.datasets import camvid_pairs, read_image, read_label
    # One Segmenter does the resizing around each runtime; its backend is swapped in turn.
    host = segmenter(args)
    classes = host.class_set
    matrices = {name: ConfusionMatrix(classes.num_classes, classes.ignore_index)
                for name, _ in runs}
    agreement = {name: [] for name, _ in runs}
    pairs = camvid_pairs(args.data_root, 'val')
    for image_path, label_path in pairs:
        rgb, truth = read_image(image_path), read_label(label_path)
        first = None
        for name, run in runs:
            host.backend = run
            labels = host.segment(rgb).labels
            first = labels if first is None else first
            matrices[name].update(labels, truth)
            agreement[name].append(np.mean(labels == first))
    print(f'\nCamVid val, {len(pairs)} frames, network input {args.size[0]}x{args.size[1]}, '
          'labels at the frame size:')
    print(f'| runtime | mIoU | change | labels equal to {runs[0][0]} (mean / worst frame) |')
    print('|---|---|---|---|')
    reference = 100 * matrices[runs[0][0]].miou()
    for name, _ in runs:
        miou = 100 * matrices[name].miou()
        print(f'| {name} | {miou:.2f} | {miou - reference:+.2f} | '
              f'{100 * np.mean(agreement[name]):.2f} % / {100 * np.min(agreement[name]):.2f} % |')


def main(argv=None):
    """Run the comparison; print Markdown tables."""
    import openvino
    args = parse_args(argv)
    backends = {p: segmenter(args, precision=p).backend for p in PRECISIONS}
    core = openvino.Core()
    models = openvino_models(core, backends, *args.size)
    variants = [('onnxruntime fp32', 'fp32', backends['fp32'].run),
                ('onnxruntime fp32 (A/A)', 'fp32', segmenter(args).backend.run),
                ('onnxruntime int8', 'int8', backends['int8'].run)]
    variants += openvino_variants(core, models, args.threads)
    eager = segmenter(args, backend='torch').backend
    variants.append(('eager PyTorch, 1 thread', 'fp32', EagerRun(eager, 1)))

    batches = sample_batches(args.size)
    reference = {p: [b.run(batch) for batch in batches] for p, b in backends.items()}
    same = {}
    for name, precision, run in variants:
        getattr(run, 'prepare', lambda: None)()
        same[name] = np.mean([np.mean(run(batch).reshape(ref.shape) == ref)
                              for batch, ref in zip(batches, reference[precision])])

    timed = [(name, run) for name, _, run in variants]
    times = interleaved_latency(timed, batches[0], args.rounds, args.gap_ms / 1e3)
    base = np.median(times['onnxruntime fp32'], axis=1)
    eager_ms = np.median(times['eager PyTorch, 1 thread'])
    print(f'{args.model} {args.size[0]}x{args.size[1]}; {machine_description()}; '
          f'{args.rounds} rounds x 2 runs per variant; load average {os.getloadavg()[0]:.1f}')
    print('| variant | median ms | p10 | p90 | per-round ratio to onnxruntime fp32 [p10, p90] '
          '| per-round ratio to onnxruntime, same precision | speed-up over eager PyTorch '
          '| labels equal to onnxruntime, same precision, on the samples |')
    print('|---|---|---|---|---|---|---|---|')
    for name, precision, _ in variants:
        ms = np.asarray(times[name]).ravel()
        rounds = np.median(times[name], axis=1)
        print(f'| {name} | {np.median(ms):.2f} | {np.percentile(ms, 10):.2f} | '
              f'{np.percentile(ms, 90):.2f} | {spread(rounds / base)} | '
              f'{spread(rounds / np.median(times[f"onnxruntime {precision}"], axis=1))} | '
              f'{eager_ms / np.median(ms):.2f}x | {100 * same[name]:.2f} % |')
    if args.data_root is not None:
        count = max(args.threads)
        runs = [('onnxruntime fp32', backends['fp32']), ('onnxruntime int8', backends['int8'])]
        runs += [(f'openvino {p}, {hint}', OpenVinoRun(core, model, count, hint))
                 for p, (model, _) in models.items() for hint in ('f32', 'bf16')]
        compare_on_val(args, runs)
    return 0


if __name__ == '__main__':
    sys.exit(main())
