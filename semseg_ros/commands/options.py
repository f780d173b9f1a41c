"""Command-line flags generated from the Segmenter's option declarations.

Every command that builds a Segmenter takes its flags from here, so ``--backend``,
``--threads``, ``--weights``, ``--precision``... are written once, in
:class:`~semseg_ros.core.segmenter.SegmenterConfig`, with the same names, types, choices,
ranges and help as the segmentation node's parameters. ``input_width`` and ``input_height``
are one flag, ``--size WxH``.
"""

import argparse
from typing import Any, Dict, Iterable, Optional, Sequence, Tuple

from semseg_ros.core.options import declared_options, Option
from semseg_ros.core.segmenter import SegmenterConfig
from semseg_ros.core.sizes import parse_size

SIZE_FIELDS = ('input_width', 'input_height')


def flag_name(name: str) -> str:
    """Return the flag of an option: ``class_set`` -> ``--class-set``."""
    return '--' + name.replace('_', '-')


def _checked(kind: type, name: str, spec: Option, extra: Sequence[str]):
    """Return an argparse type converting to ``kind`` and refusing what the option refuses."""
    def convert(text: str):
        if text in extra:
            return text
        if spec.choices and text not in spec.choices:
            raise argparse.ArgumentTypeError(
                f'unknown {name} {text!r}; valid: {", ".join(spec.choices + tuple(extra))}')
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'{text!r} is not {kind.__name__}') from None
        reason = spec.invalid_reason(name, value, kind())
        if reason:
            raise argparse.ArgumentTypeError(reason.split(': ', 1)[1])
        return value
    convert.__name__ = kind.__name__
    return convert


def add_segmenter_options(parser: argparse.ArgumentParser,
                          names: Optional[Iterable[str]] = None,
                          defaults: Optional[Dict[str, Any]] = None,
                          extra_choices: Optional[Dict[str, Tuple[str, ...]]] = None,
                          helps: Optional[Dict[str, str]] = None,
                          required: Sequence[str] = ()) -> None:
    """Add one flag per Segmenter option to ``parser``, generated from its declaration.

    Args:
        parser: The command's parser.
        names: Options to offer (default: all); ``size`` stands for the two size fields.
        defaults: A command's own defaults, by option name (``size``: a (w, h) or None).
        extra_choices: Values a command accepts besides the declared ones (``all``, ``auto``).
        helps: Text a command appends to an option's help.
        required: Options the command needs given (no default).
    """
    declared = declared_options(SegmenterConfig)
    if names is None:
        names = ['size' if n == SIZE_FIELDS[0] else n for n in declared if n != SIZE_FIELDS[1]]
    defaults, extra_choices, helps = defaults or {}, extra_choices or {}, helps or {}
    for name in names:
        if name == 'size':
            size = defaults.get('size', (declared['input_width'][0],
                                         declared['input_height'][0]))
            shown = f'{size[0]}x{size[1]}' if size else "each model's paper size"
            if 'size' in required:
                parser.add_argument('--size', type=parse_size, required=True, metavar='WxH',
                                    help='network input WxH, e.g. 512x256. '
                                         + helps.get('size', ''))
                continue
            parser.add_argument('--size', type=parse_size, default=size, metavar='WxH',
                                help=f'network input WxH (default {shown}). '
                                     + helps.get('size', ''))
            continue
        declared_default, spec = declared[name]
        default = defaults.get(name, declared_default)
        text = f'{spec.description} {helps.get(name, "")}'.strip()
        if isinstance(declared_default, bool):
            parser.add_argument(flag_name(name), action='store_true', default=default, help=text)
            continue
        extra = tuple(extra_choices.get(name, ()))
        metavar = '{' + ','.join(spec.choices + extra) + '}' if spec.choices else None
        given = {'required': True} if name in required else {
            'default': default, 'help': f'{text} (default: {default})'}
        parser.add_argument(flag_name(name), metavar=metavar,
                            type=_checked(type(declared_default), name, spec, extra),
                            **dict({'help': text}, **given))


def add_label_options(parser: argparse.ArgumentParser, what: str = '') -> None:
    """Add ``--labels`` (predicted or ground-truth) and the flags of the labelling network.

    The class set comes with the keyframe configuration (its ``class_set`` key).
    """
    parser.add_argument('--labels', choices=('predicted', 'ground-truth'), default='predicted',
                        help="'predicted' (default): run the network; 'ground-truth': the data "
                             f"set's label PNGs{what}")
    add_segmenter_options(parser, names=['model', 'weights', 'backend', 'device', 'size',
                                         'threads', 'fp16', 'precision'],
                          helps={'model': 'Used with --labels predicted.'})


def segmenter_config(args: argparse.Namespace, **overrides) -> SegmenterConfig:
    """Return the SegmenterConfig of parsed flags (options a command lacks keep defaults)."""
    values = {name: getattr(args, name) for name in declared_options(SegmenterConfig)
              if hasattr(args, name)}
    if getattr(args, 'size', None):
        values['input_width'], values['input_height'] = args.size
    values.update(overrides)
    return SegmenterConfig(**values)
