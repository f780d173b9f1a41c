"""Training a segmentation network, resumably, on CamVid, Cityscapes or a folder.

Recipe: Adam, polynomial learning-rate decay (power 0.9, per iteration, to ``--lr-end``),
weight decay 2e-4, class-balanced cross-entropy at label resolution (logits upsampled
bilinearly), augmentation by flip, scale, crop/translation and brightness/contrast.
Validation mIoU at full resolution every ``--val-every`` epochs and at the end.
RDS-Net's paper recipe instead: ``--lr-schedule plateau`` (the rate halved whenever the
epoch's mean training loss stalls) and ``--augment flip-translate`` (flips and shifts of up
to 2 px only). The reference PyTorch ENet's: ``--lr-schedule step`` (the rate times
``--step-factor`` every ``--step-epochs`` epochs).

A run folder holds::

    run.json            the settings and command lines of the run
    last.pt             checkpoint after the latest epoch (weights + optimizer, scheduler,
                        epoch, RNG state, history); written atomically every epoch
    best.pt             the checkpoint of the best validation mIoU so far
    log.csv, log.jsonl  one line per epoch: loss, learning rate, val mIoU, seconds

``semseg train --resume RUN_DIR`` continues from ``last.pt`` exactly as if the run had not
stopped: augmentation and dropout are seeded from (seed, epoch, rank) at the start of each
epoch, and the optimizer and scheduler state are restored.

More machines: ``torchrun --nproc_per_node=N -m semseg_ros.commands.train ...`` runs
DistributedDataParallel (gloo on CPU, nccl on GPU); ``--batch-size`` is per process, and
only rank 0 writes files and logs.

Speed on a CPU: unless told otherwise, a session takes the fastest stable settings measured
for its network (:func:`~semseg_ros.training.engine.training_speed_settings`,
:func:`~semseg_ros.training.engine.compile_setting`): bf16 where the CPU computes it in
hardware, the network's faster memory format, and for ENet a compiled step in a long session;
docs/training.md has the measurements (AMD EPYC Zen 4, 2 cores).
When other processes share the cores, start training with
``OMP_WAIT_POLICY=PASSIVE`` (or ``--threads 1``): OpenMP's default busy-waiting made
2-thread steps 2-7x slower under contention.

``--export-best PATH`` copies the best weights (no optimizer state) to a shipped weights file
with its provenance in ``meta``; on a finished run, ``--resume RUN_DIR --export-best PATH``
only exports.
"""

import argparse
import copy
import csv
import datetime
import io
import json
import math
import os
from pathlib import Path
import shlex
import sys
import time
from typing import Any, Dict, List, Optional

import numpy as np
import torch
from torch import nn
import torch.distributed as dist

from semseg_ros.core.bench import cpu_model
from semseg_ros.core.files import write_text_atomic
from semseg_ros.core.metrics import ConfusionMatrix
from semseg_ros.core.resources import shipped_weights
from semseg_ros.core.sizes import parse_size
from semseg_ros.core.weights import (
    file_digest, load_matching_weights, load_weights, read_weights, save_weights, WeightsError)
from semseg_ros.data.datasets import build_dataset, parse_sequences, sequence_counts
from semseg_ros.data.device_augment import DeviceAugmentation, DeviceBatches, epoch_generator
from semseg_ros.data.transforms import TrainAugmentation
from semseg_ros.models import check_input_size, create_model, model_info
from semseg_ros.training.engine import (
    autocast, compile_network, compile_setting, describe_arithmetic, evaluate_model,
    forward_logits, make_loader, progress_bar, seed_everything, set_memory_format, to_device,
    training_speed_settings)
from semseg_ros.training.graph_step import GraphedStep, make_capturable, portable_state_dict
from semseg_ros.training.losses import class_weights, distillation_loss, SegmentationLoss
from semseg_ros.training.plots import plot_training_curves

DEFAULTS: Dict[str, Any] = {
    'model': None, 'dataset': 'camvid', 'data_root': None, 'class_set': None,
    'split': 'train', 'val_split': 'val', 'epochs': 100, 'batch_size': 8, 'crop': '480x360',
    'scale_range': [0.5, 2.0], 'augment': 'full', 'lr': 1e-3, 'weight_decay': 2e-4,
    'lr_end': 0.0, 'lr_schedule': 'poly', 'poly_power': 0.9,
    # Patience 10: over the last 50 epochs of the shipped RDS-Net run the mean training loss
    # moved by a median 2.5 % from one epoch to the next and rose in 23 of them, so a short
    # patience halves the rate on noise; 10 is also Keras's and PyTorch's ReduceLROnPlateau
    # default (the paper gives none). Threshold: PyTorch's default, 0.01 % lower counts.
    'plateau_factor': 0.5, 'plateau_patience': 10, 'plateau_threshold': 1e-4,
    # The reference PyTorch ENet (davidtvs/PyTorch-ENet): x 0.1 every 100 of its 300 epochs.
    'step_epochs': 100, 'step_factor': 0.1,
    'class_weights': 'mfb012', 'val_every': 1, 'val_size': None,
    'workers': 0, 'threads': None, 'seed': 0, 'amp': 'auto', 'channels_last': None,
    'compile': 'auto', 'device': 'auto', 'limit': None, 'resize': None, 'out': None,
    'progress': True, 'init': None, 'holdout': None, 'data_pipeline': 'auto',
    'stop_after': None, 'time_budget': None, 'fit_epochs': False, 'ema': None,
    'cuda_graph': False, 'teacher': None, 'teacher_weights': 'shipped', 'distill_weight': 0.5,
    'distill_temperature': 1.0,
}
DATA_PIPELINES = ('auto', 'device', 'loader')
LR_SCHEDULES = ('poly', 'plateau', 'step')
# Whole pixels of shift in x and y under --augment flip-translate (RDS-Net's 0-2 px).
FLIP_TRANSLATE_PIXELS = 2
# What each --augment choice draws, as AugmentationSettings fields ('full': its defaults and
# --scale-range).
AUGMENTATIONS: Dict[str, Dict[str, Any]] = {
    'full': {},
    'flip-translate': {'scale_range': (1.0, 1.0), 'pixel_shift': FLIP_TRANSLATE_PIXELS,
                       'brightness': 0.0, 'contrast': 0.0},
    'none': {'scale_range': (1.0, 1.0), 'flip': False, 'translate': 0.0, 'brightness': 0.0,
             'contrast': 0.0},
}
# Options that serve one choice of another option only: given with another, a usage error.
ONLY_WITH = {'poly_power': ('lr_schedule', 'poly'),
             'plateau_factor': ('lr_schedule', 'plateau'),
             'plateau_patience': ('lr_schedule', 'plateau'),
             'plateau_threshold': ('lr_schedule', 'plateau'),
             'step_epochs': ('lr_schedule', 'step'),
             'step_factor': ('lr_schedule', 'step'),
             'scale_range': ('augment', 'full')}
# Steps between progress-bar loss updates (each reads the loss back from the device).
PROGRESS_EVERY = 20
# Seconds between checkpoints when epochs are short (every epoch is checkpointed otherwise).
CHECKPOINT_SECONDS = 30.0
# Epochs timed before --fit-epochs sets the schedule's length, and the share of the time
# left that it plans to fill with training epochs.
FIT_EPOCHS_AFTER = 3
FIT_MARGIN = 0.9
COMPILE_BACKENDS = ('auto', 'inductor', 'aot_eager', 'eager')
# Settings --resume may change: they do not alter the recipe. All but the last two leave
# what the run computes as it was; --amp and --channels-last change the arithmetic only, so a
# long run can move to a faster one (the trainer says what changed; run.json keeps it).
RESUME_OVERRIDES = {'epochs', 'val_every', 'workers', 'threads', 'progress', 'export_best',
                    'stop_after', 'compile', 'time_budget', 'cuda_graph', 'amp',
                    'channels_last'}
# Settings of one session only, never stored as the run's settings.
SESSION_ONLY = {'export_best', 'stop_after', 'time_budget'}
# What a shipped file keeps of a run's recipe besides crop, batch, lr and class weights.
RECIPE_KEYS = ('lr_schedule', 'lr_end', 'poly_power', 'plateau_factor', 'plateau_patience',
               'step_epochs', 'step_factor', 'weight_decay', 'augment', 'scale_range')
# What a shipped file keeps of each session of its run (the model card says them).
SESSION_KEYS = ('from_epoch', 'machine', 'world_size', 'amp', 'channels_last')
LOG_FIELDS = ['epoch', 'loss', 'lr', 'val_miou', 'val_pixel_accuracy', 'seconds']


class UsageError(ValueError):
    """Bad command-line usage or input data: reported in one line, exit code 2."""


def config_from_args(args: argparse.Namespace) -> Dict[str, Any]:
    """Merge defaults, a resumed run's settings and the command line; check them."""
    given = vars(args)
    if 'resume' in given:
        run_dir = Path(given['resume'])
        run_file = run_dir / 'run.json'
        if not run_file.is_file():
            raise UsageError(f'--resume {run_dir}: no run.json there (not a run folder)')
        stray = sorted(set(given) - RESUME_OVERRIDES - {'resume'})
        if stray:
            raise UsageError('--resume takes the settings from ' + str(run_file) + '; only '
                             + ', '.join(sorted(RESUME_OVERRIDES)) + ' may be given, not '
                             + ', '.join('--' + s.replace('_', '-') for s in stray))
        config = {**DEFAULTS, **json.loads(run_file.read_text())['args']}
        # Runs from before --augment stored --no-augment as a flag of its own.
        if config.pop('no_augment', False):
            config['augment'] = 'none'
        config.update({k: v for k, v in given.items() if k != 'resume'})
        config['out'] = str(run_dir)
        return config
    config = {**DEFAULTS, **given}
    for key in ('model', 'data_root', 'out'):
        if not config.get(key):
            raise UsageError(f'--{key.replace("_", "-")} is required (or --resume RUN_DIR)')
    for key in sorted(set(given) & set(ONLY_WITH)):
        other, choice = ONLY_WITH[key]
        if config[other] != choice:
            raise UsageError(f'--{key.replace("_", "-")} applies to --{other.replace("_", "-")} '
                             f'{choice} only, not {config[other]}')
    if (Path(config['out']) / 'last.pt').exists():
        raise UsageError(f'--out {config["out"]} already holds a run; continue it with '
                         f'--resume {config["out"]} or choose another folder')
    return config


def _init_path(config: Dict[str, Any]) -> Path:
    """Return the weights file ``--init`` names ('shipped': the model's shipped weights)."""
    if config['init'] == 'shipped':
        return shipped_weights(config['model'])
    return Path(config['init'])


def _teacher_path(config: Dict[str, Any]) -> Path:
    """Return the weights file of ``--teacher`` ('shipped': that model's shipped weights)."""
    if config['teacher_weights'] in (None, 'shipped'):
        return shipped_weights(config['teacher'])
    return Path(config['teacher_weights'])


def check_config(config: Dict[str, Any]) -> None:
    """Check the settings that can be checked before loading any data."""
    info = model_info(config['model'])  # ValueError listing the models if unknown
    crop = parse_size(config['crop'])
    check_input_size(config['model'], *crop)
    if config['val_size']:
        check_input_size(config['model'], *parse_size(config['val_size']))
    if config['resize']:
        parse_size(config['resize'])
    for key in ('epochs', 'batch_size', 'val_every'):
        if int(config[key]) < 1:
            raise UsageError(f'--{key.replace("_", "-")} must be at least 1, '
                             f'got {config[key]}')
    if config['seed'] < 0:
        raise UsageError(f'--seed must be non-negative, got {config["seed"]}')
    if config['lr'] <= 0:
        raise UsageError(f'--lr must be positive, got {config["lr"]}')
    if not 0 <= config['lr_end'] < config['lr']:
        raise UsageError(f'--lr-end must be at least 0 and below --lr ({config["lr"]}), '
                         f'got {config["lr_end"]}')
    if not 0 < config['plateau_factor'] < 1:
        raise UsageError(f'--plateau-factor must be between 0 and 1 (e.g. 0.5), got '
                         f'{config["plateau_factor"]}')
    if config['plateau_patience'] < 1:
        raise UsageError(f'--plateau-patience must be at least 1, got '
                         f'{config["plateau_patience"]}')
    if not 0 <= config['plateau_threshold'] < 1:
        raise UsageError(f'--plateau-threshold must be at least 0 and below 1, got '
                         f'{config["plateau_threshold"]}')
    if config['step_epochs'] < 1:
        raise UsageError(f'--step-epochs must be at least 1, got {config["step_epochs"]}')
    if not 0 < config['step_factor'] < 1:
        raise UsageError(f'--step-factor must be between 0 and 1 (e.g. 0.1), got '
                         f'{config["step_factor"]}')
    low, high = config['scale_range']
    if not 0 < low <= high:
        raise UsageError(f'--scale-range needs 0 < MIN <= MAX, got {low} {high}')
    if config['init']:
        init = _init_path(config)
        if not init.is_file():
            raise UsageError(f'--init {config["init"]}: weights file not found: {init}'
                             + (' (none ship for this model yet)'
                                if config['init'] == 'shipped' else ''))
    resuming = (Path(config['out']) / 'last.pt').is_file()
    if config['fit_epochs'] and not config['time_budget'] and not resuming:
        raise UsageError('--fit-epochs needs --time-budget SECONDS')
    if config['time_budget'] is not None and config['time_budget'] <= 0:
        raise UsageError(f'--time-budget must be positive, got {config["time_budget"]}')
    if config['teacher']:
        model_info(config['teacher'])  # ValueError listing the models if unknown
        teacher = _teacher_path(config)
        if not teacher.is_file():
            raise UsageError(f'--teacher {config["teacher"]}: weights file not found: '
                             f'{teacher}')
        if not 0.0 < config['distill_weight'] <= 1.0:
            raise UsageError(f'--distill-weight must be in (0, 1], got '
                             f'{config["distill_weight"]}')
        if config['distill_temperature'] <= 0:
            raise UsageError(f'--distill-temperature must be positive, got '
                             f'{config["distill_temperature"]}')
    if config['cuda_graph'] and config['compile'] not in (None, 'auto'):
        raise UsageError('--cuda-graph and --compile: choose one (both remove launch '
                         'overhead)')
    if config['ema'] is not None and not 0.0 < config['ema'] < 1.0:
        raise UsageError(f'--ema must be between 0 and 1 (e.g. 0.999), got {config["ema"]}')
    if config['batch_size'] < 2:
        raise UsageError(f'--batch-size must be at least 2 for batch normalisation '
                         f'({info.name}), got {config["batch_size"]}')


def _datasets(config: Dict[str, Any], progress: bool):
    """Build and validate the training and validation datasets."""
    crop = parse_size(config['crop'])
    common = {'class_set': config['class_set'],
              'resize': parse_size(config['resize']) if config['resize'] else None}
    holdout = parse_sequences(config['holdout'])
    train_set = build_dataset(config['dataset'], config['data_root'], config['split'],
                              seed=config['seed'], exclude_sequences=holdout, **common)
    train_set.augment = TrainAugmentation(crop, train_set.ignore_index,
                                          **_augmentation_settings(config))
    val_set = None
    if holdout:
        splits = config['split'].split('+')
        if config['val_split'] and config['val_split'] != 'none':
            splits += [s for s in config['val_split'].split('+') if s not in splits]
        val_set = build_dataset(config['dataset'], config['data_root'], '+'.join(splits),
                                sequences=holdout, **common)
    elif config['val_split'] and config['val_split'] != 'none':
        val_set = build_dataset(config['dataset'], config['data_root'], config['val_split'],
                                **common)
    for dataset in (train_set, val_set):
        if dataset is not None:
            if config['limit']:
                dataset.pairs = dataset.pairs[:config['limit']]
            dataset.validate(progress=progress)
    return train_set, val_set


def _augmentation_settings(config: Dict[str, Any]) -> Dict[str, Any]:
    """Keyword arguments of the training augmentation (CPU or device) a run asks for."""
    if config['augment'] == 'full':
        return {'scale_range': tuple(config['scale_range'])}
    return dict(AUGMENTATIONS[config['augment']])


def _rng_state() -> Dict[str, Any]:
    """RNG states as tensors and plain types (loadable with weights_only=True)."""
    import random
    state = {'torch': torch.get_rng_state(), 'python': random.getstate()}
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state['numpy'] = {'keys': torch.from_numpy(keys.astype(np.int64)), 'pos': int(pos),
                      'has_gauss': int(has_gauss), 'gauss': float(gauss)}
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Dict[str, Any]) -> None:
    import random
    torch.set_rng_state(state['torch'])
    python_state = state['python']
    random.setstate((python_state[0], tuple(python_state[1]), python_state[2]))
    numpy_state = state['numpy']
    np.random.set_state(('MT19937', numpy_state['keys'].numpy().astype(np.uint32),
                         numpy_state['pos'], numpy_state['has_gauss'], numpy_state['gauss']))
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def _write_logs(run_dir: Path, history: List[Dict[str, Any]]) -> None:
    """Rewrite log.csv and log.jsonl from the history (atomically, so they match last.pt)."""
    table = io.StringIO()
    writer = csv.DictWriter(table, LOG_FIELDS, extrasaction='ignore', lineterminator='\n')
    writer.writeheader()
    for entry in history:
        writer.writerow({k: ('' if entry.get(k) is None else entry[k]) for k in LOG_FIELDS})
    write_text_atomic(run_dir / 'log.csv', table.getvalue())
    write_text_atomic(run_dir / 'log.jsonl',
                      ''.join(json.dumps(entry) + '\n' for entry in history))


def _format_seconds(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f'{hours}h{minutes:02d}m' if hours else f'{minutes}m{secs:02d}s'


class Trainer:
    """One training session of a run (fresh or resumed), on one process of possibly many."""

    def __init__(self, config: Dict[str, Any], argv: List[str], device: torch.device,
                 rank: int, world: int):
        """Set up data, model, optimizer and scheduler; restore ``last.pt`` when resuming.

        Raises:
            UsageError: Bad data (naming the files) or an unusable checkpoint.
        """
        self.config, self.device, self.rank, self.world = config, device, rank, world
        self.is_main = rank == 0
        self.progress = bool(config['progress']) and self.is_main
        self.run_dir = Path(config['out'])
        self.command = shlex.join(['semseg', 'train', *argv])
        try:
            self.train_set, self.val_set = _datasets(config, self.progress)
        except ValueError as error:
            raise UsageError(str(error)) from error
        self.class_set = self.train_set.class_set
        self.num_classes = self.class_set.num_classes
        self.device_batches: Optional[DeviceBatches] = None
        if config['data_pipeline'] == 'auto':
            config['data_pipeline'] = 'device' if device.type == 'cuda' and world == 1 \
                else 'loader'
        if config['data_pipeline'] == 'device':
            if world > 1:
                raise UsageError('--data-pipeline device trains on one process; use loader '
                                 'under torchrun')
            augment = DeviceAugmentation(parse_size(config['crop']), self.class_set.ignore_index,
                                         **_augmentation_settings(config))
            try:
                self.device_batches = DeviceBatches(
                    [self.train_set.load_pair(i) for i in range(len(self.train_set))],
                    augment, device)
            except ValueError as error:
                raise UsageError(f'{self.train_set.name}: {error}') from error
        self.info = model_info(config['model'])
        counts, image_counts = self.train_set.label_statistics()
        self.class_weights = class_weights(config['class_weights'], counts, image_counts)
        self.criterion = SegmentationLoss(self.class_weights, self.class_set.ignore_index)
        self.criterion.to(device)

        seed_everything(config['seed'], 0, 0)  # same initial weights on every process
        model = create_model(config['model'], self.num_classes)
        self.init_record: Optional[Dict[str, Any]] = None
        if config['init'] and not (self.run_dir / 'last.pt').is_file():
            self.init_record = self._initialise(model)
        config['amp'], config['channels_last'], chosen = training_speed_settings(
            config['model'], device, config['amp'], config['channels_last'])
        if chosen and self.is_main:
            self._print(chosen)
        switched = self._arithmetic_switched()
        if switched and self.is_main:
            self._print(switched)
        kept_nchw = set_memory_format(model, device, config['amp'], config['channels_last'])
        if kept_nchw and self.is_main:
            self._print(f'bf16 channels-last on the CPU: {len(kept_nchw)} dilated grouped '
                        'convolutions run in NCHW (their channels-last weight gradient is '
                        'wrong there)')
        self.model = model
        self.net = model
        self.teacher: Optional[nn.Module] = None
        self.teacher_record: Optional[Dict[str, Any]] = None
        if config['teacher']:
            self.teacher = self._load_teacher()
            self.teacher_multiple = model_info(config['teacher']).input_multiple
        # An exponential moving average of the weights (and BN statistics): what is
        # validated, checkpointed as the run's weights and shipped when --ema is given.
        self.ema: Optional[nn.Module] = None
        if config['ema'] is not None:
            self.ema = copy.deepcopy(model).eval().requires_grad_(False)
        if world > 1:
            if device.type == 'cuda':
                self.net = nn.SyncBatchNorm.convert_sync_batchnorm(model)
                self.model = self.net
            self.net = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == 'cuda' else None)
        if config['cuda_graph'] and device.type != 'cuda':
            if self.is_main:
                self._print(f'warning: --cuda-graph needs a CUDA device, not {device}; '
                            'training eagerly')
            config['cuda_graph'] = False
        if config['cuda_graph'] and world > 1:
            raise UsageError('--cuda-graph trains on one process; leave it out under torchrun')
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config['lr'],
                                          weight_decay=config['weight_decay'])
        self.sampler = torch.utils.data.DistributedSampler(
            self.train_set, num_replicas=world, rank=rank, shuffle=True, seed=config['seed'])
        # A last batch of one sample breaks batch normalisation: drop it.
        self.drop_last = len(self.sampler) % config['batch_size'] == 1
        self.steps_per_epoch = len(self.sampler) // config['batch_size'] \
            + int(not self.drop_last and len(self.sampler) % config['batch_size'] > 0)
        self.scheduler = self._scheduler()
        self.per_step_schedule = config['lr_schedule'] == 'poly'
        self.epoch = 0
        self.history: List[Dict[str, Any]] = []
        self.best_miou = -math.inf
        self.best_epoch = 0
        self.sessions: List[Dict[str, Any]] = []
        if (self.run_dir / 'last.pt').is_file():
            self._restore(self.run_dir / 'last.pt')
        # What this session compiles: --compile auto decides from the steps it plans.
        planned = min(int(config['epochs']), int(config['stop_after'] or config['epochs']))
        self.compiled, chosen = compile_setting(
            None if config['cuda_graph'] else config['compile'], config['model'], device,
            max(0, planned - self.epoch) * self.steps_per_epoch)
        if chosen and self.is_main:
            self._print(chosen)
        if self.compiled:
            # Training steps only: validation sees other image sizes and runs eagerly.
            self.net = compile_network(self.net, self.compiled, device, config['amp'])
        # Loss sum, step count and non-finite losses, kept on the device (reading them each
        # step would make the host wait for the GPU) and in one place (a graph replays into it).
        self.totals = torch.zeros(3, dtype=torch.float64, device=device)
        self.graphed: Optional[GraphedStep] = None
        if config['cuda_graph']:
            make_capturable(self.optimizer, device)
            self.graphed = GraphedStep(self._step, self._zero_grad, self._print)
        if self.ema is not None:
            # State-dict tensors share storage with the modules, which are only ever updated
            # in place from here on: (averaged, trained) float tensors, and integer counters.
            pairs = list(zip(self.ema.state_dict().values(), self.model.state_dict().values()))
            self._ema_pairs = (
                [a for a, _ in pairs if a.is_floating_point()],
                [b for a, b in pairs if a.is_floating_point()],
                [(a, b) for a, b in pairs if not a.is_floating_point()])

    def _initialise(self, model: nn.Module) -> Dict[str, Any]:
        """Load ``--init`` weights into the fresh model; return what run.json records."""
        name = self.config['model']
        path = _init_path(self.config)
        try:
            result = load_matching_weights(model, path, name)
        except WeightsError as error:
            raise UsageError(f'--init: {error}') from error
        meta = result['payload'].get('meta', {})
        record = {'path': str(path), 'sha256': file_digest(path),
                  'class_set': result['payload'].get('class_set'),
                  'loaded_tensors': len(result['loaded']), 'skipped': result['skipped'],
                  'val_miou': meta.get('val_miou'),
                  'epochs_trained': meta.get('epochs_trained', result['payload'].get('epoch')),
                  'train_wall_seconds': meta.get('train_wall_seconds')}
        skipped = (', freshly initialised: ' + ', '.join(result['skipped'])
                   if result['skipped'] else '')
        if self.is_main:
            self._print(f'starting from {path}: {len(result["loaded"])} tensors '
                        f'loaded{skipped}')
        return record

    def _load_teacher(self) -> nn.Module:
        """Return the frozen ``--teacher`` network on the device, in eval mode."""
        name, path = self.config['teacher'], _teacher_path(self.config)
        teacher = create_model(name, self.num_classes)
        try:
            payload = load_weights(teacher, path, name, self.num_classes)
        except WeightsError as error:
            raise UsageError(f'--teacher: {error}') from error
        if payload.get('class_set') not in (None, self._class_set_name()):
            raise UsageError(f'--teacher: {path} was trained on class set '
                             f'{payload.get("class_set")!r}, this run uses '
                             f'{self._class_set_name()!r}')
        self.teacher_record = {'model': name, 'path': str(path), 'sha256': file_digest(path),
                               'weight': self.config['distill_weight'],
                               'temperature': self.config['distill_temperature'],
                               'frames': payload.get('meta', {}).get('frames')}
        teacher = teacher.to(self.device).eval().requires_grad_(False)
        if self.config['channels_last']:
            teacher = teacher.to(memory_format=torch.channels_last)
        return teacher

    def _scheduler(self) -> torch.optim.lr_scheduler.LRScheduler:
        """Polynomial decay per iteration to ``lr_end``, halving on a loss plateau, or steps.

        poly: ``lr = (lr0 - lr_end) * (1 - step / total) ** power + lr_end``, stepped after
        every iteration. plateau: ``lr *= plateau_factor`` once more than ``plateau_patience``
        epochs in a row have not lowered the best mean training loss by the relative
        ``plateau_threshold``, never below ``lr_end``; stepped after every epoch. step:
        ``lr = lr0 * step_factor ** (epoch // step_epochs)``, never below ``lr_end``; stepped
        after every epoch.
        """
        config = self.config
        if config['lr_schedule'] == 'step':
            every, gamma = int(config['step_epochs']), float(config['step_factor'])
            lowest = float(config['lr_end']) / float(config['lr'])
            return torch.optim.lr_scheduler.LambdaLR(
                self.optimizer, lambda epoch: max(gamma ** (epoch // every), lowest))
        if config['lr_schedule'] == 'plateau':
            return torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizer, mode='min', factor=float(config['plateau_factor']),
                patience=int(config['plateau_patience']),
                threshold=float(config['plateau_threshold']), threshold_mode='rel',
                min_lr=float(config['lr_end']))
        power = float(self.config['poly_power'])
        # As a fraction of the initial rate: LambdaLR multiplies each group's own lr0.
        floor = float(self.config.get('lr_end', 0.0)) / float(self.config['lr'])

        def factor(step: int) -> float:
            # The length is read at each step: --fit-epochs and --resume --epochs may change it.
            left = max(0.0, 1.0 - step / (self.steps_per_epoch * int(self.config['epochs'])))
            return (1.0 - floor) * left ** power + floor
        return torch.optim.lr_scheduler.LambdaLR(self.optimizer, factor)

    def _restore(self, path: Path) -> None:
        try:
            payload = load_weights(self.model, path, self.config['model'], self.num_classes)
            if self.ema is not None:
                # The file's weights are the average; the trained ones are kept beside them.
                self.ema.load_state_dict(self.model.state_dict())
                self.model.load_state_dict(payload['trained_state_dict'])
            self.optimizer.load_state_dict(payload['optimizer'])
            self.scheduler.load_state_dict(payload['scheduler'])
        except (KeyError, ValueError) as error:
            raise UsageError(f'{path}: cannot resume from it ({error})') from error
        self.epoch = int(payload['epoch'])
        self.history = list(payload['history'])
        self.best_miou = float(payload['best_miou'])
        self.best_epoch = int(payload['best_epoch'])
        self.sessions = list(payload.get('sessions', []))
        _set_rng_state(payload['rng'])

    def _save_run_file(self) -> None:
        run_file = self.run_dir / 'run.json'
        record = json.loads(run_file.read_text()) if run_file.is_file() else {
            'args': {k: v for k, v in self.config.items() if k not in SESSION_ONLY},
            'created': datetime.datetime.now().astimezone().isoformat(timespec='seconds'),
            'torch': str(torch.__version__), 'sessions': []}
        if self.init_record is not None:
            record['init'] = self.init_record
        if self.teacher_record is not None:
            record['teacher'] = self.teacher_record
        # Which frames the weights see, by sequence: what a model card must say.
        record['frames'] = {'train': sequence_counts(self.train_set.pairs),
                            'val': sequence_counts(self.val_set.pairs) if self.val_set else {}}
        record['args']['epochs'] = self.config['epochs']
        # A resume that moved the run to another precision or format: later resumes go on so;
        # each session says what it trained in.
        arithmetic = {key: self.config[key] for key in ('amp', 'channels_last')}
        record['args'].update(arithmetic)
        record['sessions'].append({
            'command': self.command, 'world_size': self.world, 'device': str(self.device),
            'machine': training_machine(self.device), 'from_epoch': self.epoch, **arithmetic,
            'date': datetime.datetime.now().astimezone().isoformat(timespec='seconds')})
        write_text_atomic(run_file, json.dumps(record, indent=2) + '\n')

    def run(self) -> int:
        """Train the remaining epochs, then export if asked; return the exit code."""
        epochs = int(self.config['epochs'])
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._save_run_file()
            self._announce()
        session_start, first_epoch = time.monotonic(), self.epoch
        budget = self.config['time_budget']
        durations: List[float] = []
        last_saved, saved_epoch = time.monotonic(), self.epoch
        while self.epoch < min(epochs, int(self.config['stop_after'] or epochs)):
            if budget and durations and \
                    time.monotonic() - session_start + max(durations) > budget:
                break
            started = time.monotonic()
            loss, lr = self._train_epoch()
            self.epoch += 1
            entry = {'epoch': self.epoch, 'loss': loss, 'lr': lr, 'val_miou': None,
                     'val_pixel_accuracy': None}
            matrix = None
            if self.val_set is not None and (self.epoch % int(self.config['val_every']) == 0
                                             or self.epoch == epochs):
                matrix = self._validate()
                figures = matrix.as_dict(self.class_set.names)
                entry.update(val_miou=figures['miou'],
                             val_pixel_accuracy=figures['pixel_accuracy'],
                             val_iou=figures['iou'])
            entry['seconds'] = round(time.monotonic() - started, 3)
            durations.append(entry['seconds'])
            self.history.append(entry)
            if self.config['fit_epochs'] and first_epoch == 0 \
                    and self.epoch == FIT_EPOCHS_AFTER:
                epochs = self._fit_epochs(durations, time.monotonic() - session_start)
            improved = entry['val_miou'] is not None and entry['val_miou'] > self.best_miou
            if improved:
                self.best_miou, self.best_epoch = entry['val_miou'], self.epoch
            if self.is_main:
                # Short epochs (a GPU) checkpoint every CHECKPOINT_SECONDS, and at the end.
                if improved or self.epoch == epochs \
                        or time.monotonic() - last_saved >= CHECKPOINT_SECONDS:
                    self._checkpoint(improved)
                    last_saved, saved_epoch = time.monotonic(), self.epoch
                remaining = (time.monotonic() - session_start) / (self.epoch - first_epoch) \
                    * (epochs - self.epoch)
                self._print(f'epoch {self.epoch}/{epochs}  loss {loss:.4f}  lr {lr:.2e}  '
                            + (f'val mIoU {entry["val_miou"]:.4f}  '
                               if entry['val_miou'] is not None else '')
                            + (f'best {self.best_miou:.4f} @ {self.best_epoch}  '
                               if self.best_epoch else '')
                            + f'{entry["seconds"]:.0f} s  ETA {_format_seconds(remaining)}')
        if self.is_main and saved_epoch != self.epoch:
            self._checkpoint(False)
        if self.epoch < epochs:
            if self.is_main:
                self._print(f'stopped after epoch {self.epoch} of {epochs}; continue with '
                            f'semseg train --resume {self.run_dir}')
            return 0
        if first_epoch == epochs and self.is_main:
            self._print(f'{self.run_dir}: all {epochs} epochs done already')
        if self.config.get('export_best') and self.is_main:
            path = export_best(self.run_dir, self.config['export_best'])
            self._print(f'exported best weights to {path}')
        return 0

    def _fit_epochs(self, durations: List[float], elapsed: float) -> int:
        """Shorten the schedule so that it ends within ``--time-budget``; return its epochs."""
        fitted = fitted_epochs(int(self.config['epochs']), self.epoch, durations,
                               float(self.config['time_budget']) - elapsed)
        if fitted < int(self.config['epochs']) and self.is_main:
            self._print(f'--fit-epochs: {epoch_pace(durations):.2f} s an epoch, so {fitted} '
                        f'epochs (not '
                        f'{self.config["epochs"]}) fit the {self.config["time_budget"]:.0f} s '
                        'budget')
        self.config['epochs'] = fitted
        if self.is_main:
            run_file = self.run_dir / 'run.json'
            record = json.loads(run_file.read_text())
            record['args']['epochs'] = fitted
            record['args']['fit_epochs'] = True
            write_text_atomic(run_file, json.dumps(record, indent=2) + '\n')
        return fitted

    def _announce(self) -> None:
        weights = 'none' if self.class_weights is None else \
            ' '.join(f'{w:.2f}' for w in self.class_weights)
        cache = f'resident on {self.device}, augmented there' if self.device_batches \
            else 'cached in RAM' if self.train_set.cached else 'read from disk each epoch'
        self._print(f'{self.config["model"]} on {self.train_set.name}: {len(self.train_set)} '
                    f'pairs ({cache}), {self.steps_per_epoch} steps/epoch x {self.world} '
                    f'process(es), device {self.device}, class weights '
                    f'{self.config["class_weights"]}: {weights}'
                    + (f'; resuming after epoch {self.epoch}' if self.epoch else ''))

    def _print(self, text: str) -> None:
        from tqdm import tqdm
        tqdm.write(text, file=sys.stdout)
        sys.stdout.flush()

    def _train_epoch(self):
        """Train one epoch; return (mean loss over all processes, learning rate now).

        The rate returned is the one after the epoch's schedule updates (what the next step
        would use): the polynomial rate after its last step, or the plateau schedule's after
        it has seen this epoch's loss.
        """
        config = self.config
        # Seeding per epoch makes augmentation, dropout and order independent of stops.
        seed_everything(config['seed'], self.epoch + 1, self.rank)
        if self.device_batches is not None:
            batches = self.device_batches.epoch(
                config['batch_size'], self.steps_per_epoch,
                epoch_generator(self.device, config['seed'], self.epoch + 1, self.rank))
        else:
            self.train_set.set_epoch(self.epoch)
            self.sampler.set_epoch(self.epoch)
            loader = make_loader(self.train_set, config['batch_size'], config['workers'],
                                 sampler=self.sampler, drop_last=self.drop_last,
                                 pin_memory=self.device.type == 'cuda')
            batches = (to_device(batch, self.device) for batch in loader)
        self.net.train()
        total = self.totals
        total.zero_()
        desc = f'epoch {self.epoch + 1}/{config["epochs"]}'
        bar = progress_bar(batches, desc, self.progress, unit='step',
                           total=self.steps_per_epoch)
        for step, (images, labels) in enumerate(bar):
            if self.graphed is not None:
                self.graphed(images, labels)
            else:
                self._zero_grad()
                self._step(images, labels)
            if self.per_step_schedule:
                self.scheduler.step()
            if self.progress and step % PROGRESS_EVERY == 0:
                bar.set_postfix(loss=f'{float(total[0] / total[1]):.4f}',
                                lr=f'{float(self.optimizer.param_groups[0]["lr"]):.2e}',
                                refresh=False)
        if self.world > 1:
            dist.all_reduce(total)
        if total[2] > 0:
            raise RuntimeError(f'the loss became infinite or NaN in {int(total[2])} steps of '
                               f'epoch {self.epoch + 1}; try a lower --lr (now {config["lr"]})')
        loss = float(total[0] / total[1])
        if config['lr_schedule'] == 'plateau':
            self.scheduler.step(loss)  # the same reduced loss on every process
        elif not self.per_step_schedule:
            self.scheduler.step()
        return loss, float(self.optimizer.param_groups[0]['lr'])

    def _zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def _step(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        """Forward, backward and update on one batch, its loss added to ``self.totals``.

        Nothing here waits for the device: the same code is captured by ``--cuda-graph``.
        """
        config = self.config
        with autocast(self.device, config['amp'], cache=self.graphed is None):
            logits = forward_logits(self.net, images, self.info.input_multiple,
                                    channels_last=config['channels_last'])
            if self.teacher is not None:
                with torch.no_grad():
                    targets = forward_logits(self.teacher, images, self.teacher_multiple,
                                             channels_last=config['channels_last'])
        loss = self.criterion(logits, labels)
        if self.teacher is not None:
            weight = float(config['distill_weight'])
            loss = (1.0 - weight) * loss + weight * distillation_loss(
                logits, targets, float(config['distill_temperature']))
        loss.backward()
        self.optimizer.step()
        if self.ema is not None:
            self._update_ema()
        loss = loss.detach().double()
        self.totals[0] += torch.nan_to_num(loss, nan=0.0, posinf=0.0, neginf=0.0)
        self.totals[1] += 1
        self.totals[2] += (~torch.isfinite(loss)).double()

    @torch.no_grad()
    def _update_ema(self) -> None:
        """Move the average towards the weights; BN statistics likewise, counters copied."""
        averaged, trained, counters = self._ema_pairs
        torch._foreach_lerp_(averaged, trained, 1.0 - float(self.config['ema']))
        for ema_tensor, tensor in counters:
            ema_tensor.copy_(tensor)

    def _arithmetic_switched(self) -> str:
        """Say how a resumed session's precision or memory format differs from the run's."""
        run_file = self.run_dir / 'run.json'
        if not (self.run_dir / 'last.pt').is_file() or not run_file.is_file():
            return ''
        stored = json.loads(run_file.read_text())['args']
        before = describe_arithmetic(stored.get('amp'), stored.get('channels_last'))
        now = describe_arithmetic(self.config['amp'], self.config['channels_last'])
        if before == now:
            return ''
        return (f'this session trains in {now}; the run trained in {before} until now '
                f'({run_file}): the recipe is the same, the arithmetic changes from here '
                '(run.json records it)')

    def _validate(self) -> ConfusionMatrix:
        config = self.config
        size = parse_size(config['val_size']) if config['val_size'] else None
        uniform = self.val_set.uniform_size() is not None or size is not None
        matrix = evaluate_model(
            self.ema if self.ema is not None else self.model, self.val_set, self.num_classes,
            self.class_set.ignore_index,
            self.info.input_multiple, self.device,
            batch_size=config['batch_size'] if uniform else 1, workers=config['workers'],
            amp=config['amp'], channels_last=config['channels_last'], input_size=size,
            progress=self.progress, desc='validate')
        self.net.train()
        return matrix

    def _checkpoint(self, improved: bool) -> None:
        """Write last.pt (and best.pt when improved), then the logs that describe them."""
        meta = {'epoch': self.epoch, 'val_miou': self.history[-1]['val_miou'],
                'dataset': self.config['dataset']}
        extra = {'optimizer': portable_state_dict(self.optimizer),
                 'scheduler': self.scheduler.state_dict(), 'epoch': self.epoch,
                 'rng': _rng_state(), 'history': self.history, 'best_miou': self.best_miou,
                 'best_epoch': self.best_epoch, 'args': dict(self.config),
                 'class_weights': None if self.class_weights is None
                 else [float(w) for w in self.class_weights]}
        if self.ema is not None:
            extra['trained_state_dict'] = {k: v.detach().cpu()
                                           for k, v in self.model.state_dict().items()}
        save = {'model': self.ema if self.ema is not None else self.model,
                'model_name': self.config['model'],
                'num_classes': self.num_classes, 'class_set': self._class_set_name(),
                'meta': meta, 'extra': extra}
        save_weights(self.run_dir / 'last.pt', **save)
        if improved:
            save_weights(self.run_dir / 'best.pt', **save)
        _write_logs(self.run_dir, self.history)
        if meta['val_miou'] is not None:
            plot_training_curves({self.config['model']: self.history},
                                 self.run_dir / 'curves.png',
                                 title=f'{self.config["model"]} on {self.train_set.name}')

    def _class_set_name(self) -> str:
        if self.config['dataset'] == 'folder':
            return str(Path(self.config['class_set'] or Path(self.config['data_root'])
                            / 'classes.yaml').resolve())
        return self.class_set.name


def training_machine(device: torch.device) -> str:
    """Describe what trains on ``device``: the GPU and its host, or the CPU and its cores."""
    host = f'{os.cpu_count()}-core CPU ({cpu_model()})'
    if device.type == 'cuda':
        return f'{torch.cuda.get_device_name(device)} GPU on a {host}'
    return host


def fitted_epochs(planned: int, done: int, durations: List[float], seconds_left: float) -> int:
    """Return the schedule length (at most ``planned``) whose remaining epochs fit in time.

    The epochs still to run are timed as the slowest of those done but the first (which pays
    for start-up), and get ``FIT_MARGIN`` of the seconds left (the rest is kept for
    validation and checkpoints); at least one more epoch is always planned.
    """
    room = max(0.0, seconds_left) * FIT_MARGIN
    return min(planned, done + max(1, int(room / epoch_pace(durations))))


def epoch_pace(durations: List[float]) -> float:
    """Seconds an epoch is planned at: the slowest so far but the first (start-up)."""
    return max(durations[1:] or durations)


def export_best(run_dir, out_path) -> Path:
    """Write a run's best weights (``last.pt`` if it never validated) as a shipped file.

    The file holds the weights only (no optimizer state) and, in ``meta``, where they came
    from: model, dataset, epochs, best epoch, wall time, val mIoU and per-class IoU, date
    and the command lines of the run.

    Raises:
        WeightsError: The run has no checkpoint.
    """
    run_dir = Path(run_dir)
    source = run_dir / 'best.pt' if (run_dir / 'best.pt').is_file() else run_dir / 'last.pt'
    payload = read_weights(source)
    last = read_weights(run_dir / 'last.pt') if source.name != 'last.pt' else payload
    model = create_model(payload['model'], payload['num_classes'])
    load_weights(model, source, payload['model'], payload['num_classes'])
    args = dict(last['args'])
    best = next((h for h in last['history'] if h['epoch'] == payload['epoch']), {})
    run_record = json.loads((run_dir / 'run.json').read_text()) \
        if (run_dir / 'run.json').is_file() else {}
    meta = {
        'model': payload['model'], 'dataset': args['dataset'], 'train_split': args['split'],
        'val_split': args['val_split'], 'epochs_trained': int(last['epoch']),
        'epochs_planned': int(args['epochs']), 'best_epoch': int(payload['epoch']),
        'val_miou': best.get('val_miou'), 'val_pixel_accuracy': best.get('val_pixel_accuracy'),
        'val_iou': best.get('val_iou'),
        'train_wall_seconds': round(sum(h['seconds'] for h in last['history']), 1),
        'crop': args['crop'], 'batch_size': args['batch_size'], 'lr': args['lr'],
        'class_weights': args['class_weights'], 'seed': args['seed'],
        # The schedule and augmentation, for the card's recipe (runs from before these
        # options have none stored: the defaults they trained with).
        'recipe': {key: args.get(key, DEFAULTS[key]) for key in RECIPE_KEYS},
        'date': datetime.datetime.now().astimezone().isoformat(timespec='seconds'),
        'commands': [s['command'] for s in run_record.get('sessions', [])],
        # Where and in what arithmetic each session trained, from which epoch on.
        'sessions': [{key: s.get(key) for key in SESSION_KEYS}
                     for s in run_record.get('sessions', [])],
        'init': run_record.get('init'),
        'holdout': args.get('holdout'),
        'frames': run_record.get('frames'),
        'run': run_dir.resolve().name,
        'torch': str(torch.__version__),
        # Enough to draw the training curves in the model card, small enough to ship.
        'history': [{'epoch': int(h['epoch']), 'loss': round(float(h['loss']), 5),
                     'val_miou': None if h.get('val_miou') is None
                     else round(float(h['val_miou']), 5)} for h in last['history']],
    }
    return save_weights(out_path, model, payload['model'], payload['num_classes'],
                        payload['class_set'], meta=meta)
