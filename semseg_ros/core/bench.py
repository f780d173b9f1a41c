"""Benchmarking the networks: parameters, GMACs, latency, FPS, peak memory, and speed-up.

Each variant (model, backend, precision) runs in a process of its own, so thread settings and
peak memory of one do not leak into another; INT8 graphs are built (and calibrated) before
timing starts. The variants of one model are timed **interleaved**: every round, each
variant in a new random order runs a few calls while the others wait, so a machine whose
speed drifts (other jobs, a VM's neighbours, clocks) moves them all alike. Each round also
gives a paired ratio to the model's eager PyTorch path (the ``torch`` backend in fp32, timed
in the same rounds): the speed-up column is the median of those ratios, with its 10th and
90th percentiles in the JSON. Latency is the Segmenter's full ``segment()`` call on an image
of the network's input size (pre-process, inference, post-process), with the inference
stage reported on its own too. ``semseg bench`` (:mod:`semseg_ros.commands.bench`) runs it.
"""

from dataclasses import dataclass, replace
import math
import multiprocessing
import platform
import random
import resource
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from semseg_ros.core.latency import latency_summary, percentile

# The paper resolutions the project's speed goals are stated at.
DEFAULT_SIZES = {'mininet_v2_cpu': (512, 256), 'mininet_v2': (1024, 512),
                 'enet': (480, 360), 'rds_net': (480, 360)}
# Calls a variant makes in its turn of a round: enough for a per-round median, few enough
# that every variant sees the same moments of the machine.
RUNS_PER_TURN = 5
# Pause before each turn: thread pools of the previous turn's runtime (OpenVINO's TBB workers
# spin for a while) go idle before the next variant is timed.
TURN_GAP_S = 0.05
WORKER_START_TIMEOUT_S = 900.0  # an int8 graph is calibrated before its worker is ready


@dataclass(frozen=True)
class Variant:
    """What one benchmark row runs (the Segmenter's configuration for it)."""

    model: str
    backend: str
    precision: str = 'fp32'
    size: Tuple[int, int] = (512, 256)
    device: str = 'cpu'
    fp16: bool = False

    def eager(self) -> 'Variant':
        """Return the package's eager PyTorch path for the same model, size and device."""
        return replace(self, backend='torch', precision='fp32', fp16=False)

    def name(self) -> str:
        """Return a short description for messages."""
        return f'{self.model} on {self.backend} ({self.precision})'


def _prepare(variant: Variant, threads: int, weights: str):
    """Build the Segmenter and its input; return them with the row's static figures."""
    from semseg_ros.core.resources import shipped_weights
    from semseg_ros.core.segmenter import Segmenter, SegmenterConfig
    from semseg_ros.models import create_model
    from semseg_ros.models.complexity import count_gmacs, count_parameters

    model, size = variant.model, variant.size
    if weights == 'auto':
        weights = 'shipped' if shipped_weights(model).is_file() else 'none'
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    network = create_model(model)
    params = count_parameters(network)
    gmacs = count_gmacs(network.eval(), *size)
    del network
    segmenter = Segmenter(SegmenterConfig(
        model=model, weights=weights, backend=variant.backend, input_width=size[0],
        input_height=size[1], threads=threads, precision=variant.precision,
        device=variant.device, fp16=variant.fp16))
    image = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    backend = segmenter.backend
    row = {
        'model': model, 'backend': backend.name,  # what 'auto' chose
        'precision': ('fp16' if variant.precision == 'fp32' and getattr(backend, 'fp16', False)
                      else variant.precision),
        'device': variant.device, 'size': f'{size[0]}x{size[1]}', 'weights': weights,
        'providers': list(backend.providers), 'params': params, 'gmacs': gmacs,
        'threads': threads, 'rss_before_mb': rss_before / 1024.0,
    }
    return segmenter, image, row


def _serve(connection, variant: Variant, threads: int, weights: str, warmup: int) -> None:
    """A worker process: build the variant, then time the calls the parent asks for."""
    try:
        segmenter, image, row = _prepare(variant, threads, weights)
        for _ in range(warmup):
            segmenter.segment(image)
    except Exception as error:  # reported by the parent, which keeps going
        connection.send(('error', f'{type(error).__name__}: {error}'))
        return
    connection.send(('ready', row))
    while True:
        command, count = connection.recv()
        if command == 'stop':
            connection.send(('done', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
            return
        try:
            totals, inference = [], []
            start = time.perf_counter()
            for _ in range(count):
                result = segmenter.segment(image)
                totals.append(sum(result.timings_ms.values()))
                inference.append(result.timings_ms['inference'])
            connection.send(('times', (totals, inference, time.perf_counter() - start)))
        except Exception as error:
            connection.send(('error', f'{type(error).__name__}: {error}'))
            return


# Imported once by the server the workers are forked from.
WORKER_PRELOAD = ['semseg_ros.core.segmenter', 'semseg_ros.models.complexity']


class _Worker:
    """One variant's process and the figures it returned."""

    def __init__(self, variant: Variant, threads: int, weights: str, warmup: int):
        # A process of its own per variant (its own memory and thread pools), forked from a
        # server that imported torch and the runtimes once: seconds less per variant than a
        # fresh interpreter. The server runs no torch op, so it starts no thread to inherit.
        context = multiprocessing.get_context('forkserver')
        context.set_forkserver_preload(WORKER_PRELOAD)
        self.variant = variant
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_serve, daemon=True,
                                       args=(child, variant, threads, weights, warmup))
        self.process.start()
        child.close()
        self.row: Dict[str, object] = {}
        self.totals: List[float] = []
        self.inference: List[float] = []
        self.wall_s = 0.0
        self.turn_medians: List[float] = []

    def _receive(self, timeout: Optional[float] = None):
        if timeout is not None and not self.connection.poll(timeout):
            raise RuntimeError(f'no answer in {timeout:.0f} s')
        try:
            kind, payload = self.connection.recv()
        except (EOFError, OSError):
            self.process.join(5)
            code = self.process.exitcode
            raise RuntimeError(f'the worker process died (exit code {code})') from None
        if kind == 'error':
            raise RuntimeError(payload)
        return payload

    def wait_ready(self) -> None:
        """Wait for the variant to be built and warmed up (RuntimeError: it failed)."""
        self.row = self._receive(WORKER_START_TIMEOUT_S)

    def turn(self, count: int) -> None:
        """Time ``count`` calls (RuntimeError: the worker failed)."""
        self.connection.send(('time', count))
        totals, inference, wall = self._receive()
        self.totals += totals
        self.inference += inference
        self.wall_s += wall
        self.turn_medians.append(float(np.median(totals)))

    def finish(self) -> Dict[str, object]:
        """Stop the process; return its row with every figure."""
        self.connection.send(('stop', 0))
        peak_mb = self._receive(60.0)
        self.process.join(30)
        latency = latency_summary(self.totals)
        return dict(self.row, latency_ms_median=latency['median_ms'],
                    latency_ms_p90=latency['p90_ms'],
                    inference_ms_median=percentile(self.inference, 50),
                    fps=len(self.totals) / self.wall_s, peak_rss_mb=peak_mb,
                    runs=len(self.totals), rounds=len(self.turn_medians))

    def close(self, wait_s: float = 30.0) -> None:
        """Let the process end (a failed worker returns by itself), killing it after ``wait_s``."""
        self.process.join(wait_s)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(10)


def measure_interleaved(variants: Sequence[Variant], runs: int, warmup: int, threads: int,
                        weights: str, seed: int = 0,
                        on_failure: Callable[[Variant, str], None] = lambda v, e: None
                        ) -> List[Dict[str, object]]:
    """Time ``variants`` (one model's) in rounds, each in its own process; return their rows.

    Args:
        variants: The variants; the first is the reference that a row's ``speedup_over_eager``
            compares with when it is the eager path (:meth:`Variant.eager`).
        runs: Timed calls per variant at least (rounds of :data:`RUNS_PER_TURN`).
        warmup: Untimed calls per variant first.
        threads: CPU inference threads (0: the runtime's default).
        weights: ``'auto'``, ``'shipped'``, ``'none'`` or a weights file.
        seed: Seed of the order the variants take within each round.
        on_failure: Called with a variant that failed and the reason; the others go on.
    """
    per_turn = max(1, min(RUNS_PER_TURN, runs))
    rounds = math.ceil(runs / per_turn)
    workers = [_Worker(variant, threads, weights, warmup) for variant in variants]
    live = []
    try:
        for worker in workers:
            try:
                worker.wait_ready()
                live.append(worker)
            except RuntimeError as error:
                worker.close()
                on_failure(worker.variant, str(error))
        order = random.Random(seed)
        for _ in range(rounds):
            for worker in order.sample(live, len(live)):
                time.sleep(TURN_GAP_S)
                try:
                    worker.turn(per_turn)
                except RuntimeError as error:
                    worker.close()
                    live.remove(worker)
                    on_failure(worker.variant, str(error))
        rows = {worker.variant: worker.finish() for worker in live}
    finally:  # after an interruption too: no worker process outlives the benchmark
        for worker in workers:
            worker.close(0.0 if worker.process.is_alive() else 30.0)
    reference = next((w for w in live if w.variant == variants[0]
                      and w.variant == w.variant.eager()), None)
    for worker in live if reference is not None else ():
        ratios = [eager / own for eager, own in zip(reference.turn_medians,
                                                    worker.turn_medians)]
        rows[worker.variant].update(
            speedup_over_eager=float(np.median(ratios)),
            speedup_p10=percentile(ratios, 10), speedup_p90=percentile(ratios, 90))
    return [rows[worker.variant] for worker in live]


def format_table(rows: List[Dict[str, object]]) -> str:
    """Render benchmark rows as a Markdown table.

    The speed-up column is the median per-round ratio to the eager PyTorch row of the same
    model (``–`` where none was timed with it). The last column says what really ran: the
    ONNX Runtime providers, or the PyTorch device (``cuda graph fp16``, or ``cpu`` after a
    fallback from CUDA).
    """
    header = ('| model | backend | precision | size | params | GMACs | latency median (ms) | '
              'p90 (ms) | inference (ms) | FPS | over eager | peak RSS (MB) | ran on |')
    lines = [header, '|' + '---|' * 13]
    for r in rows:
        ran = ', '.join(str(p) for p in r.get('providers', []))
        speedup = r.get('speedup_over_eager')
        lines.append(f"| {r['model']} | {r['backend']} | {r.get('precision', 'fp32')} | "
                     f"{r['size']} | {r['params'] / 1e6:.3f}M "
                     f"| {r['gmacs']:.2f} | {r['latency_ms_median']:.2f} | "
                     f"{r['latency_ms_p90']:.2f} | {r['inference_ms_median']:.2f} | "
                     f"{r['fps']:.1f} | {'–' if speedup is None else f'{speedup:.2f}x'} | "
                     f"{r['peak_rss_mb']:.0f} | {ran} |")
    return '\n'.join(lines)


def cpu_model() -> str:
    """Return the CPU's model name (``/proc/cpuinfo``), else the platform's name for it."""
    try:
        with open('/proc/cpuinfo') as info:
            for line in info:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_description() -> str:
    """Describe this machine (CPU model, cores, Python, the runtimes' versions)."""
    import onnxruntime
    import torch
    from semseg_ros.core.backends import available_backends
    cpu = cpu_model()
    versions = f'torch {torch.__version__}, onnxruntime {onnxruntime.__version__}'
    if 'openvino' in available_backends():
        import openvino
        versions += f', openvino {openvino.__version__.split("-")[0]}'
    return (f'{cpu}, {multiprocessing.cpu_count()} cores, Python {platform.python_version()}, '
            f'{versions}')
