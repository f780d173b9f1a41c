"""Node parameters: declared with a ParameterDescriptor, checked, refused in one clear line.

Both nodes describe each parameter with an :class:`~semseg_ros.core.options.Option`
(description, read-only, range, allowed values; declared once, next to the configuration it
belongs to) and declare it with :func:`declare`, which turns rclpy's refusal into a
:class:`NodeConfigError` naming the parameter. rclpy checks a range only against a value of
the parameter's own type, and a real-valued parameter accepts integers here (dynamic typing,
so that ``300`` in a params file means 300.0); ``Option.invalid_reason`` therefore checks
type, range and allowed values itself, at start-up and on every change.
:func:`parameter_table` renders the same declarations as the README's parameter tables.
"""

from typing import Any, Dict, Iterable, Mapping, Tuple

from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                SetParametersResult)
from rclpy.exceptions import ParameterException

from semseg_ros.core.options import Option


class NodeConfigError(Exception):
    """A node cannot start with its parameters; the message says why in one line."""


def descriptor(default: Any, spec: Option) -> ParameterDescriptor:
    """Return the ROS descriptor of a parameter whose default is ``default``."""
    result = ParameterDescriptor(description=spec.description, read_only=spec.read_only)
    if spec.choices:
        result.additional_constraints = 'one of: ' + ', '.join(spec.choices)
    if isinstance(default, float):
        result.dynamic_typing = True  # `300` in a params file means 300.0
        if spec.limits is not None:
            result.floating_point_range = [FloatingPointRange(
                from_value=float(spec.limits[0]), to_value=float(spec.limits[1]))]
    elif isinstance(default, int) and not isinstance(default, bool) \
            and spec.limits is not None:
        result.integer_range = [IntegerRange(
            from_value=int(spec.limits[0]), to_value=int(spec.limits[1]), step=1)]
    elif isinstance(default, list):
        result.dynamic_typing = True  # an empty list has no element type
    return result


def declare(node, name: str, default: Any, spec: Option) -> Any:
    """Declare one parameter on ``node``; return its value (an override's, if given).

    Raises:
        NodeConfigError: The value given is of the wrong type, out of range or not allowed.
    """
    try:
        value = node.declare_parameter(name, default, descriptor(default, spec)).value
    except ParameterException as error:
        # rclpy words it 'Invalid parameter value (v) for parameter. Reason: <why>: <name>'.
        reason = str(error).split('Reason: ', 1)[-1].removesuffix(f': {name}')
        raise NodeConfigError(f'invalid parameter {name}: {reason}') from error
    reason = spec.invalid_reason(name, value, default)
    if reason:
        raise NodeConfigError(reason)
    return value


def check_changes(parameters: Iterable, specs: Mapping[str, Tuple[Any, Option]]
                  ) -> SetParametersResult:
    """Refuse a parameter change that ``Option.invalid_reason`` refuses.

    Args:
        parameters: The rclpy Parameters being set.
        specs: Parameter name -> (default, spec); names not in it are not checked here.
    """
    for parameter in parameters:
        if parameter.name in specs:
            default, spec = specs[parameter.name]
            reason = spec.invalid_reason(parameter.name, parameter.value, default)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
    return SetParametersResult(successful=True)


def _markdown_value(value: Any) -> str:
    if isinstance(value, bool):
        return f'`{str(value).lower()}`'
    if isinstance(value, str):
        return f'`{value}`' if value else "`''`"
    if isinstance(value, list):
        return '`[' + ', '.join(map(str, value)) + ']`'
    return f'`{value!r}`'


def parameter_table(parameters: Mapping[str, Tuple[Any, Option]]) -> str:
    """Return the Markdown table of a node's parameters, generated from their declarations.

    One row per parameter: name, default, read-only, range or choices, description.
    """
    rows = ['| parameter | default | read-only | range | meaning |', '|---|---|---|---|---|']
    for name, (default, spec) in parameters.items():
        valid = ', '.join(spec.choices) if spec.choices else spec.range_text()
        rows.append(f'| `{name}` | {_markdown_value(default)} | '
                    f'{"yes" if spec.read_only else "no"} | {valid} | '
                    f'{spec.description.replace("|", "/")} |')
    return '\n'.join(rows)


def replace_generated(text: str, key: str, table: str) -> str:
    """Return ``text`` with the block between ``<!-- key -->`` and ``<!-- /key -->`` replaced.

    Raises:
        ValueError: The markers are missing.
    """
    start, end = f'<!-- {key} -->\n', f'<!-- /{key} -->'
    if start not in text or end not in text.split(start, 1)[-1]:
        raise ValueError(f'no {start.strip()} ... {end} block')
    head, rest = text.split(start, 1)
    return head + start + table + '\n' + end + rest.split(end, 1)[1]


def readme_tables() -> Dict[str, str]:
    """Return the README's generated blocks: marker key -> parameter table of each node."""
    from semseg_ros.nodes import keyframe_node, segmentation_node
    tables = {'segmentation_node parameters':
              parameter_table(segmentation_node.node_parameters()),
              'keyframe_node parameters': parameter_table(keyframe_node.node_parameters())}
    try:  # the optional ORB-SLAM3 node (pyorbslam3): its table only where it is installed
        from semseg_ros.nodes import orbslam3_node
    except ImportError:
        return tables
    tables['orbslam3_node parameters'] = parameter_table(orbslam3_node.node_parameters())
    return tables


def main(argv=None) -> int:
    """Rewrite the generated parameter tables in the Markdown files given (README.md, docs/)."""
    import sys
    from pathlib import Path
    for path in map(Path, argv if argv is not None else sys.argv[1:]):
        text = path.read_text()
        for key, table in readme_tables().items():
            if f'<!-- {key} -->' in text:
                text = replace_generated(text, key, table)
        path.write_text(text)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
