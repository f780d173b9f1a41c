"""What the benchmark scripts share: arguments, interleaved timing, the sample frames."""

import argparse
import time

import cv2
import numpy as np
import torch

from semseg_ros.core.resources import samples_dir
from semseg_ros.core.sizes import parse_size
from semseg_ros.data.datasets import read_image


def network_parser(description: str, rounds: int) -> argparse.ArgumentParser:
    """Return a parser with the network (model, weights, size) and ``--rounds`` arguments."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('--model', default='mininet_v2_cpu')
    parser.add_argument('--weights', default='shipped',
                        help="'shipped', 'none' (untrained: speed only) or a weights file")
    parser.add_argument('--size', type=parse_size, default=(512, 256), help='input WxH')
    parser.add_argument('--rounds', type=int, default=rounds,
                        help='rounds of 2 runs per variant')
    return parser


class EagerRun:
    """The torch backend's ``run`` at a thread count set before each timed pair.

    PyTorch's thread count is process-wide, so it is set (untimed) before the variant runs.
    """

    def __init__(self, backend, threads):
        self.backend, self.threads = backend, threads

    def prepare(self):
        """Set PyTorch's thread count for this variant."""
        torch.set_num_threads(self.threads)

    def __call__(self, batch):
        """Run the backend on ``batch``."""
        return self.backend.run(batch)


def interleaved_latency(variants, batch, rounds, gap_s):
    """Return ``{name: [[ms, ms], ...]}``: two runs per variant per round, in random order.

    A variant's optional ``prepare()`` runs untimed before its pair; ``gap_s`` is an untimed
    pause after each pair, so threads one variant leaves spinning do not run into the next.
    """
    for _, run in variants:
        getattr(run, 'prepare', lambda: None)()
        for _ in range(5):
            run(batch)
    times = {name: [] for name, _ in variants}
    order = np.random.default_rng(0)
    for _ in range(rounds):
        for index in order.permutation(len(variants)):
            name, run = variants[index]
            prepare = getattr(run, 'prepare', None)
            if prepare is not None:
                prepare()
            pair = []
            for _ in range(2):
                start = time.perf_counter()
                run(batch)
                pair.append(1e3 * (time.perf_counter() - start))
            times[name].append(pair)
            time.sleep(gap_s)
    return times


def sample_batches(size):
    """Return the shipped sample frames (sequence 0016E5) resized to ``size``, as ``1xHxWx3``."""
    images = samples_dir() / 'camvid_0016E5' / 'images'
    return [cv2.resize(read_image(path), size, interpolation=cv2.INTER_LINEAR)[None]
            for path in sorted(images.glob('*.jpg'))]
