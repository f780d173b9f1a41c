"""Static INT8 quantization of deployment graphs with ONNX Runtime's quantization tool.

The recipe (measured on MiniNet-v2-cpu at 512x256; figures in ``docs/cpu_inference.md``):

* QDQ format, weights int8 symmetric per output channel, activations uint8 asymmetric per
  tensor with min/max ranges, so ONNX Runtime's CPU provider fuses each pattern into its int8
  kernels (``QLinearConv``, ``QLinearAdd``, ``QLinearConcat``, uint8 ``MaxPool``) and runs them
  channels-last. Percentile calibration agreed with the float graph on more pixels but lost
  more mIoU (clipped large activations hurt small classes) and took 3x as long; entropy gave
  the same graph as min/max.
* Every op ONNX Runtime runs in int8 is quantized (``QUANTIZED_OPS``), the first conv and the
  classifier included; the network is first rewritten by :mod:`semseg_ros.export.deploy` so no
  float island (transposed conv, lone BatchNorm) is left in the middle.
* The classifier's logits are quantized over ``[runner-up minimum, maximum]`` instead of
  their full range: only the two best logits of a pixel decide its label, and the lowest
  logits (down to -22 against a maximum of 18 for trained MiniNet-v2-cpu) would otherwise
  take half of the 256 levels. Measured on CamVid val (epoch-15 weights): label agreement
  98.33% -> 98.51%, mIoU change -0.58 -> -0.38 points (a float classifier: 98.54%, -0.23,
  but 20% slower).
* Activation ranges come from the 16 CamVid *train* frames shipped in
  ``semseg_ros/data/samples/camvid_train_calib`` (validation frames stay for reporting),
  resized to the network input as the Segmenter resizes camera images.
"""

import hashlib
import logging
import os
from pathlib import Path
import tempfile
from typing import Dict, List, Optional, Union

import cv2
import numpy as np

from semseg_ros.core.resources import calibration_dir
from semseg_ros.export.onnx_export import save_onnx

# Bump when the recipe changes: cached INT8 graphs record it and are rebuilt.
INT8_RECIPE = '1'
QUANTIZED_OPS = ('Conv', 'MaxPool', 'Add', 'Concat', 'Relu', 'Transpose', 'Reshape', 'Pad')
# Ops between the classifier conv and the ArgMax that only move values.
_DATA_MOVEMENT = ('Transpose', 'Reshape', 'DepthToSpace', 'Identity', 'Squeeze', 'Unsqueeze')
# Below the lowest runner-up logit seen in calibration, by this fraction of the range kept.
LOGIT_MARGIN = 0.1
CALIBRATION_SUFFIXES = ('.jpg', '.jpeg', '.png')

LOG = logging.getLogger(__name__)


def calibration_files() -> List[Path]:
    """Return the shipped calibration frames, sorted by name.

    Raises:
        FileNotFoundError: The folder is missing or holds no image.
    """
    folder = calibration_dir()
    files = sorted(p for p in folder.glob('*') if p.suffix.lower() in CALIBRATION_SUFFIXES) \
        if folder.is_dir() else []
    if not files:
        raise FileNotFoundError(f'no INT8 calibration frames in {folder} (expected the '
                                'CamVid train JPEGs shipped with the package)')
    return files


def calibration_digest() -> str:
    """Return a sha256 over the calibration frames' names and bytes."""
    digest = hashlib.sha256()
    for path in calibration_files():
        digest.update(path.name.encode() + b'\0')
        digest.update(path.read_bytes())
    return digest.hexdigest()


def calibration_batches(width: int, height: int) -> List[np.ndarray]:
    """Return the calibration frames as ``1 x height x width x 3`` uint8 RGB batches.

    Raises:
        ValueError: A frame cannot be decoded (named in the message).
    """
    batches = []
    for path in calibration_files():
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f'cannot decode calibration frame {path}')
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        batches.append(cv2.resize(rgb, (width, height), interpolation=cv2.INTER_LINEAR)[None])
    return batches


def quantize_graph(float_graph: Union[str, Path], path: Union[str, Path], width: int,
                   height: int, metadata: Dict[str, str],
                   batches: Optional[List[np.ndarray]] = None,
                   logit_range: bool = True) -> Path:
    """Quantize a float deployment graph (uint8 ``image`` in) to INT8, written atomically.

    Args:
        float_graph: The float graph, exported from a network rewritten by
            :func:`semseg_ros.export.deploy.int8_deployable`.
        path: Destination ``.onnx`` file.
        width: The graph's input width (calibration frames are resized to it).
        height: The graph's input height.
        metadata: ``metadata_props`` to store in the file.
        batches: Calibration batches (``1 x height x width x 3`` uint8 RGB; default: the
            shipped calibration frames).
        logit_range: Quantize the logits over the range that decides labels (see
            :func:`logit_range_overrides`) rather than their full range.

    Returns:
        The path written.
    """
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod,
                                          QuantFormat, QuantType, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if batches is None:
        batches = calibration_batches(width, height)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._batches = iter(batches)

        def get_next(self):
            batch = next(self._batches, None)
            return None if batch is None else {'image': batch}

    path = Path(path)
    with tempfile.TemporaryDirectory(prefix='semseg_int8_') as work:
        prepared = os.path.join(work, 'prepared.onnx')
        quantized = os.path.join(work, 'int8.onnx')
        quant_pre_process(str(float_graph), prepared, skip_symbolic_shape=True)
        overrides = logit_range_overrides(prepared, batches) if logit_range else {}
        LOG.info('calibrating the INT8 graph on %d frames', len(batches))
        quantize_static(prepared, quantized, Reader(), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=list(QUANTIZED_OPS), per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax,
                        extra_options={'WeightSymmetric': True, 'ActivationSymmetric': False,
                                       'TensorQuantOverrides': overrides})
        save_onnx(onnx.load(quantized), path, metadata)
    return path


def _classifier_logits(model):
    """Return ``(conv_output, argmax_input, axis)`` of the graph's classifier, or None.

    The classifier is the conv whose output reaches the labels' ArgMax through ops that only
    move values; graphs that do more in between (e.g. a bilinear resize) are left alone.
    """
    producers = {out: node for node in model.graph.node for out in node.output}
    for node in model.graph.node:
        if node.op_type != 'ArgMax':
            continue
        axis = next((a.i for a in node.attribute if a.name == 'axis'), 0)
        tensor = node.input[0]
        producer = producers.get(tensor)
        while producer is not None and producer.op_type in _DATA_MOVEMENT:
            producer = producers.get(producer.input[0])
        if producer is not None and producer.op_type == 'Conv':
            return producer.output[0], node.input[0], axis
    return None


def logit_range_overrides(prepared: Union[str, Path], batches: List[np.ndarray]) -> Dict:
    """Return ``TensorQuantOverrides`` giving the classifier's logits the range that matters.

    The range runs from the lowest runner-up logit on the calibration frames (less a margin of
    :data:`LOGIT_MARGIN` of the range) to the highest logit: lower logits never decide a label
    and are clamped. Empty when the graph has no classifier conv feeding its ArgMax.
    """
    import onnx
    import onnxruntime as ort
    model = onnx.load(str(prepared))
    found = _classifier_logits(model)
    if found is None:
        return {}
    conv_output, argmax_input, axis = found
    model.graph.output.append(onnx.ValueInfoProto(name=argmax_input))
    session = ort.InferenceSession(model.SerializeToString(), providers=['CPUExecutionProvider'])
    runner_up_min, top_max, low = np.inf, -np.inf, np.inf
    for batch in batches:
        logits = session.run([argmax_input], {'image': batch})[0]
        ordered = np.sort(logits, axis=axis)
        runner_up_min = min(runner_up_min, float(np.take(ordered, -2, axis=axis).min()))
        top_max, low = max(top_max, float(ordered.max())), min(low, float(ordered.min()))
    rmin = max(low, runner_up_min - LOGIT_MARGIN * (top_max - runner_up_min))
    return {conv_output: [{'rmin': np.array(rmin, np.float32),
                           'rmax': np.array(top_max, np.float32)}]}
