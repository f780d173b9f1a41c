"""Launch arguments checked and resolved for the launch files (no launch import: testable).

``ros2 launch`` shows each argument's default with ``--show-args``; a parameters file is
therefore given by a plain name (``cpu_robot.yaml``), looked up in the package's installed
``config/``, or by a path. A file that does not exist stops the launch with one error
naming it, instead of the node silently running its defaults.
"""

import os
from pathlib import Path
from typing import List


def shipped_configs(config_dir: str) -> List[str]:
    """Return the node parameters files in ``config_dir``, by name."""
    return sorted(path.name for path in Path(config_dir).glob('*.yaml')
                  if 'ros__parameters' in path.read_text(errors='replace'))


def parameters_file(value: str, config_dir: str, argument: str) -> str:
    """Return the path of the parameters file a launch argument names.

    Args:
        value: The argument's value: a name without a folder (a file in ``config_dir``) or
            a path (``~`` expanded, relative to the current folder).
        config_dir: The package's installed config folder.
        argument: The argument's name, for the error.

    Raises:
        ValueError: The value is empty or names no file; the message lists the shipped ones.
    """
    value = value.strip()
    if value and os.sep not in value and (os.altsep is None or os.altsep not in value):
        path = os.path.join(config_dir, value)
    else:
        path = os.path.expanduser(value)
    if not value or not os.path.isfile(path):
        shipped = ', '.join(shipped_configs(config_dir)) or 'none found'
        raise ValueError(f'launch argument {argument}: no parameters file {path or "(empty)"}; '
                         f'give a path, or the name of one in {config_dir} ({shipped})')
    return path


def optional_file(value: str, argument: str) -> str:
    """Return ``value`` (a file path or empty), refusing a path that names no file.

    Raises:
        ValueError: ``value`` is not empty and no such file exists.
    """
    value = value.strip()
    if value and not os.path.isfile(os.path.expanduser(value)):
        raise ValueError(f'launch argument {argument}: no such file {value}')
    return os.path.expanduser(value) if value else ''


def flag(value: str, argument: str) -> bool:
    """Return a ``true``/``false`` launch argument as a bool, refusing anything else.

    Raises:
        ValueError: Another value.
    """
    text = value.strip().lower()
    if text not in ('true', 'false'):
        raise ValueError(f"launch argument {argument} must be 'true' or 'false', got {value!r}")
    return text == 'true'


# Node processes log through rcutils; its colours would end up in launch's log files.
PLAIN_LOG_ENV = {'RCUTILS_COLORIZED_OUTPUT': '0'}
