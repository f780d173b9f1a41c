"""Inference backends: PyTorch (CPU, CUDA), ONNX Runtime (TensorRT, CUDA, CPU), OpenVINO (CPU).

All run the same :class:`InferenceGraph`: a uint8 ``N x H x W x 3`` RGB image in, uint8
class ids (and optionally uint8 confidence) out. Normalisation, argmax and the softmax
confidence live inside the graph, so no float image is built in Python and no logits
tensor is copied out of the runtime: the node only resizes uint8 images around it.
"""

import contextlib
import copy
import ctypes
import functools
import hashlib
import itertools
import json
import logging
import os
from pathlib import Path
import tempfile
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np
import torch
from torch import nn

from semseg_ros.core.files import cache_root
from semseg_ros.core.weights import weights_digest

LOG = logging.getLogger(__name__)

BACKENDS = ('torch', 'onnxruntime', 'openvino')
# The backends that run the ONNX graphs, int8 included; openvino is optional (pip-installed,
# not in package.xml).
ONNX_BACKENDS = ('onnxruntime', 'openvino')
# Not a runtime: the fastest one installed for the device and precision (resolve_backend).
AUTO = 'auto'
BACKEND_CHOICES = BACKENDS + (AUTO,)
# What may be asked to run int8: the ONNX runtimes, and auto, which picks one of them.
INT8_BACKENDS = ONNX_BACKENDS + (AUTO,)
DEVICES = ('cpu', 'cuda')
# fp32: the network as trained; int8: statically quantized (ONNX graphs only, see quantize.py).
PRECISIONS = ('fp32', 'int8')
# Seconds between checks for a stop request while a graph is built.
BUILD_POLL_PERIOD_S = 0.1
# Best first: a Jetson's TensorRT, then CUDA, then the CPU.
ORT_PROVIDER_PREFERENCE = ('TensorrtExecutionProvider', 'CUDAExecutionProvider',
                           'CPUExecutionProvider')


class InferenceGraph(nn.Module):
    """Wrap a segmentation network for deployment: uint8 RGB in, uint8 labels out.

    The network input convention (float RGB / 255, NCHW) is the one training uses
    (``semseg_ros.data.transforms``).
    """

    def __init__(self, network: nn.Module, with_confidence: bool = False,
                 dtype: torch.dtype = torch.float32):
        super().__init__()
        self.network = network
        self.with_confidence = with_confidence
        self.dtype = dtype

    def forward(self, image: torch.Tensor):
        """Map ``N x H x W x 3`` uint8 RGB to ``N x h x w`` uint8 ids (and confidence)."""
        # The permuted view is channels-last already: the network's preferred layout.
        x = image.permute(0, 3, 1, 2).to(self.dtype) * (1.0 / 255.0)
        logits = self.network(x)
        labels = logits.argmax(1).to(torch.uint8)
        if not self.with_confidence:
            return labels
        logits = logits.float()
        # Top softmax probability = 1 / sum_c exp(l_c - l_max); no full softmax is stored.
        top = logits.max(1, keepdim=True).values
        confidence = torch.exp(logits - top).sum(1).reciprocal()
        return labels, (confidence * 255.0 + 0.5).to(torch.uint8)


def resolve_device(device: str) -> str:
    """Return ``device`` if usable here, else 'cpu' with a warning (never an error for CUDA)."""
    if device not in DEVICES:
        raise ValueError(f'unknown device {device!r}; valid devices: {", ".join(DEVICES)}')
    if device == 'cuda' and not torch.cuda.is_available():
        LOG.warning('device cuda was asked for but CUDA is not available: running on the CPU')
        return 'cpu'
    return device


class TorchBackend:
    """Run the inference graph in PyTorch: eagerly on the CPU; on CUDA as a captured graph.

    On CUDA the network is channels-last, in half precision with ``fp16`` (weights and
    activations, not autocast, which adds a cast before every layer), and each input shape's
    whole forward pass (uint8 in, normalisation, network, argmax, uint8 ids out) is captured
    once as a CUDA graph and replayed: one launch a frame instead of hundreds, which is what
    makes small networks fast on a large GPU. Images go in and ids come out through pinned
    host buffers of the captured shape (asynchronous copies, one wait a frame). A capture that
    fails falls back to eager execution with a warning.
    """

    name = 'torch'

    def __init__(self, network: nn.Module, device: str = 'cpu', fp16: bool = False,
                 threads: int = 0, cuda_graphs: bool = True):
        self.device = resolve_device(device)
        self.fp16 = fp16 and self.device == 'cuda'
        if threads > 0 and self.device == 'cpu':
            # PyTorch has only a process-wide thread count, so only this backend sets it;
            # ONNX Runtime sessions take theirs per session.
            torch.set_num_threads(threads)
        network = network.eval().to(self.device)
        dtype = torch.float16 if self.fp16 else torch.float32
        network = network.to(dtype=dtype, memory_format=torch.channels_last)
        self._graphs = {flag: InferenceGraph(network, flag, dtype).eval()
                        for flag in (False, True)}
        self.cuda_graphs = cuda_graphs and self.device == 'cuda'
        # (input shape, with confidence) -> _Captured, or None where capturing failed and
        # the shape runs eagerly.
        self._captured: Dict[Any, Any] = {}
        self.providers = [self.device + (' graph' if self.cuda_graphs else '')
                          + (' fp16' if self.fp16 else '')]

    def run(self, batch: np.ndarray, with_confidence: bool = False):
        """Run ``N x H x W x 3`` uint8 images; return labels (and confidence) as numpy."""
        if self.cuda_graphs:
            key = (batch.shape, with_confidence)
            if key not in self._captured:
                self._captured[key] = self._capture(batch, with_confidence)
            if self._captured[key] is not None:
                return self._captured[key].run(batch)
        image = torch.from_numpy(batch).to(self.device, non_blocking=True)
        with torch.inference_mode():
            return _to_numpy(self._graphs[with_confidence](image))

    def _capture(self, batch: np.ndarray, with_confidence: bool):
        """Capture the forward pass for ``batch``'s shape as a CUDA graph (None: failed)."""
        graph_module = self._graphs[with_confidence]
        try:
            host_in = torch.empty(batch.shape, dtype=torch.uint8, pin_memory=True)
            host_in.numpy()[...] = batch
            buffer = host_in.to(self.device)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side), torch.inference_mode():
                for _ in range(3):  # warm-up: cuDNN's algorithm choice, allocator pools
                    graph_module(buffer)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.inference_mode(), torch.cuda.graph(graph):
                out = graph_module(buffer)
            return _Captured(graph, host_in, buffer, out if isinstance(out, tuple) else (out,))
        except RuntimeError as error:
            LOG.warning('CUDA graph capture failed for input %s (%s): running eagerly',
                        tuple(batch.shape), error)
            return None


class _Captured:
    """A captured forward pass with its pinned host buffers and device input buffer."""

    def __init__(self, graph, host_in: torch.Tensor, device_in: torch.Tensor,
                 device_out: Tuple[torch.Tensor, ...]):
        self.graph, self.host_in, self.device_in, self.device_out = \
            graph, host_in, device_in, device_out
        self.host_out = tuple(torch.empty(o.shape, dtype=o.dtype, pin_memory=True)
                              for o in device_out)

    def run(self, batch: np.ndarray):
        """Copy ``batch`` in, replay, copy the outputs out; return them as new arrays."""
        self.host_in.numpy()[...] = batch
        self.device_in.copy_(self.host_in, non_blocking=True)
        self.graph.replay()
        for host, device in zip(self.host_out, self.device_out):
            host.copy_(device, non_blocking=True)
        torch.cuda.current_stream(self.device_in.device).synchronize()
        # Copies: the pinned buffers are overwritten by the next frame.
        arrays = tuple(host.numpy().copy() for host in self.host_out)
        return arrays if len(arrays) > 1 else arrays[0]


def _to_numpy(out):
    """Return a labels tensor, or a (labels, confidence) pair, as numpy arrays."""
    if isinstance(out, tuple):
        return tuple(o.cpu().numpy() for o in out)
    return out.cpu().numpy()


def available_ort_providers(device: str) -> List[str]:
    """Return ONNX Runtime providers to use, best first, for ``device`` on this machine."""
    import onnxruntime as ort
    available = set(ort.get_available_providers())
    if device == 'cpu':
        return ['CPUExecutionProvider']
    chosen = [p for p in ORT_PROVIDER_PREFERENCE if p in available]
    if chosen == ['CPUExecutionProvider']:
        LOG.warning('device cuda was asked for but ONNX Runtime has no CUDA or TensorRT '
                    'provider here: running on the CPU')
    return chosen


def check_precision(precision: str, backend: str = 'onnxruntime') -> None:
    """Raise ValueError unless ``precision`` is known and runs on ``backend``."""
    if precision not in PRECISIONS:
        raise ValueError(f'unknown precision {precision!r}; valid precisions: '
                         f'{", ".join(PRECISIONS)}')
    if precision == 'int8' and backend not in INT8_BACKENDS:
        raise ValueError(f'precision int8 runs only on the {" or ".join(ONNX_BACKENDS)} '
                         f'backend (a statically quantized ONNX graph), not on {backend}; use '
                         'backend onnxruntime or precision fp32')


def resolve_backend(backend: str, device: str, precision: str,
                    installed: Optional[List[str]] = None) -> str:
    """Return the runtime to run: ``backend`` itself, or what ``'auto'`` picks.

    ``'auto'`` picks the runtime measured fastest on both an AMD (Zen 4) and an Intel
    (Sapphire Rapids) CPU, among those installed: OpenVINO for int8 on the CPU (the same QDQ
    graph 10-28 % faster than ONNX Runtime, identical mIoU; docs/cpu_inference.md), else ONNX
    Runtime (fp32 on the CPU, where neither wins on both, and CUDA, where its TensorRT and
    CUDA providers run). A graph OpenVINO cannot read goes back to ONNX Runtime
    (:class:`~semseg_ros.core.segmenter.Segmenter` does that).

    Args:
        backend: A name in :data:`BACKEND_CHOICES`.
        device: ``'cpu'`` or ``'cuda'``.
        precision: ``'fp32'`` or ``'int8'``.
        installed: The runtimes installed (default: :func:`available_backends`).
    """
    if backend != AUTO:
        return backend
    installed = available_backends() if installed is None else installed
    if device == 'cpu' and precision == 'int8' and 'openvino' in installed:
        return 'openvino'
    return 'onnxruntime'


def available_backends() -> List[str]:
    """Return the backends whose runtime is installed here (openvino is optional)."""
    import importlib.util
    return [name for name in BACKENDS
            if name != 'openvino' or importlib.util.find_spec('openvino') is not None]


# The package's files that decide what a graph computes: the networks, the exporter's
# translations, the INT8 rewrites and quantization, and InferenceGraph (this module).
GRAPH_RECIPE_FILES = ('models/*.py', 'export/onnx_export.py', 'export/deploy.py',
                      'export/quantize.py', 'core/backends.py')


def recipe_digest(package: Path) -> str:
    """Return a short digest of :data:`GRAPH_RECIPE_FILES` (names, bytes) under ``package``.

    Args:
        package: A ``semseg_ros`` folder.
    """
    digest = hashlib.sha256()
    for pattern in GRAPH_RECIPE_FILES:
        for path in sorted(package.glob(pattern)):
            digest.update(path.relative_to(package).as_posix().encode() + b'\0')
            digest.update(path.read_bytes() + b'\0')
    return digest.hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def graph_recipe_digest() -> str:
    """Return this installed package's :func:`recipe_digest`.

    Cached graphs outlive the code that built them (``$ROS_HOME`` keeps them across package
    upgrades); this digest in their metadata, and so in their cache key, retires them when
    that code changes.
    """
    return recipe_digest(Path(__file__).resolve().parents[1])


def graph_metadata(model_name: str, weights_digest: str, width: int, height: int,
                   precision: str = 'fp32', num_classes: Optional[int] = None
                   ) -> Dict[str, str]:
    """Return the metadata a deployment graph is stored and looked up with.

    Model, input size and class count let a graph given to a node be checked against the
    node's configuration (:func:`check_given_graph`). An INT8 graph also records the
    calibration frames' digest and the recipe version, so a cached one is rebuilt when either
    changes.
    """
    check_precision(precision)
    metadata = {'semseg_ros.model': model_name, 'semseg_ros.weights_sha256': weights_digest,
                'semseg_ros.input_size': f'{width}x{height}', 'semseg_ros.precision': precision,
                'semseg_ros.graph_recipe': graph_recipe_digest()}
    if num_classes is not None:
        metadata['semseg_ros.num_classes'] = str(int(num_classes))
    if precision == 'int8':
        from semseg_ros.export.quantize import calibration_digest, INT8_RECIPE
        metadata.update({'semseg_ros.calibration_sha256': calibration_digest(),
                         'semseg_ros.int8_recipe': INT8_RECIPE})
    return metadata


def export_inference_graph(network: nn.Module, path: Path, width: int, height: int,
                           with_confidence: bool, metadata: Dict[str, str],
                           precision: str = 'fp32') -> Path:
    """Export the uint8-in/uint8-out inference graph (batch 1) to ONNX atomically.

    With ``precision='int8'`` the network is first rewritten (:mod:`semseg_ros.export.deploy`,
    checked to compute the same function), exported, then quantized with the shipped
    calibration frames (:mod:`semseg_ros.export.quantize`).
    """
    from semseg_ros.export.onnx_export import export_module
    check_precision(precision)
    example = torch.zeros(1, height, width, 3, dtype=torch.uint8)
    outputs = ['labels', 'confidence'] if with_confidence else ['labels']
    if precision == 'fp32':
        graph = InferenceGraph(network.eval().cpu(), with_confidence).eval()
        return export_module(graph, (example,), path, ['image'], outputs, metadata=metadata)
    from semseg_ros.export.deploy import int8_deployable
    from semseg_ros.export.quantize import quantize_graph
    graph = InferenceGraph(int8_deployable(network, width, height), with_confidence).eval()
    with tempfile.TemporaryDirectory(prefix='semseg_int8_export_') as work:
        float_graph = export_module(graph, (example,), Path(work) / 'float.onnx', ['image'],
                                    outputs)
        return quantize_graph(float_graph, path, width, height, metadata)


class GraphBuildError(RuntimeError):
    """Building a graph failed; the message is the exporter's error, in one line."""


def build_graph(network: nn.Module, path: Path, width: int, height: int,
                with_confidence: bool, metadata: Dict[str, str], precision: str = 'fp32',
                isolated: Optional[bool] = None) -> Path:
    """Build the graph of :func:`export_inference_graph` and move it to ``path`` whole.

    The work happens in a folder beside ``path``, removed afterwards, so the graph appears at
    ``path`` whole or not at all. Where signals request stops instead of raising (a node,
    :mod:`semseg_ros.core.stopping`), the export runs in a child process
    (:mod:`semseg_ros.export.graph_builder`) that a stop kills at once (then
    :class:`~semseg_ros.core.stopping.StopRequested`); elsewhere (commands, library use) it
    runs here, without the child's interpreter start (about 6 s: torch's import and the
    exporter's first use), and a Ctrl-C interrupts it as any other Python code.

    Args:
        isolated: Run the export in a child process (default: where signals request stops).

    Raises:
        OSError: ``path``'s folder cannot be written.
        GraphBuildError: The export failed.
        StopRequested: The process is stopping.
    """
    import shutil
    from semseg_ros.core import stopping
    from semseg_ros.export import graph_builder as job
    stopping.raise_if_stop_requested()
    if isolated is None:
        isolated = stopping.signals_request_stops()
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f'.{path.name}.', suffix='.build', dir=path.parent))
    try:
        if isolated:
            _build_in_child(network, folder, width, height, with_confidence, metadata,
                            precision)
        else:
            try:
                export_inference_graph(copy.deepcopy(network), folder / job.GRAPH_FILE, width,
                                       height, with_confidence, metadata, precision)
            except Exception as error:
                raise GraphBuildError(f'building the {precision} graph failed: '
                                      f'{job.error_line(error)}') from error
        os.replace(folder / job.GRAPH_FILE, path)
        return path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def graph_build_lock(path: Path) -> Iterator[None]:
    """Hold the build lock of the graph ``path`` (``<path>.lock``) against other processes.

    The lock is the kernel's (``flock``): a process that dies releases it. Waiting for it
    ends with :class:`~semseg_ros.core.stopping.StopRequested` on a stop request.

    Raises:
        OSError: The lock file cannot be created.
        StopRequested: The process is stopping.
    """
    import fcntl
    import time
    from semseg_ros.core import stopping
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + '.lock'), 'a') as lock:
        for attempt in itertools.count():
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt == 0:
                    LOG.info('waiting for another process building %s', path.name)
                stopping.raise_if_stop_requested()
                time.sleep(BUILD_POLL_PERIOD_S)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _build_in_child(network: nn.Module, folder: Path, width: int, height: int,
                    with_confidence: bool, metadata: Dict[str, str], precision: str) -> None:
    """Run the export in :mod:`semseg_ros.export.graph_builder`, killed on a stop request."""
    import subprocess
    import sys
    from semseg_ros.core import stopping
    from semseg_ros.export import graph_builder as job
    torch.save(network, folder / job.NETWORK_FILE)
    (folder / job.JOB_FILE).write_text(json.dumps({
        'width': width, 'height': height, 'with_confidence': with_confidence,
        'metadata': metadata, 'precision': precision}))
    # The child's own temporary files (the exporter's) go into the folder removed after.
    env = dict(os.environ, SEMSEG_BUILD_PARENT=str(os.getpid()), TMPDIR=str(folder))
    with open(folder / 'log.txt', 'wb') as log:
        child = subprocess.Popen(
            [sys.executable, '-m', 'semseg_ros.export.graph_builder', str(folder)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            while True:
                try:
                    code = child.wait(timeout=BUILD_POLL_PERIOD_S)
                    break
                except subprocess.TimeoutExpired:
                    stopping.raise_if_stop_requested()
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    if code != 0:
        error = folder / job.ERROR_FILE
        reason = error.read_text() if error.is_file() else f'exit code {code}'
        LOG.debug('graph build log:\n%s', (folder / 'log.txt').read_text(errors='replace'))
        raise GraphBuildError(f'building the {precision} graph failed: {reason}')


def onnx_metadata(path: Path) -> Dict[str, str]:
    """Return the metadata_props of an ONNX file."""
    import onnx
    proto = onnx.load(str(path), load_external_data=False)
    return {entry.key: entry.value for entry in proto.metadata_props}


class OnnxRuntimeBackend:
    """Run an exported inference graph with ONNX Runtime.

    Providers are chosen best first (TensorRT, CUDA, CPU) among those installed, so the
    same code serves a Jetson; TensorRT caches its engines in the graph cache folder.
    """

    name = 'onnxruntime'

    def __init__(self, graphs: 'OnnxGraphCache', device: str = 'cpu', threads: int = 0,
                 fp16: bool = False):
        import onnxruntime as ort
        self._ort = ort
        self.providers = available_ort_providers(resolve_device_ort(device))
        self.fp16 = fp16
        self.threads = threads
        self._graphs = graphs
        self._sessions: Dict[bool, object] = {}
        self._session(False)  # fail early on a bad model, not on the first frame

    def _provider_options(self) -> List[Tuple[str, dict]]:
        options = []
        for provider in self.providers:
            if provider == 'TensorrtExecutionProvider':
                options.append((provider, {
                    'trt_fp16_enable': bool(self.fp16), 'trt_engine_cache_enable': True,
                    'trt_engine_cache_path': str(self._graphs.engine_folder())}))
            else:
                options.append((provider, {}))
        return options

    def _session(self, with_confidence: bool):
        session = self._sessions.get(with_confidence)
        if session is None:
            ort = self._ort
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            if self.threads > 0:
                options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
            # Idle workers sleep instead of spinning: a robot's cores are shared (camera
            # driver, SLAM...). Measured on 2 cores beside a training job: 2-thread latency
            # 0.76x (fp32) and 0.72x (int8) of the spinning default.
            options.add_session_config_entry('session.intra_op.allow_spinning', '0')
            path = self._graphs.path(with_confidence)
            session = ort.InferenceSession(str(path), options,
                                           providers=self._provider_options())
            self.providers = session.get_providers()
            inputs = session.get_inputs()
            check_deployment_interface(
                path, [i.type == 'tensor(uint8)' for i in inputs],
                [o.name for o in session.get_outputs()], with_confidence)
            self._sessions[with_confidence] = session
        return session

    @property
    def device(self) -> str:
        """'cuda' when a GPU provider (CUDA, TensorRT) runs the graph, else 'cpu'."""
        return 'cuda' if any(p != 'CPUExecutionProvider' for p in self.providers) else 'cpu'

    def run(self, batch: np.ndarray, with_confidence: bool = False):
        """Run ``N x H x W x 3`` uint8 images; return labels (and confidence) as numpy."""
        out = self._session(with_confidence).run(None, {'image': batch})
        return (out[0], out[1]) if with_confidence else out[0]


def check_deployment_interface(path: Path, inputs_uint8: List[bool], outputs: List[str],
                               with_confidence: bool) -> None:
    """Refuse a graph that is not a deployment graph (one uint8 image in, labels out first).

    Args:
        path: The graph's file, named in the message.
        inputs_uint8: Per input, whether it is a uint8 tensor.
        outputs: The output names, in order.
        with_confidence: Whether the confidence output is needed.
    """
    if inputs_uint8 != [True] or not outputs or outputs[0] != 'labels':
        raise ValueError(f'{path} is not a deployment graph (uint8 image in, labels '
                         'out); export one with `semseg export --graph deploy`')
    if with_confidence and 'confidence' not in outputs:
        raise ValueError(f'{path} has no confidence output; export it with '
                         '`semseg export --graph deploy --confidence`')


class _SignalStack(ctypes.Structure):
    """``stack_t`` of sigaltstack(2)."""

    _fields_ = [('ss_sp', ctypes.c_void_p), ('ss_flags', ctypes.c_int),
                ('ss_size', ctypes.c_size_t)]


@contextlib.contextmanager
def keep_signal_stack():
    """Give the calling thread its alternate signal stack back after the block.

    OpenVINO's CPU plugin, when it loads, installs an alternate signal stack on the loading
    thread and may unmap it later without restoring the previous one. Python installs its
    signal handlers with ``SA_ONSTACK``, so a Ctrl-C or SIGTERM delivered to that thread
    afterwards runs on unmapped memory and the process dies with SIGSEGV. The thread keeps
    the stack it had (CPython's faulthandler's, or none). Where sigaltstack(2) cannot be
    called (not glibc), the block runs as it is.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        sigaltstack = libc.sigaltstack
    except (OSError, AttributeError):
        yield
        return
    saved = _SignalStack()
    if sigaltstack(None, ctypes.byref(saved)) != 0:
        yield
        return
    try:
        yield
    finally:
        sigaltstack(ctypes.byref(saved), None)


class OpenVinoBackend:
    """Run an exported inference graph with OpenVINO's CPU plugin (optional runtime).

    It compiles the very ONNX graphs :class:`OnnxRuntimeBackend` runs (from the same
    :class:`OnnxGraphCache`; int8 is the same QDQ graph, run by OpenVINO's own int8 kernels),
    with the LATENCY performance hint and f32 inference precision: on CPUs with AMX or
    AVX-512 BF16 the plugin would otherwise run the float layers in bfloat16, whose labels
    differ from the other backends' (see docs/cpu_inference.md). CPU only.
    """

    name = 'openvino'
    device = 'cpu'

    def __init__(self, graphs: 'OnnxGraphCache', device: str = 'cpu', threads: int = 0):
        try:
            import openvino
        except ImportError as error:
            raise ImportError('backend openvino needs the openvino package (pip install '
                              'openvino); or use backend onnxruntime or auto') from error
        if resolve_device_ort(device) != 'cpu':
            LOG.warning('backend openvino runs on the CPU only: device %s ignored', device)
        with keep_signal_stack():
            self._core, self._u8 = openvino.Core(), openvino.Type.u8
        self.threads = threads
        self.providers = [f'openvino {openvino.__version__.split("-")[0]} CPU']
        self._graphs = graphs
        self._requests: Dict[bool, object] = {}
        self._request(False)  # fail early on a bad model, not on the first frame

    def _request(self, with_confidence: bool):
        request = self._requests.get(with_confidence)
        if request is None:
            path = self._graphs.path(with_confidence)
            with keep_signal_stack():  # the plugin loads on first use
                request = self._compile(path, with_confidence)
            self._requests[with_confidence] = request
        return request

    def _compile(self, path: Path, with_confidence: bool):
        try:
            model = self._core.read_model(str(path))
        except RuntimeError as error:
            # The frontend's report ends with a summary naming the unsupported operators.
            reason = str(error).split('Summary:')[-1].strip().splitlines()[0].strip('- ')
            raise ValueError(f'OpenVINO cannot read {path}: {reason}; use backend '
                             'onnxruntime') from error
        check_deployment_interface(
            path, [i.get_element_type() == self._u8 for i in model.inputs],
            [o.get_any_name() for o in model.outputs], with_confidence)
        compiled = self._core.compile_model(model, 'CPU', {
            'PERFORMANCE_HINT': 'LATENCY', 'INFERENCE_PRECISION_HINT': 'f32',
            'INFERENCE_NUM_THREADS': self.threads})
        return compiled.create_infer_request()

    def run(self, batch: np.ndarray, with_confidence: bool = False):
        """Run a ``1 x H x W x 3`` uint8 image; return labels (and confidence) as numpy.

        The input is read in place (``share_inputs``); the outputs are copied out, since the
        request reuses its buffers on the next frame.
        """
        out = self._request(with_confidence).infer({0: batch}, share_inputs=True)
        return (out[0], out[1]) if with_confidence else out[0]


def resolve_device_ort(device: str) -> str:
    """Validate an ONNX Runtime device name (CUDA availability is decided by the providers)."""
    if device not in DEVICES:
        raise ValueError(f'unknown device {device!r}; valid devices: {", ".join(DEVICES)}')
    return device


def graph_cache_dir(override: Optional[Union[str, Path]] = None) -> Path:
    """Return the folder derived graphs are built into.

    In order: ``override`` (the node's ``graph_cache`` parameter, a CLI's ``--graph-cache``);
    ``$SEMSEG_ROS_CACHE``; ``$ROS_HOME/semseg_ros/graphs`` when ``ROS_HOME`` is set;
    ``$XDG_CACHE_HOME/semseg_ros/graphs`` (``~/.cache`` when unset). Never the installed
    package: on a robot it is often read-only and shared.
    """
    if override:
        return Path(override).expanduser()
    if os.environ.get('SEMSEG_ROS_CACHE'):
        return Path(os.environ['SEMSEG_ROS_CACHE']).expanduser()
    return cache_root() / 'graphs'


@functools.lru_cache(maxsize=1)
def runtime_versions() -> Dict[str, str]:
    """Return the versions a derived graph depends on besides its metadata (looked up once)."""
    from importlib.metadata import version  # without importing the exporter's libraries
    import onnxruntime  # its module: Jetsons install it as another distribution
    # onnxscript's optimizer rewrites the exported graph.
    return {'onnx': version('onnx'), 'onnxruntime': onnxruntime.__version__,
            'onnxscript': version('onnxscript'), 'torch': torch.__version__}


def graph_key(metadata: Dict[str, str]) -> str:
    """Return a short digest of a graph's metadata and the runtime versions: its cache key."""
    recipe = json.dumps({'metadata': metadata, 'runtime': runtime_versions()}, sort_keys=True)
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


def _is_fresh(path: Path, metadata: Dict[str, str]) -> bool:
    """Whether ``path`` is a graph recording all of ``metadata``."""
    if not path.is_file():
        return False
    try:
        recorded = onnx_metadata(path)
    except Exception:  # a corrupt cache file is simply rebuilt
        return False
    return all(recorded.get(key) == value for key, value in metadata.items())


class OnnxGraphCache:
    """Up-to-date ONNX inference graphs of one network, built on first use.

    A graph for the weights, model, input size and precision is looked up (for INT8 the
    calibration frames and recipe count too: all recorded in the metadata), in order:

    * a ``given`` .onnx file, used as it is (after :func:`check_given_graph`);
    * a graph beside the weights, ``<stem>.<W>x<H>[.conf][.int8].onnx``, only read;
    * the cache folder (:func:`graph_cache_dir`), where a missing graph is built, written
      atomically and named ``<stem>.<W>x<H>[.conf][.int8].<key>.onnx`` with the key of
      :func:`graph_key` (metadata plus ONNX Runtime and torch versions), so processes with
      other weights or runtimes never take each other's graphs. TensorRT engines are cached
      in its ``tensorrt`` subfolder.

    With ``folder`` (shipping graphs beside weights), graphs are built there under the
    plain name instead.
    """

    def __init__(self, network: nn.Module, model_name: str, weights: Optional[Path],
                 width: int, height: int, given: Optional[Path] = None,
                 precision: str = 'fp32', num_classes: Optional[int] = None,
                 cache: Optional[Union[str, Path]] = None, folder: Optional[Path] = None):
        check_precision(precision)
        if given is not None:
            check_given_graph(Path(given), precision, model_name, width, height, num_classes)
        self.network, self.model_name, self.weights = network, model_name, weights
        self.width, self.height, self.precision = width, height, precision
        self.given = Path(given) if given is not None else None
        self.cache = graph_cache_dir(cache)
        self.folder = Path(folder) if folder is not None else None
        # Untrained networks are keyed by their state: seeded ones share graphs across runs.
        self.stem = f'{model_name}_untrained' if weights is None else weights.stem
        self.metadata = graph_metadata(model_name, weights_digest(weights, network), width,
                                       height, precision, num_classes)

    def location(self, with_confidence: bool) -> Path:
        """Return the graph's file, which may not be built yet.

        In order: the given one; with ``folder``, the one there; a fresh one beside the
        weights; else the one in the cache.
        """
        return self._locate(with_confidence)[0]

    def _locate(self, with_confidence: bool) -> Tuple[Path, bool]:
        """Return :meth:`location` and whether it is known to be ready (given, or fresh)."""
        if self.given is not None:
            return self.given, True
        name = f'{self.stem}.{self.width}x{self.height}' + ('.conf' if with_confidence else '') \
            + ('.int8' if self.precision == 'int8' else '')
        if self.folder is not None:
            return self.folder / f'{name}.onnx', False
        beside = None if self.weights is None else self.weights.parent / f'{name}.onnx'
        if beside is not None and _is_fresh(beside, self.metadata):
            return beside, True
        return self.cache / f'{name}.{graph_key(self.metadata)}.onnx', False

    def path(self, with_confidence: bool) -> Path:
        """Return the graph's file (:meth:`location`), built first if missing or stale.

        Raises:
            OSError: The cache folder cannot be written (the message says how to choose
                another).
        """
        path, ready = self._locate(with_confidence)
        if ready or _is_fresh(path, self.metadata):
            return path
        try:
            # In the cache, processes starting together (a launch file's nodes, a test
            # run's workers) build a graph once: the others wait for it.
            with (contextlib.nullcontext() if self.folder is not None
                  else graph_build_lock(path)):
                if not _is_fresh(path, self.metadata):
                    LOG.info('building the %s graph of %s at %dx%d into %s', self.precision,
                             self.model_name, self.width, self.height, path)
                    build_graph(self.network, path, self.width, self.height, with_confidence,
                                self.metadata, self.precision)
        except OSError as error:
            reason = error.strerror or str(error)
            raise OSError(f'cannot write the graph cache {path.parent} ({reason}); choose '
                          'a writable folder with the graph_cache parameter, '
                          '--graph-cache or $SEMSEG_ROS_CACHE') from error
        return path

    def engine_folder(self) -> Path:
        """Return (creating it) the folder TensorRT caches its engines in."""
        folder = self.cache / 'tensorrt'
        folder.mkdir(parents=True, exist_ok=True)
        return folder


# What a graph given to a node must record, and how each is named in an error.
_REQUIRED_METADATA = {'semseg_ros.model': 'model', 'semseg_ros.input_size': 'input size',
                      'semseg_ros.num_classes': 'classes'}


def check_given_graph(path: Path, precision: str, model_name: Optional[str] = None,
                      width: Optional[int] = None, height: Optional[int] = None,
                      num_classes: Optional[int] = None) -> None:
    """Refuse a graph file that is missing or was not exported for this configuration.

    The model, input size and class count recorded at export (``semseg export``) must be
    those configured (each one given), and the recorded precision ``precision``; a graph
    without that record is refused too, since nothing would tell a graph of another network
    (whose class ids mean other classes) from the right one.

    Raises:
        FileNotFoundError: No such file.
        ValueError: Another model, size, class count or precision, or no record; the message
            names the file, both sides and how to get a fitting graph, in one line.
    """
    import onnx
    if not path.is_file():
        raise FileNotFoundError(f'ONNX file not found: {path}')
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception:  # not readable as ONNX: ONNX Runtime names the problem when loading
        return
    inputs, outputs = proto.graph.input, proto.graph.output
    if len(inputs) != 1 or inputs[0].type.tensor_type.elem_type != onnx.TensorProto.UINT8 \
            or not outputs or outputs[0].name != 'labels':
        raise ValueError(f'{path} is not a deployment graph (uint8 image in, labels out); '
                         'export one with `semseg export --graph deploy`')
    recorded = {entry.key: entry.value for entry in proto.metadata_props}
    export = (f'`semseg export --model {model_name} --size {width}x{height}'
              f'{" --int8" if precision == "int8" else ""}`')
    missing = [name for key, name in _REQUIRED_METADATA.items() if key not in recorded]
    if model_name is not None and missing:
        raise ValueError(f'{path} does not record its {", ".join(missing)} (not exported by '
                         f'`semseg export`); export the graph with {export}')
    expected = {'semseg_ros.model': model_name,
                'semseg_ros.input_size': None if width is None else f'{width}x{height}',
                'semseg_ros.num_classes': None if num_classes is None else str(num_classes)}
    wrong = [f'{name} {recorded[key]} (configured: {expected[key]})'
             for key, name in _REQUIRED_METADATA.items()
             if expected[key] is not None and recorded.get(key) != expected[key]]
    if wrong:
        raise ValueError(f'{path} was exported for another configuration: {"; ".join(wrong)}. '
                         f'Export one with {export}, or configure the node as the graph')
    graph_precision = recorded.get('semseg_ros.precision')
    if graph_precision is not None and graph_precision != precision:
        raise ValueError(f'{path} holds a {graph_precision} graph but precision {precision} '
                         f'was asked for; export a {precision} graph (`semseg export'
                         f'{" --int8" if precision == "int8" else ""}`) or set precision '
                         f'{graph_precision}')
