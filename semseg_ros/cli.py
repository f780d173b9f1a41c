"""The ``semseg`` command: one entry point, one subcommand per tool.

Each subcommand lives in its own module exposing ``main(argv=None)``; it is imported
only when asked for, so ``semseg --help`` stays fast and nothing runs on import.
"""

import importlib
import sys
from typing import List, Optional

# subcommand -> (module, one-line help)
SUBCOMMANDS = {
    'bench': ('semseg_ros.commands.bench', 'measure params, GMACs, latency and FPS of the models '
              '(--node: the segmentation node end to end)'),
    'export': ('semseg_ros.commands.export', 'export a model to a checked ONNX file'),
    'segment': ('semseg_ros.commands.segment', 'segment image files to label/colour PNGs'),
    'train': ('semseg_ros.commands.train', 'train a network on CamVid, Cityscapes or a folder'),
    'eval': ('semseg_ros.commands.eval', 'evaluate a network: mIoU, per-class IoU, plots'),
    'keyframes': ('semseg_ros.commands.keyframes', 'select keyframes offline over a sequence'),
    'slam': ('semseg_ros.commands.slam', 'map keyframe selections with a real ORB-SLAM3 '
             "(optional, GPL-3.0: pip install '.[slam]'); build its vocabulary"),
    'bag': ('semseg_ros.commands.bag', 'make, process and replay rosbag2 bags'),
    'demo': ('semseg_ros.commands.demo', 'replay the bundled CamVid frames live through both '
             'nodes and report'),
}


def _usage() -> str:
    width = max(len(name) for name in SUBCOMMANDS)
    lines = ['usage: semseg <command> [options]', '', 'commands:']
    lines += [f'  {name:<{width}}  {helptext}' for name, (_, helptext) in SUBCOMMANDS.items()]
    lines += ['', "run 'semseg <command> --help' for a command's options"]
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    """Dispatch ``semseg <command> ...`` to the command's ``main``; return its exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ('-h', '--help'):
        print(_usage())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in SUBCOMMANDS:
        print(f'semseg: unknown command {command!r}\n\n{_usage()}', file=sys.stderr)
        return 2
    module = importlib.import_module(SUBCOMMANDS[command][0])
    return int(module.main(rest) or 0)


if __name__ == '__main__':
    sys.exit(main())
