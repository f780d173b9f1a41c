"""Options declared once: name, type, default, range or choices, description, read-only.

A configuration is a dataclass whose fields are made with :func:`option`; everything that
exposes it is generated from those fields: the nodes' ``ParameterDescriptor`` s
(:mod:`semseg_ros.nodes.params`), the commands' flags (:mod:`semseg_ros.commands.options`),
the validation of values from YAML files or parameters (:meth:`Option.invalid_reason`,
:func:`check_options`) and the README's parameter tables::

    @dataclass
    class Config:
        threads: int = option(0, 'CPU inference threads (0: all).', limits=(0, 256))
"""

from dataclasses import dataclass, field, fields, MISSING
import sys
from typing import Any, Dict, Optional, Tuple


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _limit(value: float) -> str:
    if value >= sys.float_info.max:
        return 'inf'
    return str(int(value)) if float(value).is_integer() and abs(value) < 2 ** 32 \
        else f'{value:g}'


@dataclass(frozen=True)
class Option:
    """How one option is documented and constrained (its default comes with it).

    Attributes:
        description: What it does (``ros2 param describe``, ``--help``, the README).
        read_only: Fixed once the node started (changing it would need a new model or
            subscription).
        limits: (min, max) of a number, or None; inclusive unless ``open_ends`` says.
        choices: Valid values of a string enumeration (empty: any).
        open_ends: Whether min and max themselves are excluded (a ROS descriptor states the
            closed range; :meth:`invalid_reason` refuses the bounds).
    """

    description: str
    read_only: bool = True
    limits: Optional[Tuple[float, float]] = None
    choices: Tuple[str, ...] = ()
    open_ends: Tuple[bool, bool] = (False, False)

    def range_text(self) -> str:
        """Return the range as ``[0, 1]``, ``(0, inf)``..., or '' without limits."""
        if self.limits is None:
            return ''
        low, high = (_limit(value) for value in self.limits)
        return (f'{"(" if self.open_ends[0] else "["}{low}, {high}'
                f'{")" if self.open_ends[1] else "]"}')

    def invalid_reason(self, name: str, value: Any, default: Any) -> Optional[str]:
        """Return why ``value`` is not valid for option ``name`` (None if it is).

        The type is the default's: a real-valued option accepts integers (``300`` in a YAML
        file means 300.0), an integer one no reals, a flag only true or false.
        """
        if isinstance(default, bool) and not isinstance(value, bool):
            return f'invalid parameter {name}: {value!r} is not true or false'
        if isinstance(default, float) and not _is_number(value):
            return f'invalid parameter {name}: {value!r} is not a number'
        if _is_number(default) and not isinstance(default, float) \
                and (not _is_number(value) or isinstance(value, float)):
            return f'invalid parameter {name}: {value!r} is not an integer'
        if isinstance(default, str) and not isinstance(value, str):
            return f'invalid parameter {name}: {value!r} is not a string'
        if self.choices and value not in self.choices:
            return (f'invalid parameter {name}: {value!r}; valid values: '
                    f'{", ".join(self.choices)}')
        if self.limits is not None and _is_number(value):
            (low, high), (low_open, high_open) = self.limits, self.open_ends
            if value < low or value > high or (low_open and value == low) \
                    or (high_open and value == high):
                return f'invalid parameter {name}: {value!r} is outside {self.range_text()}'
        return None


def option(default: Any, description: str, **constraints) -> Any:
    """Return a dataclass field with ``default`` whose metadata holds its :class:`Option`.

    Args:
        default: The default value (its type is the option's type).
        description: One or two sentences.
        **constraints: ``read_only``, ``limits`` or ``choices`` of :class:`Option`.
    """
    return field(default=default, metadata={'option': Option(description, **constraints)})


def declared_options(config_class) -> Dict[str, Tuple[Any, Option]]:
    """Return name -> (default, :class:`Option`) of a dataclass's option fields, in order."""
    declared = {}
    for item in fields(config_class):
        if 'option' in item.metadata:
            default = item.default if item.default is not MISSING else item.default_factory()
            declared[item.name] = (default, item.metadata['option'])
    return declared


def check_options(config) -> None:
    """Raise ValueError naming the first option of a dataclass instance that is invalid."""
    for name, (default, spec) in declared_options(type(config)).items():
        reason = spec.invalid_reason(name, getattr(config, name), default)
        if reason:
            raise ValueError(reason.replace('invalid parameter ', 'invalid ', 1))


def check_values(declared: Dict[str, Tuple[Any, Option]], values: Dict[str, Any],
                 source: str) -> None:
    """Check option values read from a file (a node's ``ros__parameters``, say).

    Args:
        declared: Name -> (default, option), e.g. from :func:`declared_options`.
        values: The values given; any subset of the declared names.
        source: What to name in the message (a file path).

    Raises:
        ValueError: Naming the source and the first unknown name or invalid value.
    """
    unknown = sorted(set(values) - set(declared))
    if unknown:
        raise ValueError(f'{source}: unknown parameter(s) {", ".join(unknown)}; valid: '
                         f'{", ".join(declared)}')
    for name, value in values.items():
        default, spec = declared[name]
        reason = spec.invalid_reason(name, value, default)
        if reason:
            raise ValueError(f'{source}: {reason}')
