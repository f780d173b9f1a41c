"""``semseg train``: train a segmentation network, resumably, on CamVid, Cityscapes or a folder.

The training itself is :mod:`semseg_ros.training.train` (recipe, run folder, resuming);
this parses the options and reports bad usage in one line. More machines::

    torchrun --nproc_per_node=N -m semseg_ros.commands.train ...
"""

import argparse
import sys
from typing import List, Optional

import torch
import torch.distributed as dist

from semseg_ros.data.datasets import DATASETS
from semseg_ros.training import train
from semseg_ros.training.engine import (AMP_MODES, AUTO_COMPILE_STEPS, CPU_COMPILED,
                                        distributed_context, limit_cv2_threads, select_device)
from semseg_ros.training.losses import CLASS_WEIGHTINGS
from semseg_ros.training.train import (AUGMENTATIONS, COMPILE_BACKENDS, DATA_PIPELINES,
                                       DEFAULTS, FIT_EPOCHS_AFTER, FLIP_TRANSLATE_PIXELS,
                                       LR_SCHEDULES, RESUME_OVERRIDES)

PROG = 'semseg train'


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``semseg train`` (options absent unless given)."""
    def default(key):
        return f' (default: {DEFAULTS[key]})'
    parser = argparse.ArgumentParser(
        prog=PROG, argument_default=argparse.SUPPRESS,
        description='Train a segmentation network; resumable, with validation mIoU and '
                    'best/last checkpoints in the run folder.')
    parser.add_argument('--model', help='registered model name, e.g. mininet_v2_cpu')
    parser.add_argument('--dataset', choices=DATASETS, help='dataset layout' + default('dataset'))
    parser.add_argument('--data-root', help='dataset folder')
    parser.add_argument('--class-set', help='class set (name or YAML) of a folder dataset '
                        '(default: <data-root>/classes.yaml)')
    parser.add_argument('--split', help='training split' + default('split'))
    parser.add_argument('--val-split', help="validation split, or 'none'" + default('val_split'))
    parser.add_argument('--holdout', metavar='SEQ[,SEQ]',
                        help='hold whole sequences out (CamVid: 0001TP, 0006R0, 0016E5): train '
                        'on the other sequences of --split, validate on the frames of these in '
                        '--split and --val-split; splits join with +, e.g. --split train+val')
    parser.add_argument('--epochs', type=int, help='epochs' + default('epochs'))
    parser.add_argument('--batch-size', type=int,
                        help='images per step and process' + default('batch_size'))
    parser.add_argument('--crop', help='training crop WxH' + default('crop'))
    parser.add_argument('--augment', choices=AUGMENTATIONS,
                        help="training augmentation: 'full': flip, random scale, crop with "
                        "translation, brightness and contrast; 'flip-translate': flip and a "
                        f'shift of up to {FLIP_TRANSLATE_PIXELS} whole pixels in x and y '
                        "(RDS-Net's paper); 'none': crop only" + default('augment'))
    parser.add_argument('--scale-range', type=float, nargs=2, metavar=('MIN', 'MAX'),
                        help='random scale range of --augment full' + default('scale_range'))
    parser.add_argument('--no-augment', dest='augment', action='store_const', const='none',
                        help='the same as --augment none')
    parser.add_argument('--lr', type=float, help='initial learning rate' + default('lr'))
    parser.add_argument('--lr-schedule', choices=LR_SCHEDULES,
                        help="'poly': polynomial decay to --lr-end, per step; 'plateau': the "
                        'rate times --plateau-factor when the mean training loss of an epoch '
                        "has stalled for --plateau-patience epochs (RDS-Net's paper); 'step': "
                        'the rate times --step-factor every --step-epochs epochs (the '
                        'reference PyTorch ENet)' + default('lr_schedule'))
    parser.add_argument('--lr-end', type=float, help='learning rate the polynomial decay ends '
                        'at; the lowest rate of the plateau and step schedules'
                        + default('lr_end'))
    parser.add_argument('--plateau-factor', type=float,
                        help='what a plateau multiplies the rate by' + default('plateau_factor'))
    parser.add_argument('--plateau-patience', type=int, metavar='EPOCHS',
                        help='epochs in a row without a lower loss that are tolerated: the '
                        'next one reduces the rate' + default('plateau_patience'))
    parser.add_argument('--plateau-threshold', type=float, metavar='FRACTION',
                        help='how much lower than the best so far (relative) an epoch loss '
                        'must be to count as lower' + default('plateau_threshold'))
    parser.add_argument('--step-epochs', type=int, metavar='EPOCHS',
                        help='epochs between two steps of the step schedule'
                        + default('step_epochs'))
    parser.add_argument('--step-factor', type=float,
                        help='what each step of the step schedule multiplies the rate by'
                        + default('step_factor'))
    parser.add_argument('--weight-decay', type=float, help='Adam weight decay'
                        + default('weight_decay'))
    parser.add_argument('--poly-power', type=float, help='polynomial LR decay power'
                        + default('poly_power'))
    parser.add_argument('--class-weights', choices=CLASS_WEIGHTINGS,
                        help='loss class weighting' + default('class_weights'))
    parser.add_argument('--val-every', type=int, help='validate every N epochs (and after '
                        'the last)' + default('val_every'))
    parser.add_argument('--val-size', help='network input WxH for validation (default: '
                        'each image at full size, padded to the input multiple)')
    parser.add_argument('--workers', type=int, help='data-loader processes' + default('workers'))
    parser.add_argument('--threads', type=int, help='torch threads per process (default: '
                        'torch decides)')
    parser.add_argument('--seed', type=int, help='run seed' + default('seed'))
    parser.add_argument('--init', metavar='WEIGHTS',
                        help='start from these weights of the same network instead of random '
                             "ones: 'shipped' (the package's CamVid weights) or a weights/"
                             'checkpoint file; tensors that do not fit (the classifier of '
                             'another class set) stay freshly initialised')
    parser.add_argument('--teacher', metavar='MODEL',
                        help='distil from this network (any registered model of the same '
                        'class set): the loss becomes (1 - w) x cross-entropy + w x T^2 '
                        'KL(teacher || student) at temperature T (default: no teacher)')
    parser.add_argument('--teacher-weights', metavar='WEIGHTS',
                        help="the teacher's weights: 'shipped' or a weights/checkpoint file"
                        + default('teacher_weights'))
    parser.add_argument('--distill-weight', type=float, metavar='W',
                        help='share of the distillation term in the loss'
                        + default('distill_weight'))
    parser.add_argument('--distill-temperature', type=float, metavar='T',
                        help='softmax temperature of the distillation term'
                        + default('distill_temperature'))
    parser.add_argument('--amp', choices=('auto',) + AMP_MODES,
                        help='mixed precision; auto: bf16 on a CPU that computes it in '
                        'hardware, else none' + default('amp'))
    parser.add_argument('--channels-last', action=argparse.BooleanOptionalAction,
                        help='channels-last memory format (default: on a CPU, the faster '
                        'format measured for the network; NCHW on CUDA)')
    parser.add_argument('--compile', nargs='?', const='inductor', choices=COMPILE_BACKENDS,
                        help='compile the training step with torch.compile (the flag alone: '
                        'inductor, which needs a C++ compiler on a CPU and a minute or two to '
                        'start, then faster steps for some networks); auto: inductor for a '
                        f'network measured faster so on a CPU ({", ".join(sorted(CPU_COMPILED))}'
                        f') in a session of at least {AUTO_COMPILE_STEPS} steps, else eager'
                        + default('compile'))
    parser.add_argument('--no-compile', dest='compile', action='store_const', const=None,
                        help='train eagerly, also where --compile auto would compile')
    parser.add_argument('--cuda-graph', action='store_true',
                        help='on CUDA, capture the training step (forward, backward, Adam, '
                        'moving average) once as a CUDA graph and replay it: several times '
                        'faster for launch-bound small networks; ignored on a CPU')
    parser.add_argument('--device', choices=['auto', 'cpu', 'cuda'],
                        help='compute device' + default('device'))
    parser.add_argument('--data-pipeline', choices=DATA_PIPELINES,
                        help="'device': the training set resident on the compute device, "
                        "augmented there with no host work per step; 'loader': decoded and "
                        "augmented on the CPU by data-loader workers; 'auto': device on CUDA, "
                        'loader on the CPU' + default('data_pipeline'))
    parser.add_argument('--resize', metavar='WxH', help='resize every image and label to WxH '
                        'when read, for training and validation (e.g. Cityscapes at '
                        '1024x512; default: keep)')
    parser.add_argument('--limit', type=int, help='use only the first N pairs of each split '
                        '(quick trials)')
    parser.add_argument('--no-progress', dest='progress', action='store_false',
                        help='no progress bars')
    parser.add_argument('--stop-after', type=int, metavar='EPOCH',
                        help='stop after this epoch, leaving the run to be resumed (the '
                        'schedule still runs to --epochs)')
    parser.add_argument('--time-budget', type=float, metavar='SECONDS',
                        help='stop this session before an epoch that would end later than '
                        'SECONDS after the start, leaving the run to be resumed')
    parser.add_argument('--ema', type=float, metavar='DECAY',
                        help='keep an exponential moving average of the weights with this '
                        'decay per step (e.g. 0.999): it is validated, checkpointed and '
                        "exported as the run's weights (default: none)")
    parser.add_argument('--fit-epochs', action='store_true',
                        help=f'with --time-budget on a new run: after {FIT_EPOCHS_AFTER} epochs, '
                        'shorten --epochs so that the whole schedule fits the budget')
    parser.add_argument('--out', help='run folder to create')
    parser.add_argument('--resume', metavar='RUN_DIR', help='continue the run in RUN_DIR (may '
                        'change only ' + ', '.join(sorted(RESUME_OVERRIDES)) + ')')
    parser.add_argument('--export-best', metavar='PATH', help='after training, write the best '
                        'weights (no optimizer state) with provenance to PATH')
    return parser


def _fail(error: Exception) -> int:
    print(f'{PROG}: error: {error}', file=sys.stderr)
    return 2


def main(argv: Optional[List[str]] = None) -> int:
    """Run ``semseg train``; return the exit code (2: bad usage or bad data)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        config = train.config_from_args(args)
        train.check_config(config)
    except ValueError as error:
        return _fail(error)
    rank, world, local_rank = distributed_context()
    try:
        device = select_device(config['device'], local_rank)
    except ValueError as error:
        return _fail(error)
    if config['threads']:
        torch.set_num_threads(int(config['threads']))
    if device.type == 'cuda':
        torch.backends.cudnn.benchmark = True  # fixed crop size: tune each layer once
    limit_cv2_threads()
    if world > 1:
        dist.init_process_group('nccl' if device.type == 'cuda' else 'gloo')
    try:
        status = train.Trainer(config, argv, device, rank, world).run()
        if world > 1:
            # Rank 0 ends by writing files while the others are done: tearing gloo down
            # under a peer that still talks to it can abort that peer.
            dist.barrier()
        return status
    except train.UsageError as error:
        return _fail(error)
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()


if __name__ == '__main__':
    sys.exit(main())
