"""Options declared once: the node's parameters, the commands' flags and YAML checks agree."""

import argparse
from pathlib import Path

import pytest
import yaml

from semseg_ros.commands.options import add_segmenter_options, flag_name, segmenter_config
from semseg_ros.core.options import check_values, declared_options, Option
from semseg_ros.core.segmenter import SegmenterConfig
from semseg_ros.keyframes.config import CONFIG_KEYS, KEYFRAME_OPTIONS, load_keyframe_config
from semseg_ros.nodes import keyframe_node, segmentation_node
from semseg_ros.nodes.params import descriptor

CONFIG_DIR = Path(__file__).resolve().parents[1] / 'config'
SEGMENTER = declared_options(SegmenterConfig)


def test_node_parameters_are_the_segmenter_options():
    """Every Segmenter option is a node parameter with the same default and declaration."""
    parameters = segmentation_node.node_parameters()
    for name, declared in SEGMENTER.items():
        assert parameters[name] == declared, name
    assert len(SEGMENTER) == 12 and 'graph_cache' in SEGMENTER and 'overlay_alpha' in parameters


def test_descriptors_carry_the_declared_ranges_and_choices():
    """The ROS descriptor of each option states its range or choices, read-only flag, text."""
    for name, (default, spec) in segmentation_node.node_parameters().items():
        described = descriptor(default, spec)
        assert described.description == spec.description and \
            described.read_only == spec.read_only, name
        if spec.limits is not None and isinstance(default, float):
            assert described.floating_point_range[0].from_value == spec.limits[0], name
        elif spec.limits is not None:
            assert described.integer_range[0].to_value == spec.limits[1], name
        if spec.choices:
            assert described.additional_constraints == 'one of: ' + ', '.join(spec.choices)


def test_command_flags_are_generated_from_the_options(capsys):
    """Each option is one flag with its type, choices, range and default; --size is WxH."""
    parser = argparse.ArgumentParser()
    add_segmenter_options(parser)
    flags = {action.dest: action for action in parser._actions}
    for name, (default, spec) in SEGMENTER.items():
        if name in ('input_width', 'input_height'):
            continue
        assert flag_name(name) in flags[name].option_strings
        assert flags[name].default == default and spec.description in flags[name].help
    args = parser.parse_args(['--model', 'enet', '--size', '480x360', '--threads', '2',
                              '--fp16', '--class-set', 'cityscapes'])
    config = segmenter_config(args)
    assert (config.model, config.input_width, config.input_height, config.threads,
            config.fp16, config.class_set) == ('enet', 480, 360, 2, True, 'cityscapes')
    assert config == segmenter_config(parser.parse_args([]), model='enet', input_width=480,
                                      input_height=360, threads=2, fp16=True,
                                      class_set='cityscapes')
    for bad, message in ((['--threads', '-1'], 'outside [0, 256]'),
                         (['--backend', 'tensorflow'], "unknown backend 'tensorflow'"),
                         (['--threads', 'many'], "'many' is not int")):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)
        assert message in capsys.readouterr().err


def test_a_command_can_change_defaults_and_add_choices(capsys):
    """``semseg bench`` offers 'all' besides the declared values, and its own defaults."""
    parser = argparse.ArgumentParser()
    add_segmenter_options(parser, names=['model', 'precision', 'size'],
                          defaults={'model': 'all', 'size': None},
                          extra_choices={'model': ('all',), 'precision': ('all',)})
    args = parser.parse_args(['--precision', 'all'])
    assert (args.model, args.precision, args.size) == ('all', 'all', None)
    with pytest.raises(SystemExit):
        parser.parse_args(['--precision', 'int4'])
    assert "unknown precision 'int4'; valid: fp32, int8, all" in capsys.readouterr().err


@pytest.mark.parametrize('path', sorted(p for p in CONFIG_DIR.glob('*.yaml')
                                        if not p.name.startswith('keyframes')),
                         ids=lambda p: p.name)
def test_shipped_node_configs_are_valid(path):
    """Every robot config sets only declared parameters, each to a valid value."""
    parameters = yaml.safe_load(path.read_text())['/**']['ros__parameters']
    check_values(segmentation_node.node_parameters(), parameters, str(path))


def test_yaml_values_are_checked_by_the_declarations():
    """An unknown name or a value out of range is named with the file."""
    declared = segmentation_node.node_parameters()
    with pytest.raises(ValueError, match=r'robot.yaml: unknown parameter\(s\) modle'):
        check_values(declared, {'modle': 'enet'}, 'robot.yaml')
    with pytest.raises(ValueError, match=r'robot.yaml: .*overlay_alpha: 1.5 is outside \[0, 1\]'):
        check_values(declared, {'overlay_alpha': 1.5}, 'robot.yaml')
    with pytest.raises(ValueError, match="precision: 'int4'; valid values: fp32, int8"):
        check_values(declared, {'precision': 'int4'}, 'robot.yaml')


def test_keyframe_parameters_are_the_configuration_keys():
    """The keyframe node declares each configuration key as written in keyframes/config.py."""
    assert keyframe_node.KEYFRAME_PARAMETERS is KEYFRAME_OPTIONS
    assert set(KEYFRAME_OPTIONS) == set(CONFIG_KEYS) - {'class_weights'}
    defaults = load_keyframe_config()
    for name, spec in KEYFRAME_OPTIONS.items():
        # The declared range accepts the shipped value and the checker agrees on its ends.
        assert spec.invalid_reason(name, defaults[name], defaults[name]) is None, name
        if spec.limits is not None:
            low, high = spec.limits
            low_ok, _ = CONFIG_KEYS[name](low)
            assert (low_ok is None) == spec.open_ends[0], name


def test_open_ranges_refuse_their_ends():
    """An open end is outside the range; the range reads as the checker's."""
    spec = Option('x', limits=(0.0, 1.0), open_ends=(True, False))
    assert spec.range_text() == '(0, 1]'
    assert spec.invalid_reason('x', 0.0, 0.5) and spec.invalid_reason('x', 1.0, 0.5) is None
    assert 'is not an integer' in Option('n', limits=(0, 3)).invalid_reason('n', 1.5, 1)
