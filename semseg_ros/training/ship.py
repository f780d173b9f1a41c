"""Ship a run's best weights in the package: weights file and model card, graphs checked.

One step instead of three, so the shipped files never disagree::

    python -m semseg_ros.training.ship runs/mininet_v2_cpu --size 512x256 --int8

1. the run's ``best.pt`` becomes ``semseg_ros/weights/<model>_camvid.pt`` (weights and
   provenance only, :func:`semseg_ros.training.train.export_best`);
2. the ONNX Runtime graphs the node builds on first use are built for each ``--size``
   (labels, labels + confidence, and with ``--int8`` the quantized ones) and checked against
   PyTorch (labels equal on a random image; INT8: on 90 % of the bundled sample frames'
   pixels), so weights whose graphs would not match are never shipped; the graphs are
   derived files, left in the local cache and never committed; graphs of this model left from
   older weights are removed;
3. ``MODEL_CARD.md`` and ``training_curves.png`` are regenerated.
"""

import argparse
from pathlib import Path
import sys
from typing import Dict, List, Optional

from semseg_ros.core.backends import OnnxGraphCache
from semseg_ros.core.resources import weights_dir
from semseg_ros.core.sizes import parse_size
from semseg_ros.core.weights import load_weights, read_weights
from semseg_ros.export.verify import verify_deploy_graph
from semseg_ros.models import check_input_size, create_model
from semseg_ros.training import model_card
from semseg_ros.training.train import export_best


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    parser = argparse.ArgumentParser(prog='python -m semseg_ros.training.ship',
                                     description=__doc__.split('\n')[0])
    parser.add_argument('run_dir', type=Path, help='training run folder (semseg train --out)')
    parser.add_argument('--size', action='append', default=[], metavar='WxH',
                        help='pre-build the inference graphs at this input size (repeatable)')
    parser.add_argument('--int8', action='store_true',
                        help='also pre-build the INT8 graphs (calibrated on bundled frames)')
    parser.add_argument('--weights-dir', type=Path, default=None,
                        help="where shipped weights live (default: the package's)")
    return parser


def remove_stale_graphs(folder: Path, stem: str, keep: List[Path]) -> List[Path]:
    """Delete ``<stem>.*.onnx`` graphs (and build locks) in ``folder`` but ``keep``'s.

    Returns:
        The graphs deleted.
    """
    removed = []
    for path in sorted(folder.glob(f'{stem}.*.onnx')):
        if path not in keep:
            path.unlink()
            path.with_name(path.name + '.lock').unlink(missing_ok=True)
            removed.append(path)
    return removed


def ship(run_dir: Path, sizes: List[str], int8: bool = False,
         folder: Optional[Path] = None) -> Dict[Path, str]:
    """Ship a run's best weights into ``folder``; return the files written and their checks.

    Every graph is run with ONNX Runtime and compared with PyTorch (as ``semseg export``
    does) before it is kept.

    Raises:
        WeightsError: The run has no checkpoint.
        ValueError: A size is malformed or not a multiple the model accepts, or a graph does
            not match PyTorch.
    """
    folder = Path(folder) if folder is not None else weights_dir()
    source = read_weights(Path(run_dir) / 'last.pt')
    model_name = source['model']
    parsed = [parse_size(size) for size in sizes]
    for width, height in parsed:  # before anything is written
        check_input_size(model_name, width, height)
    weights = export_best(run_dir, folder / f'{model_name}_camvid.pt')
    network = create_model(model_name, source['num_classes'])
    load_weights(network, weights, model_name, source['num_classes'])
    network.eval()
    graphs, reports = [], {}
    for width, height in parsed:
        for precision in ('fp32', 'int8') if int8 else ('fp32',):
            cache = OnnxGraphCache(network, model_name, weights, width, height,
                                   precision=precision, num_classes=source['num_classes'],
                                   folder=folder)
            for with_confidence in (False, True):
                graph = cache.path(with_confidence)
                good, reports[graph] = verify_deploy_graph(network, graph, width, height,
                                                           with_confidence, precision)
                graphs.append(graph)
                if not good:
                    for path in graphs:
                        path.unlink(missing_ok=True)  # a node would rebuild them
                    raise ValueError(f'{graph.name} does not match PyTorch '
                                     f'({reports[graph]}); graphs removed')
    remove_stale_graphs(folder, weights.stem, graphs)
    model_card.main(['--folder', str(folder)])
    return {weights: 'weights and provenance', **reports}


def main(argv: Optional[List[str]] = None) -> int:
    """Ship the run's best weights; return the exit code (2: bad arguments or run)."""
    args = build_parser().parse_args(argv)
    try:
        written = ship(args.run_dir, args.size, args.int8, args.weights_dir)
    except (ValueError, OSError) as error:  # WeightsError is a ValueError
        print(f'ship: {error}', file=sys.stderr)
        return 2
    for path, report in written.items():
        print(f'shipped {path}: {report}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
