"""``semseg bag``: make, process, evaluate and replay rosbag2 bags.

``make``, ``process`` and ``evaluate`` are offline and need no ROS graph
(:mod:`semseg_ros.bags`); ``replay`` publishes through DDS and is imported from the nodes
layer only when asked for, which is why this module sits at the top of the package.
"""

import argparse
import importlib
import sys
from typing import List, Optional

# Sub-command -> (module with add_arguments(parser) and run(args), one-line help).
COMMANDS = {
    'make': ('semseg_ros.bags.make', 'build a bag from an image sequence (and labels)'),
    'process': ('semseg_ros.bags.process',
                'segment every frame of a bag offline; masks, keyframes and mIoU'),
    'evaluate': ('semseg_ros.bags.evaluate',
                 'latency, drops, FPS and mIoU of a recording of the live nodes'),
    'replay': ('semseg_ros.live.bag_replayer',
               'replay a bag live through the nodes, record and evaluate'),
}


def main(argv: Optional[List[str]] = None) -> int:
    """Run ``semseg bag <command>``; bad input prints one message and returns 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # Import only the module of the command asked for (replay loads rclpy).
    chosen = next((a for a in argv if not a.startswith('-')), None)
    parser = argparse.ArgumentParser(prog='semseg bag',
                                     description='make, process, evaluate and replay rosbag2 '
                                                 'bags')
    commands = parser.add_subparsers(dest='command', metavar='COMMAND')
    commands.required = True
    for name, (module, helptext) in COMMANDS.items():
        sub = commands.add_parser(name, help=helptext, description=helptext)
        if name == chosen:
            importlib.import_module(module).add_arguments(sub)
    args = parser.parse_args(argv)
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        return int(module.run(args) or 0)
    except (ValueError, OSError) as error:  # BagError, SequenceError, WeightsError...
        print(f'semseg bag {args.command}: error: {error}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f'semseg bag {args.command}: interrupted; no output was left behind',
              file=sys.stderr)
        return 130


if __name__ == '__main__':
    sys.exit(main())
