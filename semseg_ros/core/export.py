"""``semseg export``: write a checked ONNX file of a network for deployment.

Two graphs are offered:

* ``deploy`` (default): the graph the Segmenter runs -- ``N x H x W x 3`` uint8 RGB in,
  ``labels`` (uint8 class ids) out, plus ``confidence`` with ``--confidence``. Give it to the
  node as ``onnx_path``.
* ``logits``: the plain network -- ``N x 3 x H x W`` float32 RGB/255 in, ``logits`` out --
  for other runtimes and for ``trtexec`` on a Jetson.

Either way the file is run with ONNX Runtime and compared with PyTorch before it is kept.
"""

import argparse
from pathlib import Path
import sys
from typing import List, Optional

import numpy as np
import torch

from semseg_ros.core.backends import export_inference_graph, InferenceGraph
from semseg_ros.core.bench import parse_size
from semseg_ros.core.classes import load_class_set
from semseg_ros.core.resources import shipped_weights
from semseg_ros.core.weights import file_digest_or_none, load_weights
from semseg_ros.models import check_input_size, create_model, list_models


def check_deploy_graph(network, path: Path, width: int, height: int,
                       with_confidence: bool) -> float:
    """Return the fraction of pixels whose ONNX Runtime labels equal PyTorch's."""
    import onnxruntime as ort
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (1, height, width, 3), dtype=np.uint8)
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    onnx_labels = session.run(None, {'image': image})[0]
    with torch.no_grad():
        out = InferenceGraph(network.eval(), with_confidence)(torch.from_numpy(image))
    torch_labels = (out[0] if with_confidence else out).numpy()
    return float(np.mean(onnx_labels == torch_labels))


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
    parser.add_argument('--out', type=Path, required=True, help='output .onnx file')
    args = parser.parse_args(argv)
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
        metadata = {'semseg_ros.model': args.model,
                    'semseg_ros.weights_sha256': file_digest_or_none(weights),
                    'semseg_ros.input_size': f'{width}x{height}'}
        export_inference_graph(network, args.out, width, height, args.confidence, metadata)
        agreement = check_deploy_graph(network, args.out, width, height, args.confidence)
        ok = agreement > 0.999
        report = f'labels agree with PyTorch on {agreement:.4%} of pixels'
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
    print(f'wrote {args.out} ({args.graph} graph, {args.model}, {width}x{height}): {report}')
    return 0
