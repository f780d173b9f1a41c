"""``semseg export``: write a checked ONNX file of a network for deployment.

Two graphs are offered:

* ``deploy`` (default): the graph the Segmenter runs -- ``N x H x W x 3`` uint8 RGB in,
  ``labels`` (uint8 class ids) out, plus ``confidence`` with ``--confidence``. Give it to the
  node as ``onnx_path``.
* ``logits``: the plain network -- ``N x 3 x H x W`` float32 RGB/255 in, ``logits`` out --
  for other runtimes and for ``trtexec`` on a Jetson.

``--int8`` quantizes the deploy graph (give it to the node with ``precision: int8``).

Either way the file is run with ONNX Runtime and compared with PyTorch before it is kept:
float graphs on a random image, an INT8 graph on the bundled CamVid sample frames (real
images: calibration ranges do not cover noise), where its labels must agree with PyTorch's on
at least ``INT8_MIN_AGREEMENT`` of the pixels.
"""

import argparse
from pathlib import Path
import sys
from typing import List, Optional, Tuple

import cv2
import numpy as np
import torch

from semseg_ros.core.backends import export_inference_graph, graph_metadata, InferenceGraph
from semseg_ros.core.bench import parse_size
from semseg_ros.core.classes import load_class_set
from semseg_ros.core.resources import samples_dir, shipped_weights
from semseg_ros.core.weights import file_digest_or_none, load_weights
from semseg_ros.models import check_input_size, create_model, list_models


# INT8 rounding flips only pixels whose top two logits nearly tie: 97-99% of pixels agree
# with the float network on real CamVid frames (untrained and trained weights alike); a
# broken graph (wrong layout, scale or range) agrees on far fewer.
INT8_MIN_AGREEMENT = 0.9
SAMPLE_SEQUENCE = 'camvid_0016E5'


def sample_batches(width: int, height: int, count: int = 4) -> np.ndarray:
    """Return ``count`` bundled CamVid sample frames as an ``N x H x W x 3`` uint8 RGB batch."""
    files = sorted((samples_dir() / SAMPLE_SEQUENCE / 'images').glob('*.jpg'))[:count]
    if not files:
        raise FileNotFoundError(f'no sample frames in {samples_dir() / SAMPLE_SEQUENCE}')
    return np.stack([cv2.resize(cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB),
                                (width, height), interpolation=cv2.INTER_LINEAR)
                     for f in files])


def check_deploy_graph(network, path: Path, width: int, height: int,
                       with_confidence: bool, images: Optional[np.ndarray] = None) -> float:
    """Return the fraction of pixels whose ONNX Runtime labels equal PyTorch's.

    Args:
        network: The network the graph was exported from.
        path: The deploy graph.
        width: Input width.
        height: Input height.
        with_confidence: Whether the graph also outputs the confidence.
        images: ``N x H x W x 3`` uint8 RGB images, run one at a time (default: one random
            image).
    """
    import onnxruntime as ort
    if images is None:
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (1, height, width, 3), dtype=np.uint8)
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    graph = InferenceGraph(network.eval(), with_confidence)
    agreements = []
    for image in images:
        onnx_labels = session.run(None, {'image': image[None]})[0]
        with torch.no_grad():
            out = graph(torch.from_numpy(image[None]))
        torch_labels = (out[0] if with_confidence else out).numpy()
        agreements.append(np.mean(onnx_labels == torch_labels))
    return float(np.mean(agreements))


def verify_deploy_graph(network, path: Path, width: int, height: int, with_confidence: bool,
                        precision: str) -> Tuple[bool, str]:
    """Check a deploy graph against PyTorch; return (good enough, a one-line report).

    A float graph must give PyTorch's labels on all but 0.1 % of the pixels of a random
    image; an INT8 graph on at least ``INT8_MIN_AGREEMENT`` of the bundled sample frames'.
    """
    if precision == 'int8':
        agreement = check_deploy_graph(network, path, width, height, with_confidence,
                                       sample_batches(width, height))
        return agreement >= INT8_MIN_AGREEMENT, (
            f'INT8 labels agree with PyTorch on {agreement:.2%} of the pixels of '
            f'{SAMPLE_SEQUENCE} sample frames')
    agreement = check_deploy_graph(network, path, width, height, with_confidence)
    return agreement > 0.999, f'labels agree with PyTorch on {agreement:.4%} of pixels'


def main(argv: Optional[List[str]] = None) -> int:
    """Run ``semseg export``."""
    parser = argparse.ArgumentParser(prog='semseg export', description=__doc__.split('\n')[0])
    parser.add_argument('--model', required=True, help=', '.join(list_models()))
    parser.add_argument('--weights', default='shipped',
                        help='weights file, "shipped" (default) or "none" (untrained)')
    parser.add_argument('--class-set', default='camvid')
    parser.add_argument('--size', type=parse_size, required=True, help='input WxH, e.g. 512x256')
    parser.add_argument('--graph', choices=('deploy', 'logits'), default='deploy')
    parser.add_argument('--confidence', action='store_true',
                        help='deploy graph: also output the confidence map')
    parser.add_argument('--fp16', action='store_true',
                        help='logits graph: store weights in half precision (GPU runtimes)')
    parser.add_argument('--int8', action='store_true',
                        help='deploy graph: quantize to INT8 (ONNX Runtime, calibrated on '
                             'the shipped CamVid train frames); run it with precision int8')
    parser.add_argument('--out', type=Path, required=True, help='output .onnx file')
    args = parser.parse_args(argv)
    if args.int8 and args.graph != 'deploy':
        parser.error('--int8 quantizes the deploy graph only (not --graph logits)')
    try:
        if args.model not in list_models():
            raise ValueError(f'unknown model {args.model!r}; valid: {", ".join(list_models())}')
        check_input_size(args.model, *args.size)
        num_classes = load_class_set(args.class_set).num_classes
        network = create_model(args.model, num_classes=num_classes).eval()
        weights = None
        if args.weights != 'none':
            weights = (shipped_weights(args.model) if args.weights == 'shipped'
                       else Path(args.weights))
            load_weights(network, weights, args.model, num_classes)
    except (ValueError, FileNotFoundError) as error:
        print(f'semseg export: {error}', file=sys.stderr)
        return 2
    width, height = args.size
    if args.graph == 'deploy':
        precision = 'int8' if args.int8 else 'fp32'
        metadata = graph_metadata(args.model, file_digest_or_none(weights), width, height,
                                  precision, num_classes)
        export_inference_graph(network, args.out, width, height, args.confidence, metadata,
                               precision)
        ok, report = verify_deploy_graph(network, args.out, width, height, args.confidence,
                                         precision)
    else:
        from semseg_ros.core.onnx_export import compare_with_torch, export_onnx
        export_onnx(network, args.out, width, height, fp16=args.fp16)
        difference = compare_with_torch(network, args.out, width, height)
        ok = difference < (1e-2 if args.fp16 else 1e-3)
        report = f'max |logits difference| with PyTorch {difference:.2e}'
    if not ok:
        args.out.unlink(missing_ok=True)
        print(f'semseg export: the exported graph does not match PyTorch ({report}); '
              'nothing written', file=sys.stderr)
        return 1
    kind = f'{args.graph} graph' + (', int8' if args.int8 else '')
    print(f'wrote {args.out} ({kind}, {args.model}, {width}x{height}): {report}')
    return 0
