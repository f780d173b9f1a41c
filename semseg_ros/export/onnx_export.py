"""Export a segmentation network to ONNX and check it against PyTorch with ONNX Runtime.

The graph has one input, ``image`` (``1 x 3 x H x W`` float32, the size fixed at export), and
one output, ``logits``; a free batch size would make the export about 1.6 times slower, and
the nodes run one image at a time. It is made by the ``torch.export``-based exporter
(``dynamo=True``, the default since PyTorch 2.9; the TorchScript one is deprecated and cannot
export max-unpooling) with its graph optimizer on, which folds the batch norms into the
convolutions. Two translations make ENet's max-pool indices cheap in ONNX Runtime:
``max_pool2d_with_indices`` becomes an ONNX ``MaxPool`` with its ``Indices`` output and
``max_unpool2d`` an ONNX ``MaxUnpool`` that consumes them. The stock translation converts the
indices to PyTorch's per-plane form (an extra full-resolution ``MaxPool``) and unpools with
``ScatterND``; the indices never leave the graph, so the network computes the same function.
"""

import contextlib
import copy
import logging
import os
from pathlib import Path
import tempfile
from typing import Dict, Iterator, Optional, Union
import warnings

import numpy as np
import onnxruntime
import torch
from torch import nn, Tensor

from semseg_ros.core.files import atomic_output
from semseg_ros.models import check_multiple

LOG = logging.getLogger(__name__)
# The exporter's default opset for torch 2.13; ONNX Runtime 1.2x runs it on every provider.
DEFAULT_OPSET = 18


def _translation_table() -> dict:
    """Return the exporter's custom translations (onnxscript loads only when exporting)."""
    from onnxscript import opset18 as op

    def max_pool2d_with_indices(self, kernel_size, stride=(), padding=(0, 0),
                                dilation=(1, 1), ceil_mode=False):
        """Translate ``aten.max_pool2d_with_indices`` to MaxPool keeping ONNX's flat indices."""
        kernel = list(kernel_size) * (2 // len(kernel_size))
        strides = list(stride or kernel_size) * (2 // len(stride or kernel_size))
        pads = list(padding) * (2 // len(padding))
        dilations = list(dilation) * (2 // len(dilation))
        return op.MaxPool(self, kernel_shape=kernel, strides=strides, pads=pads + pads,
                          dilations=dilations, ceil_mode=int(ceil_mode))

    def max_unpool2d(self, indices, output_size):
        """Translate ``aten.max_unpool2d`` to MaxUnpool on the flat indices of that MaxPool.

        The kernel attributes only serve to infer a shape, and the shape is given.
        """
        shape = op.Concat(op.Slice(op.Shape(self), [0], [2]),
                          op.Constant(value_ints=list(output_size)), axis=0)
        return op.MaxUnpool(self, indices, shape, kernel_shape=[2, 2], strides=[2, 2])

    return {torch.ops.aten.max_pool2d_with_indices.default: max_pool2d_with_indices,
            torch.ops.aten.max_unpool2d.default: max_unpool2d}


class _Float16(nn.Module):
    """Run a half-precision copy of a model behind a float32 input and output."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model.half()

    def forward(self, image: Tensor) -> Tensor:
        return self.model(image.half()).float()


def export_onnx(model: nn.Module, path: Union[str, Path], width: int, height: int,
                fp16: bool = False, opset: Optional[int] = None) -> Path:
    """Export ``model`` in eval mode to an ONNX file, written atomically.

    Args:
        model: A network from :func:`semseg_ros.models.create_model` (any module mapping
            ``N x 3 x H x W`` images to logits works). It is not modified.
        path: Destination ``.onnx`` file; its folder is created if missing.
        width: Input width the graph is built for.
        height: Input height the graph is built for.
        fp16: Store weights and compute in float16 (input and output stay float32).
        opset: ONNX opset (default :data:`DEFAULT_OPSET`).

    Returns:
        The path written.

    Raises:
        ValueError: The size is not a positive multiple of the model's ``input_multiple``.
    """
    name = getattr(model, 'model_name', type(model).__name__)
    check_multiple(name, width, height, getattr(model, 'input_multiple', 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device('cpu')
    network = copy.deepcopy(model).eval()
    if fp16:
        network = _Float16(network)
    image = torch.zeros(1, 3, height, width, device=device)
    return export_module(network, (image,), path, ['image'], ['logits'], opset)


def export_module(module: nn.Module, example_inputs: tuple, path: Union[str, Path],
                  input_names: list, output_names: list, opset: Optional[int] = None,
                  metadata: Optional[Dict[str, str]] = None) -> Path:
    """Export any eval-mode module with the translations above, atomically, with metadata.

    Args:
        module: The module to export (not modified).
        example_inputs: Inputs fixing the graph's shapes and types.
        path: Destination ``.onnx`` file; its folder is created if missing.
        input_names: Names of the graph inputs.
        output_names: Names of the graph outputs.
        opset: ONNX opset (default :data:`DEFAULT_OPSET`).
        metadata: ``metadata_props`` to store in the file (e.g. the weights' digest).
    """
    import onnx
    with tempfile.TemporaryDirectory(prefix='semseg_export_') as work, _exporter_chatter():
        exported = os.path.join(work, 'graph.onnx')
        torch.onnx.export(
            module, example_inputs, exported, input_names=input_names,
            output_names=output_names, opset_version=opset or DEFAULT_OPSET, dynamo=True,
            external_data=False, custom_translation_table=_translation_table(), verbose=False)
        return save_onnx(onnx.load(exported), path, metadata)


class _ToDebug(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        LOG.debug('exporter: %s', record.getMessage())


@contextlib.contextmanager
def _exporter_chatter() -> Iterator[None]:
    """Route the exporter's log lines and Python warnings to this module's debug log.

    A node builds graphs on first use: the exporter's notes (optional operator libraries not
    installed, deprecations inside PyTorch) are not the robot operator's business.
    """
    logger = logging.getLogger('torch.onnx')  # PyTorch gives it a stderr handler of its own
    handlers, propagate, level = logger.handlers[:], logger.propagate, logger.level
    logger.handlers = [_ToDebug()]
    logger.propagate = False
    logger.setLevel(logging.DEBUG if LOG.isEnabledFor(logging.DEBUG) else logging.WARNING)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            yield
        for warning in caught:
            LOG.debug('exporter: %s: %s', warning.category.__name__, warning.message)
    finally:
        logger.handlers, logger.propagate, logger.level = handlers, propagate, level


def save_onnx(proto, path: Union[str, Path], metadata: Optional[Dict[str, str]] = None) -> Path:
    """Write an ONNX ``ModelProto`` atomically (temporary name, then rename), with metadata.

    Args:
        proto: The model.
        path: Destination ``.onnx`` file; its folder is created if missing.
        metadata: ``metadata_props`` to set (replacing any already there), or None to keep.
    """
    import onnx
    if metadata is not None:
        del proto.metadata_props[:]
        for key, value in metadata.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, str(value)
    with atomic_output(path) as tmp:
        onnx.save(proto, str(tmp))
    return Path(path)


def compare_with_torch(model: nn.Module, onnx_path: Union[str, Path], width: int, height: int,
                       seed: int = 0) -> float:
    """Return the largest absolute difference between PyTorch's and ONNX Runtime's logits.

    ONNX Runtime runs on the CPU; both get one random ``1 x 3 x height x width`` image.

    Args:
        model: The network the file was exported from (run in eval mode, then restored).
        onnx_path: The exported file.
        width: Input width.
        height: Input height.
        seed: Seed of the random input.
    """
    generator = torch.Generator().manual_seed(seed)
    image = torch.randn(1, 3, height, width, generator=generator)
    session = onnxruntime.InferenceSession(str(onnx_path), providers=['CPUExecutionProvider'])
    onnx_logits = session.run(['logits'], {'image': image.numpy()})[0]
    was_training = model.training
    network = model.eval()
    try:
        parameter = next(network.parameters(), None)
        device = parameter.device if parameter is not None else torch.device('cpu')
        with torch.no_grad():
            torch_logits = network(image.to(device)).float().cpu().numpy()
    finally:
        model.train(was_training)
    if torch_logits.shape != onnx_logits.shape:
        raise ValueError(f'{onnx_path}: ONNX logits have shape {onnx_logits.shape}, '
                         f'PyTorch {torch_logits.shape}')
    return float(np.max(np.abs(torch_logits - onnx_logits)))
