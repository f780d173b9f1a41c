"""Seconds per training step of each network in each precision and memory format on the CPU.

One step is what ``semseg train`` does per batch: forward (``autocast``, ``forward_logits``),
the class-weighted loss, backward and an Adam update, on the network as
``set_memory_format`` prepares it. The variants of one network are timed in interleaved
rounds (two steps each, in a new random order every round), so a slow moment of a shared
machine falls on all of them; the speed-up column is the median of the per-round ratios to
the first variant (fp32 NCHW unless ``--variants`` says otherwise). ``--compile`` adds each
variant under ``torch.compile`` (inductor, as ``semseg train --compile`` does; its compile
time is printed, not timed). Run it when nothing else trains::

    python benchmarks/train_step.py --models all --batch-size 8 --crop 384x288 --rounds 6
    python benchmarks/train_step.py --models enet --rounds 3 --turn 10 --compile \
        --variants "fp32 channels-last,bf16 channels-last"
"""

import argparse
import json
from pathlib import Path
import platform
import time

import numpy as np
import torch

from semseg_ros.core.bench import machine_description
from semseg_ros.core.sizes import parse_size
from semseg_ros.models import create_model, list_models, model_info
from semseg_ros.training.engine import (
    autocast, compile_network, forward_logits, set_memory_format)
from semseg_ros.training.losses import SegmentationLoss

VARIANTS = [('fp32 NCHW', 'none', False), ('fp32 channels-last', 'none', True),
            ('bf16 NCHW', 'bf16', False), ('bf16 channels-last', 'bf16', True)]
CPU = torch.device('cpu')
WARM_UP_COMPILED = 10


class Step:
    """One network in one variant, with its own optimizer; calling it trains one batch."""

    def __init__(self, name, amp, channels_last, state, compiled=False):
        self.name, self.amp, self.channels_last = name, amp, channels_last
        self.model = create_model(name, 11).train()
        self.model.load_state_dict(state)
        set_memory_format(self.model, CPU, amp, channels_last)
        self.optimizer = torch.optim.Adam(self.model.parameters(), 1e-3)
        # As the trainer: the network compiled, the loss and the optimizer eager.
        self.net = compile_network(self.model, 'inductor', CPU, amp) if compiled \
            else self.model
        self.criterion = SegmentationLoss(None, 11)
        self.multiple = model_info(name).input_multiple

    def __call__(self, images, labels):
        """Forward, loss, backward, update; return the loss."""
        with autocast(CPU, self.amp):
            logits = forward_logits(self.net, images, self.multiple,
                                    channels_last=self.channels_last)
        loss = self.criterion(logits, labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())


def time_network(name, images, labels, rounds, rng, variants, compiled, turn):
    """Return ``{variant: [seconds per step, ...]}`` and per-round ratios to the first one.

    Each round gives every variant a turn of ``turn`` steps; the turn's time is its fastest
    step (two steps) or the median of its steps after the first (more steps; only those are
    kept in the times).
    """
    torch.manual_seed(0)
    state = create_model(name, 11).state_dict()
    steps = {label: Step(name, amp, cl, state) for label, amp, cl in variants}
    if compiled:
        steps.update({f'{label} compiled': Step(name, amp, cl, state, compiled=True)
                      for label, amp, cl in variants})
    for label, step in steps.items():  # warm-up: allocator, oneDNN caches, compilation
        start = time.perf_counter()
        # A compiled network's first steps after compiling are still seconds long.
        for _ in range(WARM_UP_COMPILED if label.endswith('compiled') else 2):
            step(images, labels)
        if label.endswith('compiled'):
            print(f'{name} {label}: compiled in {time.perf_counter() - start:.0f} s',
                  flush=True)
    times = {label: [] for label in steps}
    ratios = {label: [] for label in steps}
    labels_order = list(steps)
    reference = labels_order[0]
    for _ in range(rounds):
        this_round = {}
        for index in rng.permutation(len(labels_order)):
            label = labels_order[index]
            spent = []
            for _ in range(turn):
                start = time.perf_counter()
                loss = steps[label](images, labels)
                spent.append(time.perf_counter() - start)
                if not np.isfinite(loss):
                    raise RuntimeError(f'{name} {label}: the loss became {loss}')
            if turn > 2:  # the first step of a turn pays for the variant before it
                spent = spent[1:]
                this_round[label] = float(np.median(spent))
            else:
                this_round[label] = min(spent)
            times[label].extend(spent)
            time.sleep(0.2)  # let threads one variant left spinning settle
        for label in steps:
            ratios[label].append(this_round[reference] / this_round[label])
    return times, ratios


def main() -> None:
    """Time the variants of each network and print a table (and write JSON with --json)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--models', default='all', help="comma-separated names, or 'all'")
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--crop', type=parse_size, default=(384, 288), help='WxH')
    parser.add_argument('--rounds', type=int, default=6)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--turn', type=int, default=2,
                        help='steps a variant runs in a row in each round (more: steadier, '
                        'as in training; its first step is then left out)')
    parser.add_argument('--variants', default=','.join(label for label, _, _ in VARIANTS),
                        help='comma-separated variants; the speed-ups are over the first')
    parser.add_argument('--compile', action='store_true',
                        help='also time each variant under torch.compile (inductor)')
    parser.add_argument('--json', type=Path, help='write the raw times here')
    args = parser.parse_args()
    by_label = {label: (label, amp, cl) for label, amp, cl in VARIANTS}
    unknown = [label for label in args.variants.split(',') if label not in by_label]
    if unknown:
        parser.error(f'unknown variant {unknown[0]!r}; choose from {", ".join(by_label)}')
    variants = [by_label[label] for label in args.variants.split(',')]
    columns = [label for label, _, _ in variants]
    columns += [f'{label} compiled' for label in columns] if args.compile else []
    torch.set_num_threads(args.threads)
    names = list_models() if args.models == 'all' else args.models.split(',')
    width, height = args.crop
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (args.batch_size, 3, height, width),
                                           dtype=np.uint8))
    labels = torch.from_numpy(rng.integers(0, 11, (args.batch_size, height, width)))
    print(f'{machine_description()}; {args.threads} threads, batch {args.batch_size} at '
          f'{width}x{height}, {args.rounds} rounds')
    print('| network | ' + ' | '.join(columns) + ' |')
    print('|---|' + '---|' * len(columns))
    record = {'machine': machine_description(), 'python': platform.python_version(),
              'torch': torch.__version__, 'threads': args.threads,
              'batch_size': args.batch_size, 'crop': [width, height], 'networks': {}}
    for name in names:
        times, ratios = time_network(name, images, labels, args.rounds, rng, variants,
                                     args.compile, max(args.turn, 1))
        cells = []
        for label in columns:
            ratio = ratios[label]
            cells.append(f'{np.median(times[label]):.2f} s ({np.median(ratio):.2f}x, '
                         f'{np.percentile(ratio, 10):.2f}-{np.percentile(ratio, 90):.2f})')
        print(f'| {name} | ' + ' | '.join(cells) + ' |', flush=True)
        record['networks'][name] = {'seconds': times, 'speedup_over': columns[0],
                                    'speedups': ratios}
    if args.json:
        args.json.write_text(json.dumps(record, indent=1))


if __name__ == '__main__':
    main()
