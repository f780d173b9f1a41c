"""Node parameters: declared with a ParameterDescriptor, checked, refused in one clear line.

Both nodes describe each parameter with a :class:`ParamSpec` (description, read-only, range,
allowed values) and declare it with :func:`declare`, which turns rclpy's refusal into a
:class:`NodeConfigError` naming the parameter. rclpy checks a range only against a value of
the parameter's own type, and a real-valued parameter accepts integers here (dynamic typing,
so that ``300`` in a params file means 300.0); :meth:`ParamSpec.invalid_reason` therefore
checks type, range and allowed values itself, at start-up and on every change.
"""

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional, Tuple

from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                SetParametersResult)
from rclpy.exceptions import ParameterException


class NodeConfigError(Exception):
    """A node cannot start with its parameters; the message says why in one line."""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class ParamSpec:
    """A node parameter's documentation and constraints (its default comes with it).

    Attributes:
        description: What it does, for ``ros2 param describe``.
        read_only: Fixed at start-up (changing it would need a new model or subscription).
        limits: Inclusive (min, max) of a number, or None.
        choices: Valid values of a string enumeration (empty: any).
    """

    description: str
    read_only: bool = True
    limits: Optional[Tuple[float, float]] = None
    choices: Tuple[str, ...] = ()

    def descriptor(self, default: Any) -> ParameterDescriptor:
        """Return the ROS descriptor of the parameter whose default is ``default``."""
        descriptor = ParameterDescriptor(description=self.description,
                                         read_only=self.read_only)
        if self.choices:
            descriptor.additional_constraints = 'one of: ' + ', '.join(self.choices)
        if isinstance(default, float):
            descriptor.dynamic_typing = True  # `300` in a params file means 300.0
            if self.limits is not None:
                descriptor.floating_point_range = [FloatingPointRange(
                    from_value=float(self.limits[0]), to_value=float(self.limits[1]))]
        elif _is_number(default) and self.limits is not None:
            descriptor.integer_range = [IntegerRange(
                from_value=int(self.limits[0]), to_value=int(self.limits[1]), step=1)]
        elif isinstance(default, list):
            descriptor.dynamic_typing = True  # an empty list has no element type
        return descriptor

    def invalid_reason(self, name: str, value: Any, default: Any) -> Optional[str]:
        """Return why ``value`` is not valid for parameter ``name`` (None if it is)."""
        if isinstance(default, float) and not _is_number(value):
            return f'invalid parameter {name}: {value!r} is not a number'
        if self.choices and value not in self.choices:
            return (f'invalid parameter {name}: {value!r}; valid values: '
                    f'{", ".join(self.choices)}')
        if self.limits is not None and _is_number(value) \
                and not self.limits[0] <= value <= self.limits[1]:
            return (f'invalid parameter {name}: {value!r} is outside '
                    f'[{self.limits[0]:g}, {self.limits[1]:g}]')
        return None


def declare(node, name: str, default: Any, spec: ParamSpec) -> Any:
    """Declare one parameter on ``node``; return its value (an override's, if given).

    Raises:
        NodeConfigError: The value given is of the wrong type, out of range or not allowed.
    """
    try:
        value = node.declare_parameter(name, default, spec.descriptor(default)).value
    except ParameterException as error:
        # rclpy words it 'Invalid parameter value (v) for parameter. Reason: <why>: <name>'.
        reason = str(error).split('Reason: ', 1)[-1].removesuffix(f': {name}')
        raise NodeConfigError(f'invalid parameter {name}: {reason}') from error
    reason = spec.invalid_reason(name, value, default)
    if reason:
        raise NodeConfigError(reason)
    return value


def check_changes(parameters: Iterable, specs: Mapping[str, Tuple[Any, ParamSpec]]
                  ) -> SetParametersResult:
    """Refuse a parameter change that :meth:`ParamSpec.invalid_reason` refuses.

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
