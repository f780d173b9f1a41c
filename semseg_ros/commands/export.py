"""``semseg export``: write a checked ONNX file of a network for deployment.

``deploy`` (default) is the graph the Segmenter runs (uint8 RGB in, class ids out; give it to
the node as ``onnx_path``), ``logits`` the plain network for other runtimes and ``trtexec``;
``--int8`` quantizes the deploy graph. Either way the file is compared with PyTorch before it
is kept (:mod:`semseg_ros.export.verify`).
"""

import argparse
from pathlib import Path
import sys
from typing import List, Optional

from semseg_ros.commands.options import add_segmenter_options
from semseg_ros.core.backends import export_inference_graph, graph_metadata
from semseg_ros.core.classes import load_class_set
from semseg_ros.core.resources import shipped_weights
from semseg_ros.core.segmenter import UNTRAINED_SEED
from semseg_ros.core.weights import load_weights, weights_digest
from semseg_ros.export.verify import verify_deploy_graph
from semseg_ros.models import check_input_size, create_model


def main(argv: Optional[List[str]] = None) -> int:
    """Run ``semseg export``."""
    parser = argparse.ArgumentParser(prog='semseg export', description=__doc__.split('\n')[0])
    add_segmenter_options(parser, names=['model', 'weights', 'class_set', 'size'],
                          required=['model', 'size'])
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
        check_input_size(args.model, *args.size)
        num_classes = load_class_set(args.class_set).num_classes
        network = create_model(args.model, num_classes=num_classes, seed=(
            UNTRAINED_SEED if args.weights == 'none' else None)).eval()
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
        metadata = graph_metadata(args.model, weights_digest(weights, network), width, height,
                                  precision, num_classes)
        export_inference_graph(network, args.out, width, height, args.confidence, metadata,
                               precision)
        ok, report = verify_deploy_graph(network, args.out, width, height, args.confidence,
                                         precision)
    else:
        from semseg_ros.export.onnx_export import compare_with_torch, export_onnx
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


if __name__ == '__main__':
    sys.exit(main())
