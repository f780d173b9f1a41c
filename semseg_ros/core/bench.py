"""Benchmarking the networks: parameters, GMACs, latency, FPS and peak memory.

Each (model, backend, precision) runs in a fresh process, so thread settings and peak memory
of one do not leak into the next. INT8 runs on ONNX Runtime only; its graph is built (and
calibrated) before timing starts. Latency is the Segmenter's full ``segment()`` call on
an image of the network's input size (pre-process, inference, post-process), with the
inference stage reported on its own too. ``semseg bench`` (:mod:`semseg_ros.commands.bench`)
runs it.
"""

import multiprocessing
import platform
import resource
import time
from typing import Dict, List

import numpy as np

from semseg_ros.core.latency import latency_summary, percentile

# The paper resolutions the project's speed goals are stated at.
DEFAULT_SIZES = {'mininet_v2_cpu': (512, 256), 'mininet_v2': (1024, 512),
                 'enet': (480, 360), 'rds_net': (480, 360)}


def measure(model: str, backend: str, size: tuple, runs: int, warmup: int, threads: int,
            weights: str, precision: str = 'fp32', device: str = 'cpu',
            fp16: bool = False) -> Dict[str, object]:
    """Measure one model on one backend in this process; return a row of figures."""
    from semseg_ros.core.resources import shipped_weights
    from semseg_ros.core.segmenter import Segmenter, SegmenterConfig
    from semseg_ros.models import create_model
    from semseg_ros.models.complexity import count_gmacs, count_parameters

    if weights == 'auto':
        weights = 'shipped' if shipped_weights(model).is_file() else 'none'
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    network = create_model(model)
    params = count_parameters(network)
    gmacs = count_gmacs(network.eval(), *size)
    del network
    segmenter = Segmenter(SegmenterConfig(model=model, weights=weights, backend=backend,
                                          input_width=size[0], input_height=size[1],
                                          threads=threads, precision=precision,
                                          device=device, fp16=fp16))
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    for _ in range(warmup):
        segmenter.segment(image)
    totals, inference = [], []
    start = time.perf_counter()
    for _ in range(runs):
        result = segmenter.segment(image)
        totals.append(sum(result.timings_ms.values()))
        inference.append(result.timings_ms['inference'])
    wall = time.perf_counter() - start
    latency = latency_summary(totals)
    return {
        'model': model, 'backend': segmenter.backend.name,  # what 'auto' chose
        'precision': ('fp16' if precision == 'fp32' and getattr(segmenter.backend, 'fp16', False)
                      else precision),
        'device': device,
        'size': f'{size[0]}x{size[1]}',
        'weights': weights, 'providers': list(segmenter.backend.providers),
        'params': params, 'gmacs': gmacs,
        'latency_ms_median': latency['median_ms'], 'latency_ms_p90': latency['p90_ms'],
        'inference_ms_median': percentile(inference, 50),
        'fps': runs / wall,
        'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        'rss_before_mb': rss_before / 1024.0,
        'threads': threads, 'runs': runs,
    }


def _child(queue, args):
    try:
        queue.put(('ok', measure(*args)))
    except Exception as error:  # reported by the parent, which keeps going
        queue.put(('error', f'{type(error).__name__}: {error}'))


def measure_isolated(*args) -> Dict[str, object]:
    """Run :func:`measure` in a fresh process; raise RuntimeError with the child's error."""
    context = multiprocessing.get_context('spawn')
    queue = context.Queue()
    process = context.Process(target=_child, args=(queue, args))
    process.start()
    status, payload = queue.get()
    process.join()
    if status != 'ok':
        raise RuntimeError(payload)
    return payload


def format_table(rows: List[Dict[str, object]]) -> str:
    """Render benchmark rows as a Markdown table.

    The last column says what really ran: the ONNX Runtime providers, or the PyTorch device
    (``cuda graph fp16``, or ``cpu`` after a fallback from CUDA).
    """
    header = ('| model | backend | precision | size | params | GMACs | latency median (ms) | '
              'p90 (ms) | inference (ms) | FPS | peak RSS (MB) | ran on |')
    lines = [header, '|' + '---|' * 12]
    for r in rows:
        ran = ', '.join(str(p) for p in r.get('providers', []))
        lines.append(f"| {r['model']} | {r['backend']} | {r.get('precision', 'fp32')} | "
                     f"{r['size']} | {r['params'] / 1e6:.3f}M "
                     f"| {r['gmacs']:.2f} | {r['latency_ms_median']:.2f} | "
                     f"{r['latency_ms_p90']:.2f} | {r['inference_ms_median']:.2f} | "
                     f"{r['fps']:.1f} | {r['peak_rss_mb']:.0f} | {ran} |")
    return '\n'.join(lines)


def machine_description() -> str:
    """Describe this machine (CPU model, cores, Python, the runtimes' versions)."""
    import onnxruntime
    import torch
    from semseg_ros.core.backends import available_backends
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as info:
            for line in info:
                if line.startswith('model name'):
                    cpu = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    versions = f'torch {torch.__version__}, onnxruntime {onnxruntime.__version__}'
    if 'openvino' in available_backends():
        import openvino
        versions += f', openvino {openvino.__version__.split("-")[0]}'
    return (f'{cpu}, {multiprocessing.cpu_count()} cores, Python {platform.python_version()}, '
            f'{versions}')
