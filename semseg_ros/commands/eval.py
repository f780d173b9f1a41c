"""``semseg eval``: score a network on a dataset split: per-class IoU, mIoU, accuracies, plots.

The network runs in PyTorch on each full image (padded to the model's input multiple, or
resized to ``--size``), and its logits are brought back to label resolution before scoring,
so the figures are at the labels' own resolution. Without ``--weights`` the model's shipped
CamVid weights are used.
"""

import argparse
import datetime
import json
from pathlib import Path
import sys
from typing import Any, Dict, List, Optional

import torch

from semseg_ros.core.files import write_text_atomic
from semseg_ros.core.metrics import ConfusionMatrix
from semseg_ros.core.resources import shipped_weights
from semseg_ros.core.sizes import parse_size
from semseg_ros.core.weights import load_weights
from semseg_ros.data.datasets import build_dataset, DATASETS, parse_sequences
from semseg_ros.models import check_input_size, create_model, model_info
from semseg_ros.training.engine import (
    AMP_MODES, evaluate_model, limit_cv2_threads, select_device)
from semseg_ros.training.plots import plot_class_iou, plot_confusion_matrix

PROG = 'semseg eval'


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``semseg eval``."""
    parser = argparse.ArgumentParser(
        prog=PROG, description='Evaluate a segmentation network on a dataset split: '
                               'per-class IoU, mIoU, pixel and mean class accuracy.')
    parser.add_argument('--model', required=True, help='registered model name')
    parser.add_argument('--weights', help='weights or checkpoint file (default: the shipped '
                        'CamVid weights of the model)')
    parser.add_argument('--dataset', choices=DATASETS, default='camvid',
                        help='dataset layout (default: camvid)')
    parser.add_argument('--data-root', required=True, help='dataset folder')
    parser.add_argument('--class-set', help='class set (name or YAML) of a folder dataset')
    parser.add_argument('--split', default='val', help='split to score, or several joined by '
                        '+ (default: val)')
    parser.add_argument('--sequences', metavar='SEQ[,SEQ]', help='score only the frames of '
                        'these sequences (file names up to the first underscore; CamVid: '
                        '0001TP, 0006R0, 0016E5), e.g. the ones a run held out')
    parser.add_argument('--size', help='network input WxH (default: each image at full size, '
                        'padded to the input multiple); scores stay at label resolution')
    parser.add_argument('--json', metavar='FILE', help='write every figure, including the '
                        'confusion matrix, to this JSON file')
    parser.add_argument('--plots', metavar='DIR', help='write confusion_matrix.png and '
                        'class_iou.png to this folder')
    parser.add_argument('--batch-size', type=int, default=4, help='images per forward pass '
                        '(default: 4)')
    parser.add_argument('--workers', type=int, default=0, help='data-loader processes')
    parser.add_argument('--threads', type=int, help='torch threads (default: torch decides)')
    parser.add_argument('--device', choices=['auto', 'cpu', 'cuda'], default='auto')
    parser.add_argument('--amp', choices=AMP_MODES, default='none', help='mixed precision')
    parser.add_argument('--channels-last', action='store_true', help='channels-last input')
    parser.add_argument('--limit', type=int, help='score only the first N images')
    parser.add_argument('--no-progress', dest='progress', action='store_false',
                        help='no progress bar')
    return parser


def format_table(figures: Dict[str, Any], title: str) -> str:
    """Render per-class IoU and accuracy, mIoU, pixel and mean class accuracy as text."""
    def cell(value: Optional[float]) -> str:
        return '    -' if value is None else f'{100 * value:5.1f}'
    names = figures['class_names']
    width = max(len('mean class acc'), *(len(n) for n in names))
    lines = [title, f'{"class":<{width}}  IoU %  acc %']
    lines += [f'{name:<{width}}  {cell(figures["iou"][name])}  '
              f'{cell(figures["class_accuracy"][name])}' for name in names]
    lines += ['-' * (width + 15),
              f'{"mIoU":<{width}}  {cell(figures["miou"])}',
              f'{"pixel acc":<{width}}  {cell(figures["pixel_accuracy"])}',
              f'{"mean class acc":<{width}}  {cell(figures["mean_class_accuracy"])}']
    return '\n'.join(lines)


def _fail(message: str) -> int:
    print(f'{PROG}: error: {message}', file=sys.stderr)
    return 2


def main(argv: Optional[List[str]] = None) -> int:
    """Run ``semseg eval``; return the exit code (2: bad usage, data or weights)."""
    args = build_parser().parse_args(argv)
    try:
        info = model_info(args.model)
        size = parse_size(args.size) if args.size else None
        if size:
            check_input_size(args.model, *size)
        if args.batch_size < 1:
            raise ValueError(f'--batch-size must be at least 1, got {args.batch_size}')
        device = select_device(args.device)
    except ValueError as error:
        return _fail(str(error))
    weights = Path(args.weights) if args.weights else shipped_weights(args.model)
    if not weights.is_file():
        if args.weights:
            return _fail(f'weights file not found: {weights}')
        return _fail(f'no --weights given and {args.model} has no shipped weights '
                     f'({weights} does not exist). Train the model with `semseg train --model '
                     f'{args.model} --data-root DIR --out RUN_DIR`, then pass '
                     '--weights RUN_DIR/best.pt')
    if args.threads:
        torch.set_num_threads(args.threads)
    limit_cv2_threads()
    try:
        dataset = build_dataset(args.dataset, args.data_root, args.split,
                                class_set=args.class_set,
                                sequences=parse_sequences(args.sequences))
        if args.limit:
            dataset.pairs = dataset.pairs[:args.limit]
        dataset.validate(progress=args.progress)
        model = create_model(args.model, dataset.num_classes)
        load_weights(model, weights, args.model, dataset.num_classes)
    except ValueError as error:
        return _fail(str(error))
    model.to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    uniform = size is not None or dataset.uniform_size() is not None
    matrix = evaluate_model(model, dataset, dataset.num_classes, dataset.ignore_index,
                            info.input_multiple, device,
                            batch_size=args.batch_size if uniform else 1,
                            workers=args.workers, amp=args.amp,
                            channels_last=args.channels_last, input_size=size,
                            progress=args.progress, desc=f'eval {args.split}')
    figures = matrix.as_dict(dataset.class_set.names)
    title = (f'{args.model} on {dataset.name}: {len(dataset)} images, weights {weights}'
             + (f', input {size[0]}x{size[1]}' if size else ''))
    print(format_table(figures, title))
    if args.json:
        record = {'model': args.model, 'weights': str(weights), 'dataset': args.dataset,
                  'data_root': str(args.data_root), 'split': args.split,
                  'sequences': parse_sequences(args.sequences) or None,
                  'images': len(dataset), 'input_size': list(size) if size else None,
                  'class_set': dataset.class_set.name,
                  'date': datetime.datetime.now().astimezone().isoformat(timespec='seconds'),
                  **figures}
        write_text_atomic(args.json, json.dumps(record, indent=2) + '\n')
        print(f'figures written to {args.json}')
    if args.plots:
        _plots(matrix, figures, Path(args.plots), f'{args.model}, {dataset.name}')
        print(f'plots written to {args.plots}')
    return 0


def _plots(matrix: ConfusionMatrix, figures: Dict[str, Any], folder: Path, label: str) -> None:
    names = figures['class_names']
    plot_confusion_matrix(matrix.matrix, names, folder / 'confusion_matrix.png',
                          title=f'Confusion matrix, rows normalised\n{label}')
    plot_class_iou([figures['iou'][n] for n in names], names, folder / 'class_iou.png',
                   title=f'Per-class IoU\n{label}')


if __name__ == '__main__':
    sys.exit(main())
