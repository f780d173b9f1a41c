"""How far long training runs are: epochs, validation so far, speed, time left.

Reads only a run folder's ``run.json`` and ``log.jsonl`` (no torch), so it can watch a run
that is training beside it::

    python -m semseg_ros.training.progress RUNS/mininet_v2_cpu_1500 RUNS/rds_net_1000

prints one Markdown table row per run, the rows of docs/training.md's campaign table. Speed
is read from the epochs' own times: a run that shares its CPU with other work has slow
epochs, so "quiet" is the median of its :data:`QUIET_EPOCHS` fastest epochs, and the time left
is estimated at that speed (what the CPU does when nothing else runs).
"""

import argparse
from dataclasses import dataclass
import json
from pathlib import Path
import statistics
import sys
from typing import List, Optional, Tuple

# Few epochs of a campaign run alone: the fastest five tell the quiet speed.
QUIET_EPOCHS = 5
# A table cell lists at most this many validations, the latest.
VALIDATIONS_SHOWN = 8
HEADER = ('| network | run | epochs done | val mIoU (best; the latest) | '
          's/epoch quiet / median | left (quiet CPU) |\n|---|---|---|---|---|---|')


@dataclass
class RunProgress:
    """What a run folder says of its progress.

    Attributes:
        run_dir: The run folder.
        model: The network trained.
        epochs_done: The last epoch logged.
        epochs: The schedule's length.
        validations: ``(epoch, mIoU)`` of every validation so far.
        val_name: What the validation ran on (a split, or held-out sequences).
        seconds: Each logged epoch's wall time.
    """

    run_dir: Path
    model: str
    epochs_done: int
    epochs: int
    validations: List[Tuple[int, float]]
    val_name: str
    seconds: List[float]

    @property
    def best(self) -> Optional[Tuple[int, float]]:
        """``(epoch, mIoU)`` of the best validation (the earliest of equals), or None."""
        return max(self.validations, key=lambda v: (v[1], -v[0])) if self.validations else None

    @property
    def quiet_seconds(self) -> Optional[float]:
        """Median time of the :data:`QUIET_EPOCHS` fastest epochs, or None before any."""
        if not self.seconds:
            return None
        return statistics.median(sorted(self.seconds)[:QUIET_EPOCHS])

    @property
    def seconds_left(self) -> Optional[float]:
        """The epochs left at the quiet speed, in seconds, or None before any epoch."""
        quiet = self.quiet_seconds
        return None if quiet is None else quiet * (self.epochs - self.epochs_done)


def read_progress(run_dir: Path) -> RunProgress:
    """Read a run folder's progress.

    Raises:
        ValueError: The folder is not a run (no ``run.json``), or a file in it is unreadable;
            the message names the file.
    """
    run_dir = Path(run_dir)
    config_path, log_path = run_dir / 'run.json', run_dir / 'log.jsonl'
    try:
        args = json.loads(config_path.read_text())['args']
        model, epochs = str(args['model']), int(args['epochs'])
    except OSError as error:
        raise ValueError(f'{config_path}: {error.strerror}; is {run_dir} a folder of '
                         '`semseg train --out`?') from error
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f'{config_path} is not a run description ({error})') from error
    rows = []
    if log_path.exists():  # a run stopped before its first epoch has none
        for number, line in enumerate(log_path.read_text().splitlines(), 1):
            try:
                row = json.loads(line)
                rows.append((int(row['epoch']), row.get('val_miou'), float(row['seconds'])))
            except (ValueError, KeyError, TypeError) as error:
                raise ValueError(f'{log_path}, line {number}: not an epoch record '
                                 f'({error})') from error
    holdout = args.get('holdout')
    val_name = f'held-out {holdout}' if holdout else str(args.get('val_split') or 'val')
    return RunProgress(run_dir=run_dir, model=model,
                       epochs_done=max((epoch for epoch, _, _ in rows), default=0),
                       epochs=epochs,
                       validations=[(epoch, float(miou)) for epoch, miou, _ in rows
                                    if miou is not None],
                       val_name=val_name, seconds=[seconds for _, _, seconds in rows])


def _hours(seconds: Optional[float]) -> str:
    """``≈ 13.6 h``, or a dash when unknown."""
    return '—' if seconds is None else f'≈ {seconds / 3600:.1f} h'


def markdown_row(progress: RunProgress) -> str:
    """Return the run's row of :data:`HEADER`'s table."""
    best = progress.best
    if best is None:
        val = '—'
    else:
        shown = progress.validations[-VALIDATIONS_SHOWN:]
        series = ', '.join(f'{miou * 100:.1f}' for _, miou in shown)
        val = (f'{best[1] * 100:.1f} at epoch {best[0]} ({progress.val_name}; {series} at '
               f'epochs {shown[0][0]}–{shown[-1][0]})')
    speed = '—' if progress.quiet_seconds is None else \
        f'{progress.quiet_seconds:.0f} / {statistics.median(progress.seconds):.0f}'
    return (f'| {progress.model} | `{progress.run_dir.name}` | {progress.epochs_done} / '
            f'{progress.epochs} | {val} | {speed} | {_hours(progress.seconds_left)} |')


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    parser = argparse.ArgumentParser(prog='python -m semseg_ros.training.progress',
                                     description=__doc__.split('\n')[0])
    parser.add_argument('run_dirs', type=Path, nargs='+', metavar='RUN',
                        help='training run folder (semseg train --out)')
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Print the runs' table; return the exit code (2: a folder is not a readable run)."""
    args = build_parser().parse_args(argv)
    try:
        rows = [markdown_row(read_progress(run_dir)) for run_dir in args.run_dirs]
    except ValueError as error:
        print(f'progress: {error}', file=sys.stderr)
        return 2
    print(HEADER)
    print('\n'.join(rows))
    return 0


if __name__ == '__main__':
    sys.exit(main())
