"""Seconds per training step of each network in each precision and memory format on the CPU.

One step is what ``semseg train`` does per batch: forward (``autocast``, ``forward_logits``),
the class-weighted loss, backward and an Adam update, on the network as
``set_memory_format`` prepares it. The variants of one network are timed in interleaved
rounds (two steps each, in a new random order every round), so a slow moment of a shared
machine falls on all of them; the speed-up column is the median of the per-round ratios to
fp32 NCHW. Run it when nothing else trains::

    python benchmarks/train_step.py --models all --batch-size 8 --crop 384x288 --rounds 6
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
from semseg_ros.training.engine import autocast, forward_logits, set_memory_format
from semseg_ros.training.losses import SegmentationLoss

VARIANTS = [('fp32 NCHW', 'none', False), ('fp32 channels-last', 'none', True),
            ('bf16 NCHW', 'bf16', False), ('bf16 channels-last', 'bf16', True)]
CPU = torch.device('cpu')


class Step:
    """One network in one variant, with its own optimizer; calling it trains one batch."""

    def __init__(self, name, amp, channels_last, state):
        self.name, self.amp, self.channels_last = name, amp, channels_last
        self.model = create_model(name, 11).train()
        self.model.load_state_dict(state)
        set_memory_format(self.model, CPU, amp, channels_last)
        self.optimizer = torch.optim.Adam(self.model.parameters(), 1e-3)
        self.criterion = SegmentationLoss(None, 11)
        self.multiple = model_info(name).input_multiple

    def __call__(self, images, labels):
        """Forward, loss, backward, update; return the loss."""
        with autocast(CPU, self.amp):
            logits = forward_logits(self.model, images, self.multiple,
                                    channels_last=self.channels_last)
        loss = self.criterion(logits, labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())


def time_network(name, images, labels, rounds, rng):
    """Return ``{variant: [seconds per step, ...]}`` and the per-round ratios to fp32 NCHW."""
    torch.manual_seed(0)
    state = create_model(name, 11).state_dict()
    steps = {label: Step(name, amp, cl, state) for label, amp, cl in VARIANTS}
    for step in steps.values():  # warm-up: allocator, oneDNN primitive caches
        step(images, labels)
    times = {label: [] for label in steps}
    ratios = {label: [] for label in steps}
    labels_order = list(steps)
    for _ in range(rounds):
        this_round = {}
        for index in rng.permutation(len(labels_order)):
            label = labels_order[index]
            pair = []
            for _ in range(2):
                start = time.perf_counter()
                loss = steps[label](images, labels)
                pair.append(time.perf_counter() - start)
                if not np.isfinite(loss):
                    raise RuntimeError(f'{name} {label}: the loss became {loss}')
            times[label].extend(pair)
            this_round[label] = min(pair)
            time.sleep(0.2)  # let threads one variant left spinning settle
        for label in steps:
            ratios[label].append(this_round['fp32 NCHW'] / this_round[label])
    return times, ratios


def main() -> None:
    """Time the variants of each network and print a table (and write JSON with --json)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--models', default='all', help="comma-separated names, or 'all'")
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--crop', type=parse_size, default=(384, 288), help='WxH')
    parser.add_argument('--rounds', type=int, default=6)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--json', type=Path, help='write the raw times here')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = list_models() if args.models == 'all' else args.models.split(',')
    width, height = args.crop
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (args.batch_size, 3, height, width),
                                           dtype=np.uint8))
    labels = torch.from_numpy(rng.integers(0, 11, (args.batch_size, height, width)))
    print(f'{machine_description()}; {args.threads} threads, batch {args.batch_size} at '
          f'{width}x{height}, {args.rounds} rounds')
    print('| network | ' + ' | '.join(label for label, _, _ in VARIANTS) + ' |')
    print('|---|' + '---|' * len(VARIANTS))
    record = {'machine': machine_description(), 'python': platform.python_version(),
              'torch': torch.__version__, 'threads': args.threads,
              'batch_size': args.batch_size, 'crop': [width, height], 'networks': {}}
    for name in names:
        times, ratios = time_network(name, images, labels, args.rounds, rng)
        cells = []
        for label, _, _ in VARIANTS:
            ratio = ratios[label]
            cells.append(f'{np.median(times[label]):.2f} s ({np.median(ratio):.2f}x, '
                         f'{np.percentile(ratio, 10):.2f}-{np.percentile(ratio, 90):.2f})')
        print(f'| {name} | ' + ' | '.join(cells) + ' |', flush=True)
        record['networks'][name] = {'seconds': times, 'speedup_over_fp32_nchw': ratios}
    if args.json:
        args.json.write_text(json.dumps(record, indent=1))


if __name__ == '__main__':
    main()
