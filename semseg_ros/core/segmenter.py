"""The Segmenter: any RGB image in, class ids (and confidence) out, with stage timings.

This is the inference core the nodes, the bag tools and the benchmarks share::

    segmenter = Segmenter(SegmenterConfig(model='mininet_v2_cpu', backend='onnxruntime'))
    result = segmenter.segment(rgb)          # rgb: H x W x 3 uint8
    result.labels                            # H x W uint8 class ids
"""

from dataclasses import asdict, dataclass, field
import logging
from pathlib import Path
import time
from typing import Dict, Optional

import cv2
import numpy as np

from semseg_ros.core.backends import (AUTO, BACKEND_CHOICES, check_precision, DEVICES,
                                      OnnxGraphCache, OnnxRuntimeBackend, OpenVinoBackend,
                                      PRECISIONS, resolve_backend, TorchBackend)
from semseg_ros.core.classes import load_class_set
from semseg_ros.core.options import check_options, option
from semseg_ros.core.resources import shipped_weights
from semseg_ros.core.weights import load_weights, WeightsError
from semseg_ros.models import check_input_size, create_model, list_models

LOG = logging.getLogger(__name__)

OUTPUT_RESOLUTIONS = ('input', 'network')
# Special values of SegmenterConfig.weights.
SHIPPED, UNTRAINED = 'shipped', 'none'
# The torch seed of an untrained network's weights.
UNTRAINED_SEED = 0


@dataclass
class SegmenterConfig:
    """Everything that defines a Segmenter, each option declared once.

    The segmentation node's parameters, the commands' flags and the README's parameter table
    are generated from these fields (:mod:`semseg_ros.core.options`). ``weights`` may be a
    file, ``'shipped'`` (the package's CamVid weights) or ``'none'`` (untrained network: for
    benchmarks and tests only); ``precision='int8'`` builds a statically quantized graph on
    first use (onnxruntime and openvino backends; about 1.5x faster than fp32 for MiniNet-v2-cpu
    on a CPU with VNNI, see docs/cpu_inference.md). ``describe()['backend']`` is the runtime
    that runs, which ``backend='auto'`` chose.
    """

    model: str = option('mininet_v2_cpu', 'Segmentation network (registry name).',
                        choices=tuple(list_models()))
    weights: str = option(SHIPPED, "Weights: 'shipped' (the package's CamVid weights), 'none' "
                          '(untrained network, for tests only) or a weights file path.')
    class_set: str = option('camvid', 'Class set (shipped name or YAML path); its size must '
                            'match the weights.')
    backend: str = option(AUTO, "Inference runtime; 'auto': the fastest installed for the "
                          'device and precision (openvino for int8 on a CPU, else '
                          "onnxruntime); 'openvino' (CPU only) needs the openvino package.",
                          choices=BACKEND_CHOICES)
    device: str = option('cpu', 'Inference device; cuda falls back to the CPU with a warning '
                         'when it is not available.', choices=DEVICES)
    input_width: int = option(512, "Network input width in pixels (a multiple of the model's "
                              'input multiple).', limits=(8, 8192))
    input_height: int = option(256, 'Network input height in pixels.', limits=(8, 8192))
    threads: int = option(0, 'CPU inference threads (0: the runtime default).',
                          limits=(0, 256))
    fp16: bool = option(False, 'Half precision where the device supports it (CUDA, '
                        'TensorRT).')
    onnx_path: str = option('', 'A graph from `semseg export` to run instead of exporting one '
                            '(onnxruntime, openvino backends).')
    precision: str = option('fp32', "Numeric precision of the graph: 'fp32', or 'int8' "
                            '(statically quantized, built and calibrated on first use; '
                            'onnxruntime, openvino backends).', choices=PRECISIONS)
    graph_cache: str = option('', 'Folder derived graphs (ONNX, INT8, TensorRT engines) are '
                              'built into; empty: $SEMSEG_ROS_CACHE, else '
                              '$ROS_HOME/semseg_ros/graphs, else '
                              '$XDG_CACHE_HOME/semseg_ros/graphs.')

    def validate(self) -> None:
        """Raise ValueError naming the first invalid field and its valid values."""
        if self.model not in list_models():
            raise ValueError(f'unknown model {self.model!r}; valid models: '
                             f'{", ".join(list_models())}')
        if self.backend not in BACKEND_CHOICES:
            raise ValueError(f'unknown backend {self.backend!r}; valid backends: '
                             f'{", ".join(BACKEND_CHOICES)}')
        check_input_size(self.model, self.input_width, self.input_height)
        if self.threads < 0:
            raise ValueError(f'threads must be >= 0, got {self.threads}')
        check_precision(self.precision, self.backend)
        check_options(self)


@dataclass
class SegmentationResult:
    """What :meth:`Segmenter.segment` returns.

    Attributes:
        labels: ``H x W`` uint8 class ids (input or network resolution).
        confidence: ``H x W`` uint8, 255 x the top softmax probability, or None.
        timings_ms: Milliseconds per stage: ``preprocess``, ``inference``, ``postprocess``.
    """

    labels: np.ndarray
    confidence: Optional[np.ndarray] = None
    timings_ms: Dict[str, float] = field(default_factory=dict)


class Segmenter:
    """Segment RGB images with a registered network on the chosen backend."""

    def __init__(self, config: SegmenterConfig):
        config.validate()
        self.config = config
        self.class_set = load_class_set(config.class_set)
        num_classes = self.class_set.num_classes
        # Untrained: seeded, so every process has the same network (and shares its graphs).
        self.network = create_model(config.model, num_classes=num_classes,
                                    seed=UNTRAINED_SEED if config.weights == UNTRAINED else None)
        self.weights_path = self._load_weights(num_classes)
        self.network.eval()
        size = (config.input_width, config.input_height)
        self.input_size = size
        stride = self.network.output_stride
        self.network_output_size = (size[0] // stride, size[1] // stride)
        runtime = resolve_backend(config.backend, config.device, config.precision)
        if runtime == 'torch':
            self.backend = TorchBackend(self.network, config.device, config.fp16,
                                        config.threads)
        else:
            graphs = OnnxGraphCache(self.network, config.model, self.weights_path, *size,
                                    given=Path(config.onnx_path) if config.onnx_path else None,
                                    precision=config.precision, num_classes=num_classes,
                                    cache=config.graph_cache or None)
            self.backend = self._onnx_backend(runtime, graphs)
        self.device = self.backend.device

    def _onnx_backend(self, runtime: str, graphs: OnnxGraphCache):
        config = self.config
        if runtime == 'openvino':
            try:
                return OpenVinoBackend(graphs, config.device, config.threads)
            except ValueError as error:  # a graph OpenVINO's frontend cannot read
                if config.backend != AUTO:
                    raise
                LOG.info('%s: backend auto runs it on onnxruntime', error)
        return OnnxRuntimeBackend(graphs, config.device, config.threads, config.fp16)

    def _load_weights(self, num_classes: int) -> Optional[Path]:
        weights = self.config.weights
        if weights == UNTRAINED:
            LOG.warning('%s runs with untrained weights: its output is meaningless',
                        self.config.model)
            return None
        path = shipped_weights(self.config.model) if weights == SHIPPED else Path(weights)
        if weights == SHIPPED and not path.is_file():
            raise WeightsError(f'no shipped weights for {self.config.model} yet ({path}); '
                               'train them with `semseg train` and pass the file as weights, '
                               f'or choose a model with shipped weights')
        load_weights(self.network, path, self.config.model, num_classes)
        return path

    def describe(self) -> Dict[str, object]:
        """Return the configuration and the resolved runtime (providers, weights)."""
        info = asdict(self.config)
        info.update(backend=self.backend.name, providers=list(self.backend.providers),
                    weights_file=str(self.weights_path) if self.weights_path else 'untrained',
                    network_output=f'{self.network_output_size[0]}x'
                                   f'{self.network_output_size[1]}')
        return info

    def segment(self, image: np.ndarray, output_resolution: str = 'input',
                with_confidence: bool = False) -> SegmentationResult:
        """Segment one RGB image.

        Args:
            image: ``H x W x 3`` uint8 RGB, any size.
            output_resolution: ``'input'`` (nearest-neighbour back to H x W) or
                ``'network'`` (the network's own output size).
            with_confidence: Also return the per-pixel confidence.

        Raises:
            ValueError: The image is not ``H x W x 3`` uint8 or the resolution is unknown.
        """
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f'expected an H x W x 3 uint8 RGB image, got shape {image.shape} '
                             f'and dtype {image.dtype}')
        if output_resolution not in OUTPUT_RESOLUTIONS:
            raise ValueError(f'unknown output_resolution {output_resolution!r}; valid: '
                             f'{", ".join(OUTPUT_RESOLUTIONS)}')
        height, width = image.shape[:2]
        start = time.perf_counter()
        if (width, height) != self.input_size:
            image = cv2.resize(image, self.input_size, interpolation=cv2.INTER_LINEAR)
        batch = np.ascontiguousarray(image)[None]
        ready = time.perf_counter()
        out = self.backend.run(batch, with_confidence)
        done = time.perf_counter()
        labels, confidence = (out[0][0], out[1][0]) if with_confidence else (out[0], None)
        if output_resolution == 'input' and labels.shape != (height, width):
            labels = cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST)
            if confidence is not None:
                confidence = cv2.resize(confidence, (width, height),
                                        interpolation=cv2.INTER_NEAREST)
        end = time.perf_counter()
        return SegmentationResult(labels, confidence, {
            'preprocess': (ready - start) * 1e3, 'inference': (done - ready) * 1e3,
            'postprocess': (end - done) * 1e3})
