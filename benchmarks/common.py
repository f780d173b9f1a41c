"""Command-line arguments the benchmark scripts share."""

import argparse

from semseg_ros.core.sizes import parse_size


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
