#!/usr/bin/env python3
"""The long training campaign of issue 26: the papers' schedules, one network after another.

Each run of :data:`QUEUE`, in order, is passed over when it has trained all its epochs,
resumed where it stopped (``semseg train --resume``) when its folder holds a run, or started
when it does not. A run that ends before its last epoch (stopped, out of ``--time-budget``)
ends the campaign there, so that the next session resumes that run first. The command for
the start of every session on the project's 2-core machine::

    GOMP_SPINCOUNT=20000 nohup setsid nice -n 10 .venv/bin/python tools/campaign.py \\
        DATA_ROOT RUNS >> RUNS/campaign.log 2>&1 < /dev/null &

``--dry-run`` prints what it would do and the commands. Options after ``--`` are added to
the commands that start a run, after the recipe (the last of a repeated option counts, so
they override it: ``-- --epochs 1 --limit 4`` tries the queue on four frames); a resumed run
keeps its own settings. SIGTERM or SIGINT stops the training run at once, as ``semseg train``
stops (``last.pt`` holds the last finished epoch), and no further run starts. Each run is its
own process (``python -m semseg_ros.cli train``): to pause one for a quiet measurement,
``pkill -STOP -f 'semseg_ros.cli train'``, then ``-CONT``.
"""

import argparse
import datetime
from pathlib import Path
import shlex
import signal
import subprocess
import sys
from typing import List, Optional, Sequence, Tuple

from semseg_ros.training.progress import read_progress

# Every run: two threads on the two cores, the batches resident and augmented in torch,
# validation on CamVid val every 10 epochs (101 full frames take a few epochs' time).
COMMON = ['--dataset', 'camvid', '--threads', '2', '--val-every', '10',
          '--data-pipeline', 'device', '--no-progress']
# The MiniNet-v2 paper's schedule, for both MiniNet-v2 networks: 1500 epochs, Adam 1e-3 to
# 1e-5, polynomial (power 0.9), median-frequency class weights to the power 0.12.
MININET_V2 = ['--epochs', '1500', '--batch-size', '8', '--crop', '384x288', '--lr', '1e-3',
              '--lr-end', '1e-5', '--class-weights', 'mfb012']
# (run folder name, the options that start it), in the order they train.
QUEUE: Tuple[Tuple[str, List[str]], ...] = (
    ('mininet_v2_cpu_1500', ['--model', 'mininet_v2_cpu', *MININET_V2]),
    # RDS-Net's paper: Adam 5e-4, weight decay 2e-4, the rate halved when the training loss
    # stalls, flips and 0-2 px shifts of whole frames; it gives no length: 1000 epochs.
    ('rds_net_1000', ['--model', 'rds_net', '--epochs', '1000', '--batch-size', '8',
                      '--crop', '480x360', '--lr', '5e-4', '--weight-decay', '2e-4',
                      '--lr-schedule', 'plateau', '--plateau-factor', '0.5',
                      '--plateau-patience', '10', '--lr-end', '1e-6',
                      '--augment', 'flip-translate', '--class-weights', 'mfb012']),
    # The reference PyTorch ENet (davidtvs/PyTorch-ENet, CamVid): 300 epochs of whole
    # 480x360 frames without augmentation, batch 10, Adam 5e-4, weight decay 2e-4, the rate
    # x 0.1 every 100 epochs, ENet's class weights. Compiled: 1.22x faster steps in bf16 on
    # this CPU (docs/training.md), the only network that gains.
    ('enet_300', ['--model', 'enet', '--epochs', '300', '--batch-size', '10',
                  '--crop', '480x360', '--lr', '5e-4', '--weight-decay', '2e-4',
                  '--lr-schedule', 'step', '--step-epochs', '100', '--step-factor', '0.1',
                  '--augment', 'none', '--class-weights', 'enet', '--compile']),
    # Last, with what CPU time remains: the GPU network on the same schedule.
    ('mininet_v2_1500', ['--model', 'mininet_v2', *MININET_V2]),
)


def _say(text: str) -> None:
    stamp = datetime.datetime.now().astimezone().isoformat(sep=' ', timespec='seconds')
    print(f'[campaign {stamp}] {text}', flush=True)


def _done(run_dir: Path) -> Optional[Tuple[int, int]]:
    """``(epochs done, epochs)`` of the run in ``run_dir``, or None when it holds none."""
    if not (run_dir / 'run.json').is_file():
        return None
    progress = read_progress(run_dir)
    return progress.epochs_done, progress.epochs


def plan(data_root: Path, runs: Path,
         extra: Sequence[str]) -> List[Tuple[Path, Optional[Tuple[int, int]], List[str]]]:
    """Return each queued run's folder, ``(epochs done, epochs)`` (None: not started) and the
    train command that goes on with it (empty: it has trained all its epochs), in order."""
    python = [sys.executable, '-m', 'semseg_ros.cli', 'train']
    # run.json keeps the data root for every later resume, from whatever folder.
    data_root = data_root.resolve()
    queue = []
    for name, recipe in QUEUE:
        run_dir = runs / name
        done = _done(run_dir)
        if done is None:
            command = [*python, *recipe, *COMMON, '--data-root', str(data_root),
                       '--out', str(run_dir), *extra]
        elif done[0] < done[1]:
            command = [*python, '--resume', str(run_dir), '--no-progress']
        else:
            command = []
        queue.append((run_dir, done, command))
    return queue


class _Stop:
    """SIGTERM/SIGINT: passed on to the training process; no further run starts."""

    def __init__(self) -> None:
        self.requested = False
        self.child: Optional[subprocess.Popen] = None
        signal.signal(signal.SIGTERM, self)
        signal.signal(signal.SIGINT, self)

    def __call__(self, signum, frame) -> None:
        self.requested = True
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signum)


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    parser = argparse.ArgumentParser(prog='tools/campaign.py',
                                     description=__doc__.split('\n')[0])
    parser.add_argument('data_root', type=Path, metavar='DATA_ROOT',
                        help='the CamVid folder (SegNet layout)')
    parser.add_argument('runs', type=Path, metavar='RUNS',
                        help='the folder of the run folders (outside the repository)')
    parser.add_argument('--dry-run', action='store_true',
                        help='print what would run, run nothing')
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Train the queue's runs that are not finished; return the exit code."""
    argv = sys.argv[1:] if argv is None else argv
    extra: List[str] = []
    if '--' in argv:
        argv, extra = argv[:argv.index('--')], argv[argv.index('--') + 1:]
    args = build_parser().parse_args(argv)
    try:
        queue = plan(args.data_root, args.runs, extra)
    except ValueError as error:  # a run folder with an unreadable run.json or log
        print(f'campaign: {error}', file=sys.stderr)
        return 2
    for run_dir, done, _ in queue:
        _say(f'{run_dir.name}: ' + ('not started' if done is None
                                    else f'{done[0]}/{done[1]} epochs'))
    todo = [(run_dir, command) for run_dir, _, command in queue if command]
    if not todo:
        _say('every run has trained all its epochs')
        return 0
    if args.dry_run:
        for _, command in todo:
            print(shlex.join(command))
        return 0
    stop = _Stop()
    args.runs.mkdir(parents=True, exist_ok=True)
    for run_dir, command in todo:
        if stop.requested:
            break
        _say(f'{run_dir.name}: {shlex.join(command[1:])}')
        stop.child = subprocess.Popen(command)
        code = stop.child.wait()
        if stop.requested:
            _say(f'{run_dir.name}: stopped on request (exit code {code}); rerun the campaign '
                 f'to resume {run_dir}')
            return 0
        if code != 0:
            ended = f'was stopped by signal {-code}' if code < 0 else \
                f'failed (exit code {code})'
            _say(f'{run_dir.name}: semseg train {ended}; the campaign stops here')
            return code if code > 0 else 1
        done = _done(run_dir)
        if done is None or done[0] < done[1]:
            epochs = 'no epoch' if done is None else f'{done[0]} of {done[1]} epochs'
            _say(f'{run_dir.name}: stopped after {epochs}; the campaign stops here (rerun it '
                 f'to resume {run_dir})')
            return 0
        _say(f'{run_dir.name}: all {done[1]} epochs trained')
    return 0


if __name__ == '__main__':
    sys.exit(main())
